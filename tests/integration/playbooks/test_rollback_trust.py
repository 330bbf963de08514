"""Issue 9, the rollback you can trust: regressions on real PostgreSQL through real ansible-playbook runs.

One test (or a few) per defect the issue names, each checking the database itself (column type, Alembic
revision, GIN index, content row by row), the run's message, the sign-off report and the run record kept in
the target database (``ledgermind_migrations.run_history``):

1. one backup directory serving two databases: the rollback restores this database's own backup, and
   refuses another database's archive before changing anything;
2. a half-applied migration (type converted, index build failed, Alembic not told) is named as such and
   rolled back automatically, or left as the operator asked and then rolled back or completed; a
   database-level statement_timeout does not reach Alembic's session;
3. live writes during migrate and rollback: both pass, every committed write survives, the report says how
   many rows were written meanwhile and which proof was used; an unlogged content change is still caught;
4. nothing to roll back, one run at a time per table, a controller killed mid-migration.

Where two defects need the same playbook runs on the same kind of database, one test runs them once and makes
both tests' assertions in turn (each ansible-playbook run costs half a minute): the statement_timeout migrate is
followed by the rollback after an application insert (3.), the nothing-to-roll-back run creates the run history
the run-at-work part needs.

After every successful run the write-log trigger must be gone from the table.
Fixtures (pgdb, playbook, ...) are in conftest.py.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import threading
import time
from typing import Any

import psycopg2
from livewrites import assert_content, assert_failed, assert_ok, content, wait_for, writing

REVISION_BEFORE = "20251109_add_user_name_picture"
REVISION_AFTER = "502d44cd70ab"
HISTORY = "ledgermind_migrations"
TRIGGER = "ledgermind_write_log"
MIGRATION_APP = "ledgermind-alembic-migrate"
# One try whose CREATE INDEX CONCURRENTLY gives up after 500 ms waiting for another session's snapshot.
HALF_APPLY = ["-e", "db_migration_retries=1", "-e", "db_migration_lock_timeout_ms=500"]
PROOF_EVIDENCE = re.compile(r"proof: (\w+)(?: against [^;]+)?; (\d+) rows compared, (\d+) written by the application "
                            r"meanwhile")


# --------------------------------------------------------------------------------------------- helpers


def assert_migrated(state, original) -> None:
    assert state["type"] == "jsonb", state
    assert state["revision"] == REVISION_AFTER, state
    assert state["index"] is not None and state["index"]["valid"], state
    assert state["fingerprint"] == original["fingerprint"], (state, original)


def assert_original(state, original) -> None:
    assert state == original, (state, original)
    assert state["type"] == "text[]" and state["revision"] == REVISION_BEFORE and state["index"] is None


def triggers(db) -> list[str]:
    """The table's user triggers, with their arguments (the write log's: run id, column)."""
    return [f"{name}({args})" for name, args in db.query(
        "SELECT tgname, replace(encode(tgargs, 'escape'), '\\000', ',') FROM pg_trigger"
        " WHERE tgrelid = 'public.ml_features'::regclass AND NOT tgisinternal ORDER BY tgname")]


def assert_no_write_log(db) -> None:
    left = [t for t in triggers(db) if t.startswith(TRIGGER)]
    assert not left, f"the write-log trigger outlived its run: {left}"


def runs(db) -> dict[str, dict[str, Any]]:
    """The run record kept in the target database, by run id."""
    rows = db.query(f"SELECT run_id, kind, status, phase, backup_path, details FROM {HISTORY}.run_history ORDER BY id")
    return {r[0]: {"kind": r[1], "status": r[2], "phase": r[3], "backup_path": r[4], "details": r[5]} for r in rows}


def run_id_of(run) -> str:
    """This run's id, from its report file's name (tokens_<kind>_<host>_<run id>.json)."""
    assert run.report_path is not None, run.describe()
    return run.report_path.stem.split("_localhost_", 1)[1]


def validation_check(report, part: str) -> dict[str, Any]:
    found = [c for c in report["validation"] if part in c["item"]]
    assert found, report["validation"]
    return found[0]


@contextlib.contextmanager
def snapshot_held(db):
    """Another session holding a snapshot and touching no table of ours: CREATE INDEX CONCURRENTLY waits for
    it and, under a short lock budget, gives up after the type change has committed."""
    conn = psycopg2.connect(db.url, application_name="lm_test_pb_snapshot")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            cur.execute("SELECT 1")
        yield
    finally:
        with contextlib.suppress(psycopg2.Error), conn.cursor() as cur:
            cur.execute("ROLLBACK")
        conn.close()


# ------------------------------------------------------------- 1. one backup directory, two databases


def test_restore_takes_this_databases_own_backup_and_refuses_another_databases_archive(
        pgdb, playbook, pgdb_other, playbook_other):
    original = pgdb.state()
    original_rows = content(pgdb)
    assert len(original_rows) == 2000 and pgdb_other.scalar("SELECT count(*) FROM ml_features") == 1500
    assert playbook.backup_dir == playbook_other.backup_dir

    first = playbook.run()
    assert_ok(first)
    assert_no_write_log(pgdb)
    [ours] = first.new_backups
    # The other database is migrated later: its archive is the newest in the shared directory.
    time.sleep(1.1)
    second = playbook_other.run()
    assert_ok(second)
    [theirs] = second.new_backups
    assert theirs.stat().st_mtime > ours.stat().st_mtime and pgdb.name in ours.name and pgdb_other.name in theirs.name
    other_migrated = pgdb_other.state()
    # The application keeps writing after the migration: only a restore of this database's archive brings
    # back exactly its original content.
    pgdb.execute("""UPDATE ml_features SET tokens = '["changed"]' WHERE txn_id <= 10""")
    pgdb.execute("DELETE FROM ml_features WHERE txn_id > 1990")
    changed = pgdb.state()

    # The other database's archive, given explicitly: refused before anything changes, naming both databases.
    refused = playbook.run("rollback_tokens.yml", "-e", "migration_rollback_restore_from_backup=true",
                           "-e", f"migration_rollback_backup_path={theirs}")
    assert_failed(refused)
    msg = refused.failure_msg
    assert pgdb.name in msg and pgdb_other.name in msg, msg
    assert pgdb.state() == changed
    assert changed["type"] == "jsonb" and changed["revision"] == REVISION_AFTER and changed["index"]["valid"]
    assert pgdb_other.state() == other_migrated
    assert_no_write_log(pgdb)

    # Nothing given: the backup of this database's own migrate run, found in its run history.
    back = playbook.run("rollback_tokens.yml", "-e", "migration_rollback_restore_from_backup=true")
    assert_ok(back)
    assert_original(pgdb.state(), original)
    assert_content(pgdb, original_rows)
    assert back.report["rollback"]["restored_from"] == str(ours), back.report["rollback"]
    assert run_id_of(first) in back.report["rollback"]["archive_source"], back.report["rollback"]
    assert {i["item"]: i["status"] for i in back.report["items"]}["Restored from backup (worst case)"] == "pass"
    assert pgdb_other.state() == other_migrated
    assert back.new_backups == [] and sorted(playbook.backups()) == sorted([ours, theirs])
    # The archive was taken while the migrate run's write log was on the table, and carries its trigger.
    assert_no_write_log(pgdb)


# ------------------------------------------------------------------------ 2. half-applied migration


def test_half_applied_migration_is_named_and_rolled_back_automatically(pgdb, playbook):
    original = pgdb.state()
    original_rows = content(pgdb)

    with snapshot_held(pgdb):
        run = playbook.run("migrate_tokens.yml", *HALF_APPLY)

    assert_failed(run)
    msg = run.failure_msg
    assert "half-applied" in msg.lower(), msg
    assert "Rolled back automatically" in msg, msg
    assert "Nothing had been changed" not in run.stdout and "Nothing had been changed" not in json.dumps(run.report)
    # The failure really is a half-applied one: type converted, index build failed, Alembic not told.
    moved = run.result("Move the schema under the lock budget")
    assert moved["partial"] is True, moved
    assert moved["state_after"]["column_type"] == "jsonb" and moved["state_after"]["revision"] == REVISION_BEFORE
    assert not (moved["state_after"]["index_exists"] and moved["state_after"]["index_valid"]), moved["state_after"]
    assert_original(pgdb.state(), original)
    assert_content(pgdb, original_rows)
    rollback = run.report["rollback"]
    assert rollback["ok"] is True and all(c["passed"] for c in rollback["checks"]), rollback
    assert rollback["summary"].startswith("Half-applied migration"), rollback["summary"]
    assert runs(pgdb)[run_id_of(run)]["status"] == "rolled_back"
    assert_no_write_log(pgdb)


def half_apply_and_keep(pgdb, playbook, original):
    """A migrate run whose index build fails after the type change, with automatic rollback off."""
    with snapshot_held(pgdb):
        kept = playbook.run("migrate_tokens.yml", *HALF_APPLY, "-e", "ledgermind_auto_rollback=false")
    assert_failed(kept)
    msg = kept.failure_msg
    assert "Automatic rollback is off: the database was left half-applied" in msg, msg
    assert "Nothing had been changed" not in msg, msg
    half = pgdb.state()
    assert half["type"] == "jsonb" and half["revision"] == REVISION_BEFORE, half
    assert half["index"] is None or not half["index"]["valid"], half
    assert half["fingerprint"] == original["fingerprint"]
    assert kept.report["rollback"] == {}
    assert_no_write_log(pgdb)
    return kept


def test_half_applied_migration_left_as_asked_then_rolled_back(pgdb, playbook):
    original = pgdb.state()
    original_rows = content(pgdb)
    half_apply_and_keep(pgdb, playbook, original)

    back = playbook.run("rollback_tokens.yml")
    assert_ok(back)
    assert_original(pgdb.state(), original)
    assert_content(pgdb, original_rows)
    rollback = back.report["rollback"]
    assert rollback["summary"].startswith("Half-applied migration"), rollback["summary"]
    assert all(c["passed"] for c in rollback["checks"]), rollback["checks"]
    assert back.result("Downgrade to the exact previous revision")["stamped"] == REVISION_AFTER
    assert_no_write_log(pgdb)


def test_half_applied_migration_left_as_asked_then_completed_without_a_new_backup(pgdb, playbook):
    original = pgdb.state()
    kept = half_apply_and_keep(pgdb, playbook, original)
    assert len(kept.new_backups) == 1
    archives = playbook.backups()

    again = playbook.run("migrate_tokens.yml")
    assert_ok(again)
    assert_migrated(pgdb.state(), original)
    assert again.new_backups == [] and playbook.backups() == archives
    assert {i["item"]: i["status"] for i in again.report["items"]}["Backup created and verified"] == "skipped"
    assert all(c["passed"] for c in again.report["validation"]), again.report["validation"]
    # A later rollback with restore still finds the half-applied run's pre-migration archive.
    assert runs(pgdb)[run_id_of(kept)]["backup_path"] == str(archives[0])
    assert_no_write_log(pgdb)


class LockHolder:
    """Another session holding ACCESS SHARE on ml_features until released: the migration's ALTER waits for it."""

    def __init__(self, db) -> None:
        self.conn = psycopg2.connect(db.url, application_name="lm_test_pb_lock_holder")
        with self.conn.cursor() as cur:
            cur.execute("LOCK TABLE ml_features IN ACCESS SHARE MODE")
        self.db = db
        self.migration_waited = threading.Event()

    def migration_waiting(self) -> bool:
        return bool(self.db.scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                   " AND application_name = %s AND wait_event_type = 'Lock'", (MIGRATION_APP,)))

    def release(self) -> None:
        with contextlib.suppress(psycopg2.Error):
            self.conn.rollback()

    def release_when_the_migration_waited(self, seconds: float) -> threading.Thread:
        def watch() -> None:
            with contextlib.suppress(AssertionError):
                wait_for("the migration waiting for its lock", self.migration_waiting)
                self.migration_waited.set()
                time.sleep(seconds)
            self.release()

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self.release()
        self.conn.close()


