"""Pure helpers that read Alembic's output and plan a move."""
from __future__ import annotations

import subprocess

import pytest

from ansible_collections.ledgermind.migrations.plugins.module_utils._alembic import (
    is_retryable,
    last_error_line,
    parse_history,
    running_lines,
    session_options,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._retry import backoff_delays

HISTORY = """\
20251109_add_user_name_picture -> 502d44cd70ab (head), convert_ml_features_tokens_to_jsonb
<base> -> 20251109_add_user_name_picture, add_user_name_picture
"""

BRANCHY = """\
(c1, c2) -> m (head) (mergepoint), merge
b -> c2, second branch
b -> c1, first branch
a -> b (branchpoint), shared
<base> -> a, initial
"""


def test_parse_history_reads_parents_and_messages() -> None:
    history = parse_history(HISTORY)
    assert sorted(history.revisions) == ["20251109_add_user_name_picture", "502d44cd70ab"]
    assert history.revisions["502d44cd70ab"].parents == ("20251109_add_user_name_picture",)
    assert history.revisions["502d44cd70ab"].message == "convert_ml_features_tokens_to_jsonb"
    assert history.revisions["20251109_add_user_name_picture"].parents == ()


@pytest.mark.parametrize(
    ("current", "target", "direction", "path"),
    [
        ("20251109_add_user_name_picture", "502d44cd70ab", "upgrade", ["502d44cd70ab"]),
        ("502d44cd70ab", "20251109_add_user_name_picture", "downgrade", ["502d44cd70ab"]),
        ("base", "502d44cd70ab", "upgrade", ["20251109_add_user_name_picture", "502d44cd70ab"]),
        ("502d44cd70ab", "502d44cd70ab", None, None),
    ],
)
def test_direction_and_path(current: str, target: str, direction: str | None, path: list[str] | None) -> None:
    history = parse_history(HISTORY)
    assert history.direction(current, target) == direction
    if path is not None:
        assert history.path(current, target) == path


def test_merge_points_and_unrelated_branches() -> None:
    history = parse_history(BRANCHY)
    assert history.revisions["m"].parents == ("c1", "c2")
    assert history.direction("a", "m") == "upgrade"
    assert history.path("b", "m") == ["c1", "c2", "m"] or history.path("b", "m") == ["c2", "c1", "m"]
    with pytest.raises(ValueError, match="neither an ancestor nor a descendant"):
        history.direction("c1", "c2")


def test_known_includes_base_and_refuses_strangers() -> None:
    history = parse_history(HISTORY)
    assert history.known("base")
    assert not history.known("deadbeef")


@pytest.mark.parametrize(
    ("stderr", "retry"),
    [
        ("sqlalchemy.exc.OperationalError: (psycopg2.errors.LockNotAvailable) canceling statement due to lock timeout",
         True),
        ("psycopg2.errors.DeadlockDetected: deadlock detected", True),
        ("FAILED: Can't locate revision identified by 'x'", False),
        ("psycopg2.errors.UndefinedColumn: column \"tokens\" does not exist", False),
    ],
)
def test_only_lock_conflicts_are_retried(stderr: str, retry: bool) -> None:
    assert is_retryable(stderr) is retry


def test_running_lines_keep_the_runbook_line() -> None:
    output = ("INFO  [alembic.runtime.migration] Context impl PostgresqlImpl.\n"
              "INFO  [alembic.runtime.migration] Running upgrade 20251109_add_user_name_picture -> 502d44cd70ab, "
              "convert_ml_features_tokens_to_jsonb\n")
    assert running_lines(output) == [
        "Running upgrade 20251109_add_user_name_picture -> 502d44cd70ab, convert_ml_features_tokens_to_jsonb"]


def test_last_error_line_prefers_alembic_failed_line_on_stdout() -> None:
    result = subprocess.CompletedProcess([], 255, stdout="FAILED: DATABASE_URL is not set\n", stderr="noise\n")
    assert last_error_line(result) == "FAILED: DATABASE_URL is not set"
    traceback = subprocess.CompletedProcess([], 1, stdout="", stderr=(
        "Traceback (most recent call last):\n  File \"x\", line 1\n"
        "sqlalchemy.exc.OperationalError: (psycopg2.errors.LockNotAvailable) canceling statement due to lock timeout\n"
        "[SQL: ALTER TABLE ml_features ...]\n(Background on this error at: https://sqlalche.me/e/20/e3q8)\n"))
    assert last_error_line(traceback).startswith("sqlalchemy.exc.OperationalError")


@pytest.mark.parametrize(
    ("retries", "first", "maximum", "expected"),
    [(1, 2.0, 30.0, []), (4, 2.0, 30.0, [2.0, 4.0, 8.0]), (6, 5.0, 12.0, [5.0, 10.0, 12.0, 12.0, 12.0])],
)
def test_backoff_doubles_up_to_the_cap(retries: int, first: float, maximum: float, expected: list[float]) -> None:
    assert backoff_delays(retries, first, maximum) == expected


def test_lock_timeout_keeps_existing_pgoptions() -> None:
    assert session_options({"lock_timeout": 3000}) == "-c lock_timeout=3000"
    assert session_options({"lock_timeout": 500}, "-c search_path=app") == "-c search_path=app -c lock_timeout=500"
    assert session_options({"statement_timeout": 0, "ledgermind.write_log": "off"}) == (
        "-c statement_timeout=0 -c ledgermind.write_log=off")
    with pytest.raises(ValueError):
        session_options({"application_name": "has space"})
