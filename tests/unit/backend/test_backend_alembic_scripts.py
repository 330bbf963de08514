"""Revision graph and failure messages of the backend's Alembic setup, without PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

BACKEND_DIR = Path(__file__).resolve().parents[3] / "examples" / "backend"

INI = BACKEND_DIR / "alembic.ini"


def alembic(*args: str, cwd: Path, database_url: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    # From an unrelated cwd: the ini must find its scripts via %(here)s.
    return subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(INI), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,  # callers assert on returncode and output
        timeout=120,
    )


def test_revision_chain() -> None:
    script = ScriptDirectory.from_config(Config(str(INI)))
    assert script.get_heads() == ["502d44cd70ab"]
    head = script.get_revision("502d44cd70ab")
    assert head is not None
    assert head.down_revision == "20251109_add_user_name_picture"
    assert head.doc == "convert_ml_features_tokens_to_jsonb"  # the text after "Running upgrade ... ,"
    assert Path(head.path).name == "502d44cd70ab_convert_ml_features_tokens_to_jsonb.py"
    base = script.get_revision("20251109_add_user_name_picture")
    assert base is not None and base.down_revision is None


def test_missing_database_url_fails_clearly(tmp_path: Path) -> None:
    result = alembic("upgrade", "head", cwd=tmp_path, database_url=None)
    # alembic's CLI turns CommandError into "FAILED: ..." on stdout and sys.exit(-1).
    assert result.returncode == 255
    assert "FAILED: DATABASE_URL is not set" in result.stdout
    assert "Traceback" not in result.stderr


def test_history_works_from_any_directory(tmp_path: Path) -> None:
    result = alembic("history", cwd=tmp_path, database_url=None)
    assert result.returncode == 0, result.stderr
    assert "20251109_add_user_name_picture -> 502d44cd70ab (head), convert_ml_features_tokens_to_jsonb" in result.stdout


@pytest.mark.parametrize(
    ("stamp", "target", "message"),
    [
        (None, "20251109_add_user_name_picture", "revision 20251109_add_user_name_picture needs PostgreSQL"),
        (
            "20251109_add_user_name_picture",
            "502d44cd70ab",
            "revision 502d44cd70ab converts a PostgreSQL text[] column and only runs on PostgreSQL, not sqlite",
        ),
    ],
)
def test_sqlite_is_refused_clearly(tmp_path: Path, stamp: str | None, target: str, message: str) -> None:
    url = f"sqlite:///{tmp_path / 'ledgermind.db'}"
    if stamp:
        assert alembic("stamp", stamp, cwd=tmp_path, database_url=url).returncode == 0
    result = alembic("upgrade", target, cwd=tmp_path, database_url=url)
    assert result.returncode == 255
    assert f"FAILED: {message}" in result.stdout
    assert "Traceback" not in result.stderr


def test_offline_sql_shows_concurrent_index_outside_the_transaction(tmp_path: Path) -> None:
    result = alembic(
        "upgrade",
        "20251109_add_user_name_picture:502d44cd70ab",
        "--sql",
        cwd=tmp_path,
        database_url="postgresql://h/db",
    )
    assert result.returncode == 0, result.stderr
    sql = result.stdout
    alter = sql.index("ALTER TABLE ml_features ALTER COLUMN tokens TYPE jsonb USING to_jsonb(tokens);")
    commit = sql.index("COMMIT;", alter)
    create = sql.index(
        "CREATE INDEX CONCURRENTLY ix_ml_features_tokens_gin ON ml_features USING gin (tokens jsonb_ops);"
    )
    assert alter < commit < create < sql.index("BEGIN;", create)