def test_a_database_statement_timeout_does_not_reach_alembics_session_nor_a_later_insert_fail_the_rollback(
        pgdb, playbook):
    """A migrate run under a database-wide statement_timeout, then an application insert, then a rollback.

    The migrate run proves that the database's statement_timeout does not reach Alembic's session; the rollback
    after it (the timeout reset, nothing else at work) proves that a row the application inserted after the
    migration does not fail the rollback (3., live writes).
    """
    # A database default that cancels any statement running 3 s, and an ALTER that must wait 4.5 s for a lock:
    # only a session with its own statement_timeout (Alembic's, set by alembic_migrate) gets through.
    # (Our other sessions' statements are short; 1 ms would cancel them at random, see the report of issue 9.)
    original = pgdb.state()
    rows = content(pgdb)
    pgdb.execute(f"ALTER DATABASE \"{pgdb.name}\" SET statement_timeout = '3s'")
    holder = LockHolder(pgdb)
    try:
        releaser = holder.release_when_the_migration_waited(4.5)
        run = playbook.run("migrate_tokens.yml", "-e", "db_migration_lock_timeout_ms=60000",
                           "-e", "migration_preflight_max_transaction_seconds=600")
        releaser.join(timeout=10)
    finally:
        holder.close()
        pgdb.execute(f"ALTER DATABASE \"{pgdb.name}\" RESET statement_timeout")

    assert holder.migration_waited.is_set(), "the migration never waited for the lock"
    assert_ok(run)
    assert_migrated(pgdb.state(), original)
    attempts = run.result("Move the schema under the lock budget")["attempts"]
    assert len(attempts) == 1 and attempts[0]["rc"] == 0 and attempts[0]["duration_seconds"] > 3, attempts
    assert_no_write_log(pgdb)

    # An application insert after the migration does not fail the rollback.
    pgdb.execute("""INSERT INTO ml_features (txn_id, tokens) VALUES (99999, '["after", "the", "migration"]')""")

    back = playbook.run("rollback_tokens.yml")
    assert_ok(back)
    assert_content(pgdb, {**rows, 99999: ["after", "the", "migration"]})
    state = pgdb.state()
    assert state["type"] == "text[]" and state["revision"] == REVISION_BEFORE and state["index"] is None, state
    assert state["fingerprint"] != original["fingerprint"]
    assert all(c["passed"] for c in back.report["rollback"]["checks"]), back.report["rollback"]["checks"]
    assert back.report["proof"]["matches"] is True, back.report["proof"]
    assert_no_write_log(pgdb)


