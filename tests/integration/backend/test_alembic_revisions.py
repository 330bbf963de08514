"""Revision 502d44cd70ab on real PostgreSQL: the runbook's checks, exact data, re-runs."""

from __future__ import annotations

import subprocess
import threading
import time
from typing import TYPE_CHECKING, Any

import psycopg2
import pytest

from ledgermind_backend.seed import TRICKY_TOKENS

if TYPE_CHECKING:  # annotations only: at run time "conftest" may be another directory's
    from conftest import ScratchDb

BASE = "20251109_add_user_name_picture"
HEAD = "502d44cd70ab"
UPGRADE_LINE = (
    f"INFO  [alembic.runtime.migration] Running upgrade {BASE} -> {HEAD}, convert_ml_features_tokens_to_jsonb"
)
DOWNGRADE_LINE = (
    f"INFO  [alembic.runtime.migration] Running downgrade {HEAD} -> {BASE}, convert_ml_features_tokens_to_jsonb"
)
INDEX = "ix_ml_features_tokens_gin"
CREATE_INDEX = f"CREATE INDEX CONCURRENTLY {INDEX} ON ml_features USING gin (tokens jsonb_ops)"
TO_JSONB = "ALTER TABLE ml_features ALTER COLUMN tokens TYPE jsonb USING to_jsonb(tokens)"

# Hand-made edge cases on top of the seed's random sprinkling, so each one is certain to exist.
EDGE_ROWS: list[list[str | None] | None] = [
    *[[token] for token in TRICKY_TOKENS],
    list(TRICKY_TOKENS),
    [None],
    [None, None],
    ["", None, "NULL", "null", ""],
    ["pos", None, "café", "🍕", 'say "hi"', "a,b", "{}", "\\"],
    [],
    None,
]
EDGE_FIRST_ID = 900_000_001


def query(db: ScratchDb, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    # No `with conn:`: since psycopg2 2.9 it opens a transaction even in autocommit mode.
    conn = db.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params or None)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def execute(db: ScratchDb, *statements: str) -> None:
    conn = db.connect()
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


def snapshot(db: ScratchDb, expression: str) -> dict[int, str | None]:
    """txn_id -> the value's text form; text[] and jsonb output are both canonical."""
    return dict(query(db, f"SELECT txn_id, ({expression})::text FROM ml_features"))


def column_type(db: ScratchDb) -> tuple[str, str]:
    (row,) = query(
        db,
        "SELECT data_type, udt_name FROM information_schema.columns"
        " WHERE table_name = 'ml_features' AND column_name = 'tokens'",
    )
    return row


def index_info(db: ScratchDb) -> dict[str, Any] | None:
    rows = query(
        db,
        "SELECT c.oid, i.indisvalid, am.amname, oc.opcname, a.attname, t.relname"
        " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid"
        " JOIN pg_am am ON am.oid = c.relam JOIN pg_opclass oc ON oc.oid = i.indclass[0]"
        " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
        " WHERE c.relname = %s",
        INDEX,
    )
    if not rows:
        return None
    (oid, valid, method, opclass, column, table) = rows[0]  # names are unique per schema
    return {"oid": oid, "valid": valid, "method": method, "opclass": opclass, "column": column, "table": table}


def version(db: ScratchDb) -> str:
    ((num,),) = query(db, "SELECT version_num FROM alembic_version")
    return num


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"alembic failed:\n{result.stdout}\n{result.stderr}"


def assert_migrated(db: ScratchDb, before: dict[int, str | None]) -> None:
    assert version(db) == HEAD
    assert column_type(db) == ("jsonb", "jsonb")
    index = index_info(db)
    assert index is not None
    assert index | {"oid": None} == {
        "oid": None,
        "valid": True,
        "method": "gin",
        "opclass": "jsonb_ops",
        "column": "tokens",
        "table": "ml_features",
    }
    assert snapshot(db, "tokens") == before
    # Runbook post-check 2: every non-NULL value is a JSON array.
    assert query(
        db, "SELECT count(*) FROM ml_features WHERE tokens IS NOT NULL AND jsonb_typeof(tokens) <> 'array'"
    ) == [(0,)]


@pytest.fixture
def seeded(db: ScratchDb) -> ScratchDb:
    conn = db.connect()
    with conn.cursor() as cur:
        for offset, tokens in enumerate(EDGE_ROWS):
            cur.execute(
                "INSERT INTO ml_features (txn_id, tokens) VALUES (%s, %s::text[])", (EDGE_FIRST_ID + offset, tokens)
            )
    conn.close()
    return db


