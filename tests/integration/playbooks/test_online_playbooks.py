"""Issue 10, the online conversion, through real ansible-playbook runs on real PostgreSQL.

The application writes (inserts, updates, deletes) on its own connection through the whole online migration and
the whole online rollback; every committed write is there afterwards, both runs PASS, and nothing of the
conversion (shadow column, trigger, progress) is left. A swap that cannot get its lock fails cleanly; the run
rolls back what it left, or, with the automatic rollback off, a re-run continues the conversion. Check mode
shows the plan and changes nothing. Fixtures (pgdb, playbook) are in conftest.py.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
from collections.abc import Iterator

import psycopg2
from livewrites import assert_content, assert_failed, assert_ok, content, wait_for, writing

REVISION_BEFORE = "20251109_add_user_name_picture"
REVISION_AFTER = "502d44cd70ab"
SHADOWS = ("tokens__ledgermind_jsonb", "tokens__ledgermind_text")
TRIGGER = "zz_ledgermind_online_sync"
# auto chooses online from 1000 rows on; the demo database has 2000. Small batches: several slices and batches.
ONLINE = ["-e", "ledgermind_online_min_rows=1000", "-e", "ledgermind_online_batch_size=200"]


def leftovers(db) -> list[str]:
    columns = db.query("SELECT attname::text FROM pg_attribute WHERE attrelid = 'public.ml_features'::regclass"
                       " AND attname = ANY (%s) AND NOT attisdropped", (list(SHADOWS),))
    triggers = db.query("SELECT tgname::text FROM pg_trigger WHERE tgrelid = 'public.ml_features'::regclass"
                        " AND tgname = %s", (TRIGGER,))
    progress = db.query("SELECT to_regclass('ledgermind_migrations.online_conversion') IS NOT NULL")[0][0] and \
        db.query("SELECT column_name FROM ledgermind_migrations.online_conversion")
    return [r[0] for r in columns + triggers + list(progress or [])]


def last_column(db) -> str:
    return db.scalar("SELECT attname::text FROM pg_attribute WHERE attrelid = 'public.ml_features'::regclass"
                     " AND attnum > 0 AND NOT attisdropped ORDER BY attnum DESC LIMIT 1")


@contextlib.contextmanager
def table_locked_once_expanded(db, seconds: float) -> Iterator[threading.Event]:
    """Another session takes ACCESS SHARE on the table as soon as the shadow column exists and keeps it for
    ``seconds`` (a long report query): the swap cannot get its ACCESS EXCLUSIVE lock meanwhile. Long enough for the
    backfill, index and verify tasks to run before the swap on a busy machine (about 3 s a task under load)."""
    took = threading.Event()
    stop = threading.Event()

    def hold() -> None:
        conn = psycopg2.connect(db.url, application_name="lm_test_pb_long_reader")
        try:
            with conn.cursor() as cur:
                deadline = time.monotonic() + 240
                while time.monotonic() < deadline and not stop.is_set():
                    cur.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.ml_features'::regclass"
                                " AND attname = %s AND NOT attisdropped", (SHADOWS[0],))
                    if cur.fetchone()[0]:
                        break
                    conn.rollback()
                    time.sleep(0.02)
                cur.execute("LOCK TABLE ml_features IN ACCESS SHARE MODE")
                took.set()
                stop.wait(seconds)
            conn.rollback()
        finally:
            conn.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    try:
        yield took
    finally:
        stop.set()
        thread.join(timeout=30)


def test_online_migrate_and_rollback_under_live_writes_pass_and_keep_every_write(pgdb, playbook):
    rows = content(pgdb)
    with writing(pgdb, new_keys=range(100_000, 110_000), update_keys=range(1, 501),
                 delete_keys=range(1001, 1500)) as writer:
        migrated = playbook.run("migrate_tokens.yml", *ONLINE)
    assert_ok(migrated)
    # The rule with the planner's row estimate (the writers move it a little).
    assert re.search(r"Conversion to jsonb: online \(auto: \d+ rows >= 1000", migrated.stdout), migrated.describe()
    assert min(writer.counts["insert"], writer.counts["update"], writer.counts["delete"]) > 0, writer.counts
    rows = writer.expected(rows)
    assert_content(pgdb, rows)
    state = pgdb.state()
    assert state["type"] == "jsonb" and state["revision"] == REVISION_AFTER, state
    assert state["index"]["valid"] and state["index"]["opclasses"] == "jsonb_ops", state
    assert "USING gin (tokens)" in state["index"]["definition"], state
    # The online swap's mark: the new column comes last. Nothing of the conversion is left.
    assert last_column(pgdb) == "tokens" and leftovers(pgdb) == []

    with writing(pgdb, new_keys=range(200_000, 210_000), update_keys=range(501, 1001),
                 delete_keys=range(1500, 2000)) as writer:
        back = playbook.run("rollback_tokens.yml", *ONLINE)
    assert_ok(back)
    assert "Conversion to text[]: online" in back.stdout, back.describe()
    assert min(writer.counts.values()) > 0, writer.counts
    assert_content(pgdb, writer.expected(rows))
    state = pgdb.state()
    assert state["type"] == "text[]" and state["revision"] == REVISION_BEFORE and state["index"] is None, state
    assert leftovers(pgdb) == []
    check = next(c for c in back.report["rollback"]["checks"] if c["item"].startswith("Content is as before"))
    assert check["passed"] is True, check


def test_a_swap_that_cannot_get_its_lock_fails_cleanly_and_the_run_removes_what_it_left(pgdb, playbook):
    original = pgdb.state()
    with table_locked_once_expanded(pgdb, 25) as took:
        run = playbook.run("migrate_tokens.yml", *ONLINE, "-e", "db_migration_online_retries=2",
                           "-e", "db_migration_online_lock_timeout_ms=200")
    assert took.is_set()
    assert_failed(run)
    message = run.failure_msg
    assert "stayed locked by another session" in message and \
        "2 tries, each waiting at most 200 ms" in message, message
    # Rolled back automatically: the column, the content and Alembic as at the start, nothing left over.
    assert pgdb.state() == original
    assert leftovers(pgdb) == []


def test_with_the_automatic_rollback_off_a_rerun_continues_the_conversion(pgdb, playbook):
    original = pgdb.state()
    with table_locked_once_expanded(pgdb, 25):
        run = playbook.run("migrate_tokens.yml", *ONLINE, "-e", "db_migration_online_retries=2",
                           "-e", "db_migration_online_lock_timeout_ms=200", "-e", "ledgermind_auto_rollback=false")
    assert_failed(run)
    message = run.failure_msg
    assert "An online conversion is unfinished" in message and "Run migrate_tokens.yml again to continue it" in \
        message, message
    # The table is as it was, plus the shadow column (filled and verified) and its trigger.
    assert pgdb.column_type() == "text[]" and pgdb.revision() == REVISION_BEFORE
    assert SHADOWS[0] in leftovers(pgdb) and TRIGGER in leftovers(pgdb)
    done_before = pgdb.scalar("SELECT rows_done FROM ledgermind_migrations.online_conversion")
    assert done_before >= 2000

    again = playbook.run("migrate_tokens.yml", *ONLINE)
    assert_ok(again)
    assert "an online conversion is in progress: it continues where it stopped" in again.stdout, again.describe()
    # The backfill had reached the end: the re-run read no row again.
    assert re.search(r"2000 of ~\d+ rows \(100.0%\), n/a rows/s", again.stdout), again.describe()
    state = pgdb.state()
    assert state["type"] == "jsonb" and state["revision"] == REVISION_AFTER and state["index"]["valid"], state
    assert state["fingerprint"] == original["fingerprint"] and leftovers(pgdb) == []


def test_check_mode_shows_the_online_plan_and_changes_nothing(pgdb, playbook):
    original = pgdb.state()
    run = playbook.run("migrate_tokens.yml", *ONLINE, check=True)
    assert run.rc == 0, run.describe()
    assert "Online conversion of public.ml_features.tokens to jsonb (pending): 2000 rows in 10 batches of 200" in \
        " ".join(run.stdout.split()), run.describe()
    assert pgdb.state() == original and leftovers(pgdb) == []


def test_a_running_online_backfill_is_resumed_after_the_controller_is_killed(pgdb, playbook):
    original = pgdb.state()
    proc = playbook.start("migrate_tokens.yml", *ONLINE, "-e", "ledgermind_online_batch_size=20",
                          "-e", "ledgermind_online_batch_pause=0.05")

    def backfill_under_way() -> bool:
        found = pgdb.query("SELECT to_regclass('ledgermind_migrations.online_conversion') IS NOT NULL")[0][0] and \
            pgdb.query("SELECT rows_done FROM ledgermind_migrations.online_conversion")
        return bool(found) and 0 < found[0][0] < 1500
    wait_for("the backfill under way", backfill_under_way, timeout=240, interval=0.02)
    # The controller dies, and its orphaned module loses its connection (a lost host): the batch in flight
    # rolls back.
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    pgdb.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
               " AND application_name = 'ledgermind.migrations.online'")
    ours = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE %s"
    wait_for("our sessions to end", lambda: pgdb.scalar(ours, ("ledgermind%",)) == 0, timeout=120, interval=0.2)
    done = pgdb.scalar("SELECT rows_done FROM ledgermind_migrations.online_conversion")
    assert 0 < done < 2000

    again = playbook.run("migrate_tokens.yml", *ONLINE, "-e", "ledgermind_run_stale_after=0")
    assert_ok(again)
    assert "an online conversion is in progress: it continues where it stopped" in again.stdout, again.describe()
    # Continued from the recorded key: rows done end at the table's 2000 (a restart would count them twice).
    assert re.search(r"2000 of ~\d+ rows \(100.0%\)", again.stdout), again.describe()
    state = pgdb.state()
    assert state["type"] == "jsonb" and state["revision"] == REVISION_AFTER, state
    assert state["fingerprint"] == original["fingerprint"] and leftovers(pgdb) == []