# ---------------------------------------------------------------------------------------- 3. live writes


def proof_of(evidence: str) -> tuple[str, int, int]:
    found = PROOF_EVIDENCE.search(evidence)
    assert found, evidence
    return found.group(1), int(found.group(2)), int(found.group(3))


def test_live_writes_during_migrate_and_rollback_pass_and_survive(pgdb, playbook):
    rows = content(pgdb)

    with writing(pgdb, new_keys=range(100_000, 110_000), update_keys=range(1, 501),
                 delete_keys=range(1001, 1500)) as writer:
        migrated = playbook.run("migrate_tokens.yml")
    assert_ok(migrated)
    assert min(writer.counts["insert"], writer.counts["update"], writer.counts["delete"]) > 0, writer.counts
    rows = writer.expected(rows)
    assert_content(pgdb, rows)
    state = pgdb.state()
    assert state["type"] == "jsonb" and state["revision"] == REVISION_AFTER and state["index"]["valid"], state
    content_check = validation_check(migrated.report, "Content equals the pre-flight's")
    assert content_check["passed"] is True, content_check
    method, compared, written = proof_of(content_check["evidence"])
    # The rows compared are the pre-flight's rows nobody wrote (the writes include new keys).
    assert method == "untouched_rows" and written > 0 and 0 < compared < 2000 <= compared + written, content_check
    assert validation_check(migrated.report, "Row count accounted for")["passed"] is True
    assert_no_write_log(pgdb)

    with writing(pgdb, new_keys=range(200_000, 210_000), update_keys=range(501, 1001),
                 delete_keys=range(1500, 2000)) as writer:
        back = playbook.run("rollback_tokens.yml")
    assert_ok(back)
    assert min(writer.counts.values()) > 0, writer.counts
    assert_content(pgdb, writer.expected(rows))
    state = pgdb.state()
    assert state["type"] == "text[]" and state["revision"] == REVISION_BEFORE and state["index"] is None, state
    proof = back.report["proof"]
    assert proof["matches"] is True and proof["method"] == "untouched_rows" and proof["rows_written"] > 0, proof
    check = next(c for c in back.report["rollback"]["checks"] if c["item"].startswith("Content is as before"))
    assert check["passed"] is True, check
    method, _compared, written = proof_of(check["evidence"])
    assert method == "untouched_rows" and written == proof["rows_written"], check
    assert runs(pgdb)[run_id_of(back)]["details"]["proof"]["rows_written"] == written
    assert_no_write_log(pgdb)