def test_seed_matches_the_runbook_preflight(seeded: ScratchDb) -> None:
    assert column_type(seeded) == ("ARRAY", "_text")
    ((total, nulls, empty, lengths, odd_bounds, null_elements),) = query(
        seeded,
        "SELECT count(*), count(*) FILTER (WHERE tokens IS NULL), count(*) FILTER (WHERE tokens = '{}'),"
        " array_agg(DISTINCT cardinality(tokens)) FILTER (WHERE cardinality(tokens) > 0),"
        " count(*) FILTER (WHERE array_lower(tokens, 1) <> 1 OR array_ndims(tokens) > 1),"
        " count(*) FILTER (WHERE array_position(tokens, NULL) IS NOT NULL)"
        " FROM ml_features WHERE txn_id < %s",
        EDGE_FIRST_ID,
    )
    assert total == seeded.seed_rows
    assert 0.01 * seeded.seed_rows < nulls < 0.03 * seeded.seed_rows
    assert 0.02 * seeded.seed_rows < empty < 0.04 * seeded.seed_rows
    assert sorted(lengths) == list(range(1, 13))
    assert odd_bounds == 0
    assert null_elements > 0
    # The tricky tokens the seed sprinkles do show up in the random part too.
    ((tricky_rows,),) = query(
        seeded,
        "SELECT count(*) FROM ml_features WHERE txn_id < %s AND tokens && %s::text[]",
        EDGE_FIRST_ID,
        list(TRICKY_TOKENS),
    )
    assert tricky_rows > 0.005 * seeded.seed_rows


def test_upgrade_converts_and_indexes_as_the_runbook_expects(seeded: ScratchDb) -> None:
    before = snapshot(seeded, "to_jsonb(tokens)")
    result = seeded.alembic("upgrade", HEAD)
    assert_ok(result)
    assert UPGRADE_LINE in result.stderr.splitlines()
    assert_migrated(seeded, before)
    # jsonb_ops is the default GIN opclass for jsonb, so pg_indexes omits it from indexdef.
    assert query(seeded, "SELECT indexdef FROM pg_indexes WHERE indexname = %s", INDEX) == [
        (f"CREATE INDEX {INDEX} ON public.ml_features USING gin (tokens)",)
    ]
    plan = "\n".join(
        row[0] for row in query(seeded, "EXPLAIN SELECT txn_id FROM ml_features WHERE tokens @> '[\"🍕\"]'")
    )
    # GIN supports bitmap scans only: "Bitmap Index Scan on", never "Index Scan using".
    assert f"Bitmap Index Scan on {INDEX}" in plan
    assert query(seeded, "SELECT count(*) FROM ml_features WHERE tokens ? 'NULL'")[0][0] >= 3


def test_downgrade_restores_identical_text_arrays(seeded: ScratchDb) -> None:
    before = snapshot(seeded, "tokens")
    assert_ok(seeded.alembic("upgrade", HEAD))
    result = seeded.alembic("downgrade", "-1")
    assert_ok(result)
    assert DOWNGRADE_LINE in result.stderr.splitlines()
    assert version(seeded) == BASE
    assert column_type(seeded) == ("ARRAY", "_text")
    assert index_info(seeded) is None
    # text[] output shows NULL vs "NULL", quoting and non-default bounds ("[0:1]={...}").
    assert snapshot(seeded, "tokens") == before
    assert query(seeded, "SELECT tokens FROM ml_features WHERE txn_id = %s", EDGE_FIRST_ID + len(EDGE_ROWS) - 2) == [
        ([],)
    ]
    # The pg_temp helper was session-local and dropped; nothing is left in the schema.
    assert query(seeded, "SELECT count(*) FROM pg_proc WHERE proname = 'ml_features_tokens_to_text_array'") == [(0,)]
    # And the round trip can be repeated.
    assert_ok(seeded.alembic("upgrade", HEAD))
    assert_ok(seeded.alembic("downgrade", BASE))
    assert snapshot(seeded, "tokens") == before


def test_rerun_after_type_changed_without_version_bump(seeded: ScratchDb) -> None:
    before = snapshot(seeded, "to_jsonb(tokens)")
    execute(seeded, TO_JSONB)  # as if the run died between the type change and the index
    assert version(seeded) == BASE
    result = seeded.alembic("upgrade", HEAD)
    assert_ok(result)
    assert UPGRADE_LINE in result.stderr.splitlines()
    assert_migrated(seeded, before)


