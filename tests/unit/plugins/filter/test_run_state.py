"""Verdicts on a table's state: changed or not, and where it stands between two revisions."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.ledgermind.migrations.plugins.filter.run_state import (
    migration_situation,
    sample_comparison,
    state_change,
)

BEFORE, AFTER = "20251109_add_user_name_picture", "502d44cd70ab"


def state(column: str | None, revision: str, index: bool | None = None) -> dict:
    return {"column_type": column, "revision": revision, "index_exists": index is not None, "index_valid": bool(index)}


@pytest.mark.parametrize(("current", "expected"), [
    (state("text[]", BEFORE), "pre_migration"),
    (state("jsonb", AFTER, True), "migrated"),
    # The defect of issue 9: the type change committed, the concurrent index build failed.
    (state("jsonb", BEFORE, False), "half_applied"),
    (state("jsonb", BEFORE), "half_applied"),
    (state("jsonb", BEFORE, True), "half_applied"),
    (state("jsonb", AFTER, False), "half_applied"),
    (state("jsonb", AFTER), "half_applied"),
    (state("text[]", AFTER), "half_rolled_back"),
    (state("integer", BEFORE), "unknown"),
    (state(None, BEFORE), "unknown"),
    (state("text[]", "base"), "unknown"),
])
def test_situation_is_named_from_the_state(current: dict, expected: str) -> None:
    situation = migration_situation(current, BEFORE, AFTER)
    assert situation["name"] == expected
    assert situation["changed_from_before"] is (expected != "pre_migration")
    assert current["revision"] in situation["description"]


def test_half_applied_says_what_is_where() -> None:
    text = migration_situation(state("jsonb", BEFORE, False), BEFORE, AFTER)["description"]
    assert "column jsonb" in text and "INVALID" in text and f"Alembic is still at {BEFORE}" in text


@pytest.mark.parametrize(("after", "changed", "fragment"), [
    (state("text[]", BEFORE), False, "unchanged"),
    (state("jsonb", BEFORE, False), True, "column_type: text[] -> jsonb"),
    (state("text[]", AFTER), True, f"revision: {BEFORE} -> {AFTER}"),
])
def test_state_change_is_read_from_both_states(after: dict, changed: bool, fragment: str) -> None:
    verdict = state_change(state("text[]", BEFORE), after)
    assert verdict["changed"] is changed
    assert fragment in verdict["description"]


def test_state_change_refuses_what_is_not_a_state() -> None:
    with pytest.raises(AnsibleFilterError):
        state_change("jsonb", {})


ROWS = [{"key": 1, "value": ["a", "b"]}, {"key": 2, "value": []}, {"key": 3, "value": None}]


@pytest.mark.parametrize(("after", "skip", "passed", "text"), [
    (ROWS, [], True, "3 of 3 sample rows identical"),
    # The contradiction the sign-off showed: "FAIL | 5 of 5 identical" (it counted rows found, not equal ones).
    ([{"key": 1, "value": ["a"]}, *ROWS[1:]], [], False, "2 of 3 sample rows identical; differing keys: 1"),
    (ROWS[:2], [], False, "2 of 3 sample rows identical; missing keys: 3"),
    ([{"key": 1, "value": ["x"]}, *ROWS[1:]], ["1"], True, "2 of 2 sample rows identical (1 written"),
    # The application wrote every sample row (a writer cycling through small keys): not a failure.
    (ROWS, [1, 2, 3], True, "every sample row was written by the application meanwhile"),
    ([], [], False, "nothing to compare"),
])
def test_sample_comparison_counts_equal_values(after: list, skip: list, passed: bool, text: str) -> None:
    verdict = sample_comparison(ROWS if after or skip else [], after, skip)
    assert verdict["passed"] is passed
    assert text in verdict["description"]


def test_state_after_failure_reads_the_database_or_says_it_could_not() -> None:
    from ansible_collections.ledgermind.migrations.plugins.filter.run_state import state_after_failure
    start = state("text[]", BEFORE)
    found = state_after_failure({"state": state("jsonb", BEFORE, False)}, start, BEFORE, AFTER)
    assert found["read"] is True and found["situation"]["name"] == "half_applied" and found["change"]["changed"]
    same = state_after_failure({"state": start}, start, BEFORE, AFTER)
    assert same["change"]["changed"] is False and same["situation"]["name"] == "pre_migration"
    lost = state_after_failure({"failed": True, "msg": "connection refused"}, start, BEFORE, AFTER)
    assert lost["read"] is False and lost["situation"]["name"] == "unknown"
    assert "could not be read: connection refused" in lost["situation"]["description"]
    assert lost["change"] == {"changed": False, "differences": [], "description": "unknown"}
    with pytest.raises(AnsibleFilterError):
        state_after_failure("nope", start, BEFORE, AFTER)  # type: ignore[arg-type]