class Corrupter(threading.Thread):
    """Once the column is jsonb (the migration's type change committed), changes one row from a session the
    write log skips (our own sessions' marker), as a bug in the migration would."""

    KEY = 1999

    def __init__(self, db) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.done = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        try:
            wait_for("the column to become jsonb", lambda: self.db.column_type() == "jsonb", interval=0.02)
            conn = psycopg2.connect(self.db.url, application_name="lm_test_pb_corrupter")
            conn.autocommit = True
            try:
                with conn.cursor() as cur:
                    cur.execute("SET ledgermind.write_log = off")
                    cur.execute("""UPDATE ml_features SET tokens = '["corrupted"]' WHERE txn_id = %s""", (self.KEY,))
                    assert cur.rowcount == 1
            finally:
                conn.close()
            self.done.set()
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = str(exc)


def test_an_unlogged_content_change_during_the_run_is_still_caught(pgdb, playbook):
    rows = content(pgdb)
    corrupter = Corrupter(pgdb)
    corrupter.start()
    with writing(pgdb, new_keys=range(100_000, 110_000), update_keys=range(1, 501),
                 delete_keys=range(1001, 1500)) as writer:
        run = playbook.run("migrate_tokens.yml")
    corrupter.join(timeout=10)
    assert corrupter.done.is_set(), corrupter.error

    assert_failed(run)
    msg = run.failure_msg
    assert "Post-migration validation failed" in msg and "Content equals the pre-flight's" in msg, msg
    content_check = validation_check(run.report, "Content equals the pre-flight's")
    assert content_check["passed"] is False, content_check
    method, _compared, written = proof_of(content_check["evidence"])
    assert method == "untouched_rows" and written > 0, content_check
    # Rolled back: the schema is as before the run; the application's writes are kept, and so is the
    # corrupted row (a rollback without restore changes no content).
    state = pgdb.state()
    assert state["type"] == "text[]" and state["revision"] == REVISION_BEFORE and state["index"] is None, state
    assert "Rolled back automatically" in msg, msg
    assert run.report["rollback"], run.report
    assert_content(pgdb, {**writer.expected(rows), Corrupter.KEY: ["corrupted"]})
    assert_no_write_log(pgdb)