def test_rerun_after_cancelled_concurrent_index_build(seeded: ScratchDb) -> None:
    """A real partial failure: CREATE INDEX CONCURRENTLY is cancelled and leaves an INVALID index.

    CONCURRENTLY waits for every transaction whose snapshot predates the build; an open
    REPEATABLE READ transaction holds one, and the build is cancelled once it is seen waiting for it
    (by what happened, not after a time the type change before it might outlast on a slow machine).
    """
    before = snapshot(seeded, "to_jsonb(tokens)")
    blocker = psycopg2.connect(seeded.url)
    done = threading.Event()
    cancelled: list[int] = []

    def cancel_the_waiting_build() -> None:
        conn = seeded.connect()
        try:
            with conn.cursor() as cur:
                while not done.is_set() and not cancelled:
                    cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                                " AND pid <> pg_backend_pid() AND query ILIKE '%%CREATE INDEX CONCURRENTLY%%'"
                                " AND wait_event_type = 'Lock' AND wait_event = 'virtualxid'")
                    for (pid,) in cur.fetchall():
                        cur.execute("SELECT pg_cancel_backend(%s)", (pid,))
                        cancelled.append(pid)
                    time.sleep(0.05)
        finally:
            conn.close()

    canceller = threading.Thread(target=cancel_the_waiting_build, daemon=True)
    try:
        blocker.set_session(isolation_level="REPEATABLE READ")
        with blocker.cursor() as cur:
            cur.execute("SELECT 1")  # takes the snapshot, no lock on ml_features
        canceller.start()
        failed = seeded.alembic("upgrade", HEAD)  # its subprocess timeout is the hang guard
    finally:
        done.set()
        canceller.join(timeout=60)
        blocker.rollback()
        blocker.close()
    assert cancelled, "the index build was never seen waiting for the older snapshot"
    assert failed.returncode != 0
    assert "canceling statement due to user request" in failed.stderr
    assert version(seeded) == BASE  # no version bump ...
    assert column_type(seeded) == ("jsonb", "jsonb")  # ... but the type change was committed
    invalid = index_info(seeded)
    assert invalid is not None and invalid["valid"] is False

    result = seeded.alembic("upgrade", HEAD)
    assert_ok(result)
    assert UPGRADE_LINE in result.stderr.splitlines()
    assert_migrated(seeded, before)
    rebuilt = index_info(seeded)
    assert rebuilt is not None and rebuilt["oid"] != invalid["oid"]


def test_rerun_keeps_an_already_valid_index(seeded: ScratchDb) -> None:
    before = snapshot(seeded, "to_jsonb(tokens)")
    execute(seeded, TO_JSONB, CREATE_INDEX)  # index built, then the run died before the version bump
    built = index_info(seeded)
    assert built is not None and built["valid"]
    assert_ok(seeded.alembic("upgrade", HEAD))
    assert_migrated(seeded, before)
    assert index_info(seeded) == built  # not rebuilt


def test_upgrade_at_head_changes_nothing(seeded: ScratchDb) -> None:
    assert_ok(seeded.alembic("upgrade", HEAD))
    state_sql = (
        "SELECT relfilenode, (SELECT oid FROM pg_class WHERE relname = %s) FROM pg_class WHERE relname = 'ml_features'"
    )
    state = query(seeded, state_sql, INDEX)
    data = snapshot(seeded, "tokens")
    result = seeded.alembic("upgrade", HEAD)
    assert_ok(result)
    assert "Running upgrade" not in result.stderr
    assert query(seeded, state_sql, INDEX) == state  # no table rewrite, same index
    assert snapshot(seeded, "tokens") == data
    assert version(seeded) == HEAD


def test_downgrade_refuses_values_text_array_cannot_hold(seeded: ScratchDb) -> None:
    assert_ok(seeded.alembic("upgrade", HEAD))
    execute(seeded, """UPDATE ml_features SET tokens = '{"merchant": "x"}' WHERE txn_id = 1""")
    result = seeded.alembic("downgrade", "-1")
    assert result.returncode != 0
    assert "cannot become text[] without loss" in result.stdout
    # The downgrade transaction rolled back: index and type untouched.
    assert version(seeded) == HEAD
    assert column_type(seeded) == ("jsonb", "jsonb")
    assert index_info(seeded) is not None


def test_reset_demo_db_is_deterministic_and_forces_out_sessions(db: ScratchDb) -> None:
    before = snapshot(db, "tokens")
    squatter = db.connect()  # a leftover session must not make the reset fail
    try:
        result = db.reset()
    finally:
        squatter.close()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == [f"database: {db.name}", f"revision: {BASE}"]
    assert lines[2].startswith(f"rows:     {db.seed_rows} (NULL tokens: ")
    assert snapshot(db, "tokens") == before  # same setseed, same data


def test_seed_refuses_non_empty_table_and_jsonb(db: ScratchDb) -> None:
    from ledgermind_backend.seed import seed

    with pytest.raises(ValueError, match="not empty"):
        seed(db.url, 10)
    assert seed(db.url, 10, replace=True).rows == 10
    assert_ok(db.alembic("upgrade", HEAD))
    with pytest.raises(ValueError, match="is jsonb"):
        seed(db.url, 10, replace=True)