# ------------------------------------------------------------------------- 4. run record and nothing to do


def test_nothing_to_roll_back_on_a_never_migrated_database_and_a_run_at_work_is_not_joined_but_taken_over(
        pgdb, playbook):
    """A rollback of a never-migrated database has nothing to roll back; that run also creates the run history,
    in which a migrate run "at work" elsewhere is then neither joined by a migrate nor left running by a take-over."""
    original = pgdb.state()

    run = playbook.run("rollback_tokens.yml")
    assert run.rc == 0, run.describe()
    assert pgdb.state() == original
    report = run.report
    assert report["verdict"] == "NOTHING TO ROLL BACK", report["verdict"]
    assert report["rollback"]["nothing_to_do"] is True, report["rollback"]
    assert report["rollback"]["summary"].startswith("Nothing to roll back"), report["rollback"]["summary"]
    assert "nothing to roll back" in json.dumps(report["items"]).lower(), report["items"]
    assert not any(i["status"] == "fail" for i in report["items"]), report["items"]
    assert run.new_backups == []
    assert runs(pgdb)[run_id_of(run)]["status"] == "nothing_to_do"
    assert_no_write_log(pgdb)

    # One real run (the one above) created the run history; then a migrate run "at work" elsewhere, heartbeat fresh.
    holder = "migrate-20260101T000000-beef"
    pgdb.execute(
        f"INSERT INTO {HISTORY}.run_history (run_id, kind, status, phase, database, database_uuid, table_schema,"
        " table_name, column_name, operator, controller)"
        f" SELECT %s, 'migrate', 'running', 'migrate', current_database(), database_uuid, 'public', 'ml_features',"
        f" 'tokens', 'alice', 'other-controller' FROM {HISTORY}.database_instance", (holder,))

    refused = playbook.run("migrate_tokens.yml")
    assert refused.rc != 0, refused.describe()
    msg = refused.failure_msg
    assert "Another run is at work" in msg and holder in msg and "alice" in msg and "other-controller" in msg, msg
    assert "Nothing was changed" in msg, msg
    assert pgdb.state() == original
    assert refused.new_backups == []
    recorded = runs(pgdb)
    assert recorded[holder]["status"] == "running" and len(recorded) == 2, recorded
    assert_no_write_log(pgdb)

    taken = playbook.run("rollback_tokens.yml", "-e", f"ledgermind_take_over_run={holder}")
    assert taken.rc == 0, taken.describe()
    said = " ".join(taken.result("Say what became of the run this one took over")["msg"])
    assert holder in said and "recorded as interrupted" in said, said
    recorded = runs(pgdb)
    assert recorded[holder]["status"] == "interrupted", recorded[holder]
    assert recorded[holder]["details"]["interrupted_by"] == run_id_of(taken)
    assert recorded[run_id_of(taken)]["status"] == "nothing_to_do"
    assert pgdb.state() == original
    assert_no_write_log(pgdb)


def test_a_controller_killed_mid_migration_is_noticed_and_finished(pgdb, playbook):
    original = pgdb.state()
    ours = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE %s"
    # Alembic's ALTER waits for this lock: the controller is killed while the migration is under way.
    holder = LockHolder(pgdb)
    controller = playbook.start("migrate_tokens.yml", "-e", "db_migration_lock_timeout_ms=60000",
                                "-e", "migration_preflight_max_transaction_seconds=600")
    try:
        wait_for("Alembic waiting for its lock", lambda: controller.poll() is not None or holder.migration_waiting())
        assert controller.poll() is None, f"the run ended (rc {controller.returncode}) before Alembic was seen"
        [killed] = [r for r, v in runs(pgdb).items() if v["status"] == "running"]
        os.kill(controller.pid, signal.SIGKILL)
        controller.wait(timeout=30)
        holder.release()
        # The orphaned module and its Alembic go on and finish on their own.
        wait_for("our sessions to end", lambda: pgdb.scalar(ours, ("ledgermind%",)) == 0, timeout=300, interval=0.5)
    finally:
        holder.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(controller.pid, signal.SIGKILL)
    assert runs(pgdb)[killed]["status"] == "running"

    run = playbook.run("migrate_tokens.yml", "-e", "ledgermind_run_stale_after=0")
    assert_ok(run)
    assert_migrated(pgdb.state(), original)
    assert all(c["passed"] for c in run.report["validation"]), run.report["validation"]
    said = " ".join(run.result("Say what became of the run this one took over")["msg"])
    assert killed in said and "never finished" in said and "recorded as interrupted" in said, said
    recorded = runs(pgdb)
    assert recorded[killed]["status"] == "interrupted", recorded[killed]
    assert recorded[killed]["details"]["interrupted_by"] == run_id_of(run)
    assert recorded[run_id_of(run)]["status"] == "passed"
    assert_no_write_log(pgdb)
