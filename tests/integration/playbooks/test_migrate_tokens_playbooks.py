"""migrate_tokens.yml / rollback_tokens.yml end to end: real ansible-playbook against real PostgreSQL.

Each test resets its own 2000-row demo database (see conftest.py) and drives the playbooks the way an
operator would (`ansible-playbook playbooks/migrate_tokens.yml -i inventories/local`), then checks the
database itself (column type, Alembic revision, GIN index, a content fingerprint of our own), the backup
files and the sign-off report the run wrote.
"""
from __future__ import annotations

import json
import re
import stat
import threading
import time
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg2
import pytest

REVISION_BEFORE = "20251109_add_user_name_picture"
REVISION_AFTER = "502d44cd70ab"
ALTER_SQL = "ALTER TABLE ml_features ALTER COLUMN tokens TYPE jsonb USING to_jsonb(tokens)"
MIGRATION_APP = "ledgermind-alembic-migrate"
WRONG_PASSWORD = "Wr0ng-pb-Pa55-90817"


def assert_ok(run) -> None:
    assert run.rc == 0, run.describe()
    assert run.report is not None, "no sign-off report written\n" + run.describe()
    assert run.report["verdict"] == "PASSED", run.report


def assert_failed(run) -> None:
    assert run.rc != 0, run.describe()
    assert run.report is not None, "no sign-off report written\n" + run.describe()
    assert run.report["verdict"] == "FAILED", run.report


def assert_migrated(state, original) -> None:
    assert state["type"] == "jsonb"
    assert state["revision"] == REVISION_AFTER
    index = state["index"]
    assert index is not None and index["valid"], index
    assert (index["method"], index["opclasses"]) == ("gin", "jsonb_ops"), index
    assert state["fingerprint"] == original["fingerprint"]


def assert_original(state, original) -> None:
    assert state == original
    assert state["type"] == "text[]" and state["revision"] == REVISION_BEFORE and state["index"] is None


def assert_backup_sound(path, report_backup, file_sha256) -> None:
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, oct(path.stat().st_mode)
    sidecar = json.loads(path.with_name(path.name + ".json").read_text())
    digest = file_sha256(path)
    assert sidecar["sha256"] == digest
    assert sidecar["size_bytes"] == path.stat().st_size
    if report_backup is not None:
        assert report_backup["path"] == str(path)
        assert report_backup["sha256"] == digest
        assert report_backup["verified"] is True
    return sidecar


def items(report) -> dict[str, str]:
    return {i["item"]: i["status"] for i in report["items"]}


# ----------------------------------------------------------------------- 1. round trip and 2. idempotent


def test_second_migrate_changes_nothing_and_migrate_rollback_migrate_keeps_data_and_proves_each_step(
        pgdb, playbook, file_sha256):
    """One database through migrate, migrate again, rollback, migrate.

    The second migrate is the idempotence check: it changes nothing, takes no backup, and leaves the table exactly
    as the first left it; so the rollback after it rolls back the first migration, and the round trip (migrate,
    rollback, migrate) keeps the data and proves each step, as when nothing ran in between.
    """
    original = pgdb.state()

    first = playbook.run()
    assert_ok(first)
    migrated = pgdb.state()
    assert_migrated(migrated, original)
    report = first.report
    assert all(check["passed"] for check in report["validation"]), report["validation"]
    assert report["revision_before"] == REVISION_BEFORE and report["revision_after"] == REVISION_AFTER
    assert int(report["row_count"]) == 2000
    fingerprint = report["preflight"]["fingerprint"]
    fp_check = next(c for c in report["validation"] if c["item"].startswith("Content equals"))
    assert "proof: full" in fp_check["evidence"], fp_check
    assert f"untouched before={fingerprint}, after={fingerprint}" in fp_check["evidence"], fp_check
    assert items(report)["Backup created and verified"] == "pass"
    assert len(first.new_backups) == 1
    sidecar = assert_backup_sound(first.new_backups[0], report["backup"], file_sha256)
    assert sidecar["metadata"]["fingerprint"] == fingerprint
    assert sidecar["metadata"]["revision"] == REVISION_BEFORE

    # Idempotent: a second migrate of the migrated table changes nothing.
    second = playbook.run()
    assert_ok(second)
    assert second.recap["changed"] == 0, second.recap
    assert second.new_backups == []
    assert len(playbook.backups()) == 1
    assert pgdb.state() == migrated
    assert second.report["preflight"]["pending"] in (False, "False", "false")
    assert items(second.report)["Backup created and verified"] == "skipped"
    assert items(second.report)["Migration applied successfully"] == "pass"
    assert second.report["revision_before"] == second.report["revision_after"] == REVISION_AFTER

    # Round trip: rollback, then migrate again.
    back = playbook.run("rollback_tokens.yml")
    assert_ok(back)
    assert_original(pgdb.state(), original)
    assert back.report["kind"] == "rollback"
    assert back.report["rollback"]["ok"] is True
    assert all(c["passed"] for c in back.report["rollback"]["checks"]), back.report["rollback"]
    rb_fp = next(c for c in back.report["rollback"]["checks"] if c["item"].startswith("Content is as before"))
    assert f"untouched before={fingerprint}, after={fingerprint}" in rb_fp["evidence"], rb_fp
    assert items(back.report)["Downgrade to the exact previous revision"] == "pass"
    assert items(back.report)["Restored from backup (worst case)"] == "skipped"
    assert back.new_backups == []

    again = playbook.run()
    assert_ok(again)
    assert_migrated(pgdb.state(), original)
    assert again.report["preflight"]["fingerprint"] == fingerprint
    assert all(check["passed"] for check in again.report["validation"])
    assert len(again.new_backups) == 1
    assert_backup_sound(again.new_backups[0], again.report["backup"], file_sha256)
    # The first archive is still there, still intact.
    assert_backup_sound(first.new_backups[0], None, file_sha256)


# -------------------------------------------------------------------------------------------- 3. check mode


def test_check_mode_changes_nothing_and_shows_the_sql(pgdb, playbook):
    original = pgdb.state()
    run = playbook.run(check=True)
    # A dry run of a pending migration is a successful run: it reports what would happen.
    assert pgdb.state() == original
    assert original["index"] is None and original["type"] == "text[]"
    assert playbook.backups() == []
    assert not playbook.backup_dir.exists() or list(playbook.backup_dir.iterdir()) == []
    assert ALTER_SQL in run.stdout
    findings = run.result("Record the pre-flight findings")["ansible_facts"]["migration_preflight_findings"]
    assert ALTER_SQL in findings["sql"]
    assert "CREATE INDEX CONCURRENTLY ix_ml_features_tokens_gin" in findings["sql"]
    assert run.report is not None and run.report["check_mode"] in (True, "True", "true")
    # Validation cannot see a migration that check mode did not run: it must not fail the dry run.
    assert run.rc == 0, run.describe()
    assert run.report["verdict"] != "FAILED", run.report


# ------------------------------------------------------------------------------------ 4. pre-flight refusals


def test_preflight_refuses_rows_that_would_not_round_trip(pgdb, playbook):
    # A 2-D array and one with lower bound 0: to_jsonb flattens the shape / drops the bounds.
    bad_values = {7: "{{a,b},{c,d}}", 1234: "[0:1]={x,y}"}
    for key, value in bad_values.items():
        pgdb.execute("UPDATE ml_features SET tokens = %s WHERE txn_id = %s", (value, key))
    original = pgdb.state()

    run = playbook.run()
    assert_failed(run)
    msg = run.failure_msg
    assert "Pre-flight refused the migration" in msg, msg
    named = re.search(r"ml_features keys: ([0-9, ]+)", msg)
    assert named, msg
    assert {int(k) for k in named.group(1).split(",")} == set(bad_values), msg
    assert f"{len(bad_values)} row(s) would not survive" in msg, msg
    assert pgdb.state() == original
    assert playbook.backups() == []
    assert items(run.report)["Pre-flight checks completed (schema, row counts, samples)"] == "fail"
    assert items(run.report)["Migration applied successfully"] == "skipped"


@pytest.mark.parametrize("revision_sql, current", [
    ("DELETE FROM alembic_version", "base"),
    ("UPDATE alembic_version SET version_num = 'feedfacecafe'", "feedfacecafe"),
], ids=["base", "unknown-revision"])
def test_preflight_refuses_an_unexpected_current_revision(pgdb, playbook, revision_sql, current):
    pgdb.execute(revision_sql)
    original = pgdb.state()

    run = playbook.run()
    assert_failed(run)
    msg = run.failure_msg
    assert current in msg, msg
    assert "revision" in msg.lower(), msg
    assert REVISION_BEFORE in msg or "cannot move" in msg, msg
    assert pgdb.state() == original
    assert playbook.backups() == []
    assert run.report["rollback"] == {}


# -------------------------------------------------------------------------------------------- 5. lock budget


# The migration's lock budget in these tests: one try waits at most this long for its lock, then gives up.
LOCK_TIMEOUT_MS = 500
# How long a reader may wait for its own lock in the gives-up test, enforced by PostgreSQL (lock_timeout), so
# time spent waiting in the lock queue, never the machine's speed. Behind a migration that keeps its budget a
# reader waits at most what is left of one try's LOCK_TIMEOUT_MS; six times that leaves a loaded machine ample
# room. Without the budget the reader would wait as long as the blocking transaction lasts: the whole run.
READER_LOCK_TIMEOUT_MS = 6 * LOCK_TIMEOUT_MS


class Reader(threading.Thread):
    """An application reading ml_features on its own connection: every 100 ms, and at once after `read_now()`.

    The watcher calls `read_now()` each time it sees a try of the migration waiting for its lock, so such a
    read asks for its lock while that ALTER waits (or just after it gave up): `prompted_reads` counts them.
    With `lock_timeout_ms`, PostgreSQL fails any read that waits longer than that for its lock; errors (with
    what held or awaited the table then) land in `errors`. Nothing is timed by the test itself.
    """

    def __init__(self, db, lock_timeout_ms: int | None = None) -> None:
        super().__init__(daemon=True)
        self.conn = db.connect()
        with self.conn.cursor() as cur:
            cur.execute("SET statement_timeout = '30s'")  # a hang guard, not a measure
            if lock_timeout_ms is not None:
                cur.execute(f"SET lock_timeout = '{int(lock_timeout_ms)}ms'")
        self.reads = 0
        self.prompted_reads = 0
        self.errors: list[str] = []
        self.stop = threading.Event()
        self._prompt = threading.Event()

    def read_now(self) -> None:
        self._prompt.set()

    def run(self) -> None:
        with self.conn.cursor() as cur:
            # A prompt given before finish() is always answered.
            while not self.stop.is_set() or self._prompt.is_set():
                prompted = self._prompt.is_set()
                if prompted:
                    self._prompt.clear()  # a prompt given from here on is answered by this read or the next
                try:
                    cur.execute("SELECT count(*) FROM ml_features")
                    cur.fetchone()
                except psycopg2.Error as exc:
                    self.errors.append(f"{str(exc).splitlines()[0]} (prompted: {prompted}); {self._table_locks(cur)}")
                else:
                    self.reads += 1
                    self.prompted_reads += prompted
                self._prompt.wait(0.1)

    @staticmethod
    def _table_locks(cur) -> str:
        """Who held or awaited ml_features when a read failed: a diagnosis for the failure message."""
        try:
            cur.execute("SELECT string_agg(format('%s pid %s %s %s: %s', a.application_name, l.pid, l.mode,"
                        " CASE WHEN l.granted THEN 'held' ELSE 'awaited' END, left(a.query, 100)), '; ')"
                        " FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid"
                        " WHERE l.relation = 'ml_features'::regclass AND l.pid <> pg_backend_pid()")
            return "ml_features then: " + (cur.fetchone()[0] or "no other session")
        except psycopg2.Error as exc:
            return f"no lock diagnosis: {exc}"

    def finish(self) -> None:
        self.stop.set()
        self.join(timeout=60)
        self.conn.close()


class LockHolder:
    """Another session holding ACCESS SHARE on ml_features in an open transaction."""

    def __init__(self, db) -> None:
        self.db = db
        self.conn = psycopg2.connect(db.url, application_name="lm_test_pb_lock_holder")
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            self.pid = cur.fetchone()[0]
            cur.execute("LOCK TABLE ml_features IN ACCESS SHARE MODE")
        self.released = False
        self.saw_migration_wait = threading.Event()
        # Each try seen waiting for its lock on ml_features: (backend pid, waitstart).
        self.migration_waits: list[tuple[int, object]] = []
        self.saw_a_try_give_up = threading.Event()
        self.monitor_sampled_a_wait = threading.Event()
        self.watch_errors: list[str] = []
        self._stop_watching = threading.Event()
        self._watcher: threading.Thread | None = None

    # The tries of the migration waiting for their lock on ml_features, each with whether alembic_migrate's lock
    # monitor has since started (10 ms or more after the wait did) a sample it has finished (its LOCK_WAITS_SQL,
    # known by its blocking_pids column); the 10 ms make the wait that sample saw more than rounding's 0.000 s.
    WAITS_SQL = """
        SELECT l.pid, l.waitstart,
               (SELECT max(s.query_start) FROM pg_stat_activity AS s
                WHERE s.datname = current_database() AND s.pid <> pg_backend_pid() AND s.state = 'idle'
                  AND s.query LIKE '%%pg_blocking_pids(a.pid) AS blocking_pids%%')
                 > l.waitstart + interval '10 milliseconds' AS sampled
        FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
        WHERE NOT l.granted AND l.waitstart IS NOT NULL AND l.relation = 'ml_features'::regclass
          AND a.application_name = %s"""

    def watch(self, on_wait=None, release: bool = False, deadline: float = 300) -> None:
        """Watches the migration's tries from the database's side until `stop_watching()`, by what happens:

        - each try seen waiting for its lock goes into `migration_waits` (and `on_wait()` is called);
        - `saw_a_try_give_up`: a try seen waiting was later seen not waiting while this session still held
          the table, so it gave up on its lock budget;
        - `monitor_sampled_a_wait`: the monitor started and finished a sample while a try was waiting and the
          same wait was still on in the next poll, so that sample saw the try waiting, blocked by this session.

        With `release`, commits once a try has given up and the monitor has sampled a wait: a later try gets
        through, and the report holds a wait the monitor certainly saw, however slow the machine.
        """

        def watch() -> None:
            probe = self.db.connect()
            sampled_candidates: set[tuple[int, object]] = set()
            previous: set[tuple[int, object]] = set()
            try:
                end = time.monotonic() + deadline  # a hang guard
                with probe.cursor() as cur:
                    while time.monotonic() < end and not self._stop_watching.is_set():
                        cur.execute(self.WAITS_SQL, (MIGRATION_APP,))
                        rows = cur.fetchall()
                        current = {(pid, waitstart) for pid, waitstart, _ in rows}
                        for wait in sorted(current - set(self.migration_waits), key=lambda w: w[1]):
                            self.migration_waits.append(wait)
                            self.saw_migration_wait.set()
                            if on_wait:
                                on_wait()
                        if previous - current and not self.released:
                            self.saw_a_try_give_up.set()
                        if sampled_candidates & current:  # still waiting: the sample fell inside the wait
                            self.monitor_sampled_a_wait.set()
                        sampled_candidates = {(pid, waitstart) for pid, waitstart, sampled in rows if sampled}
                        previous = current
                        if release and self.saw_a_try_give_up.is_set() and self.monitor_sampled_a_wait.is_set():
                            self.release()
                        self._stop_watching.wait(0.05)
            except Exception as exc:  # noqa: BLE001 - reported by the test
                self.watch_errors.append(repr(exc))
            finally:
                probe.close()

        self._watcher = threading.Thread(target=watch, daemon=True)
        self._watcher.start()

    def stop_watching(self) -> None:
        self._stop_watching.set()
        if self._watcher is not None:
            self._watcher.join(timeout=30)

    def release(self) -> None:
        if not self.released:
            self.conn.rollback()
            self.released = True

    def close(self) -> None:
        self.stop_watching()
        self.release()
        self.conn.close()


def test_preflight_refuses_while_a_long_transaction_holds_the_table(pgdb, playbook):
    original = pgdb.state()
    holder = LockHolder(pgdb)
    try:
        time.sleep(1.5)
        run = playbook.run("migrate_tokens.yml", "-e", "migration_preflight_max_transaction_seconds=1")
        still_open = pgdb.scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND state = 'idle in transaction'", (holder.pid,))
    finally:
        holder.close()

    assert_failed(run)
    msg = run.failure_msg
    assert "Pre-flight refused the migration" in msg, msg
    assert "sessions have held a transaction on ml_features open for more than 1" in msg, msg
    assert re.search(rf"\b{holder.pid}\b", msg), (holder.pid, msg)
    assert still_open == 1, "the pre-flight must not end other sessions"
    assert pgdb.state() == original
    assert playbook.backups() == []


# The pre-flight's long-transaction refusal is not what these tests are about.
LOCK_BUDGET = ["-e", f"db_migration_lock_timeout_ms={LOCK_TIMEOUT_MS}", "-e", "db_migration_retry_delay=0.5",
               "-e", "migration_preflight_max_transaction_seconds=600"]


def test_lock_budget_gives_up_cleanly_without_blocking_readers(pgdb, playbook):
    original = pgdb.state()
    holder = LockHolder(pgdb)
    reader = Reader(pgdb, lock_timeout_ms=READER_LOCK_TIMEOUT_MS)
    try:
        reader.start()
        holder.watch(on_wait=reader.read_now)
        run = playbook.run("migrate_tokens.yml", *LOCK_BUDGET, "-e", "db_migration_retries=2")
    finally:
        holder.stop_watching()
        reader.finish()
        holder.close()

    assert_failed(run)
    msg = run.failure_msg
    assert "gave up after 2 tries" in msg, msg
    assert "lock" in msg, msg
    # Decided from the table's state, not from Alembic's exit.
    assert "Nothing had been changed: the table is as at the start (pre-migration" in msg, msg
    assert "half-applied" not in msg, msg
    assert pgdb.state() == original
    assert run.report["rollback"] == {}
    attempts = run.report["failure"] and run.result("Move the schema under the lock budget")["attempts"]
    assert len(attempts) == 2 and all(a["lock_timeout"] for a in attempts), attempts
    assert not holder.watch_errors, holder.watch_errors
    assert holder.saw_migration_wait.is_set(), "the migration was never seen waiting for the lock"
    if holder.monitor_sampled_a_wait.is_set():  # the monitor samples on its own clock: only what it saw counts
        assert holder.pid in run.report["lock_waits"]["blocking_pids"], run.report["lock_waits"]

    # Reads asked for their lock while a try waited for its own (or just after it gave up), and no read of the
    # whole run waited longer than READER_LOCK_TIMEOUT_MS for its lock: PostgreSQL would have failed it.
    assert reader.prompted_reads >= 1, (reader.prompted_reads, holder.migration_waits)
    assert not reader.errors, "\n".join(reader.errors)


def test_lock_released_in_time_lets_the_migration_through_and_reports_the_wait(pgdb, playbook):
    original = pgdb.state()
    holder = LockHolder(pgdb)
    reader = Reader(pgdb)  # no lock bound: once through, the ALTER holds the table for as long as it runs
    try:
        reader.start()
        # Released once a try has given up and the lock monitor has sampled a wait; the tries beyond two are
        # room for waits the monitor's sampling misses on a loaded machine.
        holder.watch(on_wait=reader.read_now, release=True)
        run = playbook.run("migrate_tokens.yml", *LOCK_BUDGET, "-e", "db_migration_retries=8")
    finally:
        holder.stop_watching()
        reader.finish()
        holder.close()

    assert not holder.watch_errors, holder.watch_errors
    assert holder.saw_a_try_give_up.is_set() and holder.monitor_sampled_a_wait.is_set(), holder.migration_waits
    assert_ok(run)
    assert_migrated(pgdb.state(), original)
    waits = run.report["lock_waits"]
    assert holder.pid in waits["blocking_pids"], waits
    assert float(waits["migration_longest_wait_seconds"]) > 0, waits
    attempts = run.result("Move the schema under the lock budget")["attempts"]
    assert len(attempts) >= 2 and attempts[0]["lock_timeout"] and attempts[-1]["rc"] == 0, attempts
    assert "blocked by pids" in next(i["evidence"] for i in run.report["items"]
                                     if i["item"] == "No performance degradation observed")
    assert reader.prompted_reads >= 1, (reader.prompted_reads, holder.migration_waits)
    assert not reader.errors, "\n".join(reader.errors)


# ------------------------------------------------------------------------------------- 6. automatic rollback


def test_failed_validation_rolls_back_automatically_unless_switched_off(pgdb, playbook):
    original = pgdb.state()

    run = playbook.run("migrate_tokens.yml", "-e", "migration_validate_index_opclass=jsonb_path_ops")
    assert_failed(run)
    msg = run.failure_msg
    assert "Post-migration validation failed" in msg and "jsonb_path_ops" in msg, msg
    assert f"Rolled back to {REVISION_BEFORE}" in msg, msg
    assert_original(pgdb.state(), original)
    report = run.report
    assert report["rollback"]["ok"] is True, report["rollback"]
    assert all(c["passed"] for c in report["rollback"]["checks"])
    assert report["failure"]["msg"]
    assert items(report)["Rollback plan tested"] == "pass"
    assert items(report)["Post-migration validation passed (type, integrity, index)"] == "fail"
    assert len(run.new_backups) == 1

    kept = playbook.run("migrate_tokens.yml", "-e", "migration_validate_index_opclass=jsonb_path_ops",
                        "-e", "ledgermind_auto_rollback=false")
    assert_failed(kept)
    assert "Automatic rollback is off" in kept.failure_msg, kept.failure_msg
    assert_migrated(pgdb.state(), original)
    assert kept.report["rollback"] == {}


# ------------------------------------------------------------------------------------ 7. restore from backup


def test_rollback_rejects_a_truncated_archive_and_leaves_the_table_then_restores_the_intact_one_over_later_changes(
        pgdb, playbook, file_sha256):
    """One migrate and its archive, later changes to the table, then two rollbacks with restore from backup.

    With the archive truncated, the rollback refuses before it changes anything. With the archive put back byte
    for byte (as its sidecar's checksum knows it), the rollback restores it over the later changes.
    """
    original = pgdb.state()
    first = playbook.run()
    assert_ok(first)
    archive = first.new_backups[0]
    sidecar_before = archive.with_name(archive.name + ".json").read_text()
    pgdb.execute("""UPDATE ml_features SET tokens = '["changed"]' WHERE txn_id < 10""")
    assert pgdb.fingerprint() != original["fingerprint"]
    changed = pgdb.state()
    intact = archive.read_bytes()
    with archive.open("r+b") as handle:
        handle.truncate(archive.stat().st_size // 2)

    back = playbook.run("rollback_tokens.yml", "-e", "migration_rollback_restore_from_backup=true")
    assert_failed(back)
    msg = back.failure_msg
    assert "sha256" in msg.lower() or "checksum" in msg.lower() or "truncat" in msg.lower(), msg
    assert str(archive.name) in msg, msg
    after = pgdb.state()
    # The restore itself touched nothing (it verifies before it drops the table)...
    assert after["fingerprint"] == changed["fingerprint"] != original["fingerprint"]
    problems = []
    # ...and since the requested worst-case restore cannot happen, the rollback must refuse before it
    # changes anything at all: no downgrade either, the table is exactly as it was.
    if after != changed:
        problems.append(f"schema changed although the requested restore was refused: {changed} -> {after}")
    # The sign-off must say the requested restore failed, not that it was not requested.
    restore_item = next(i for i in back.report["items"] if i["item"] == "Restored from backup (worst case)")
    if restore_item["status"] != "fail":
        problems.append(f"report item {restore_item}")
    assert archive.with_name(archive.name + ".json").read_text() == sidecar_before
    assert not problems, problems

    # The archive as the migrate run wrote it again: the rollback restores it over the later changes.
    archive.write_bytes(intact)
    back = playbook.run("rollback_tokens.yml", "-e", "migration_rollback_restore_from_backup=true")
    assert_ok(back)
    assert_original(pgdb.state(), original)
    assert back.report["rollback"]["restored_from"] == str(archive)
    assert items(back.report)["Restored from backup (worst case)"] == "pass"
    assert_backup_sound(archive, None, file_sha256)


# ------------------------------------------------------------------------------------------------ 8. secrets


def test_wrong_password_fails_clearly_and_is_never_shown(pgdb, playbook):
    parts = urlsplit(pgdb.url)
    user_host = parts.netloc.rpartition("@")
    user = user_host[0].split(":", 1)[0]
    wrong_url = urlunsplit(parts._replace(netloc=f"{user}:{quote(WRONG_PASSWORD)}@{user_host[2]}"))
    original = pgdb.state()

    run = playbook.run(url=wrong_url, json_output=False, verbosity=3)
    assert run.rc != 0, run.describe()
    assert "password authentication failed" in run.text, run.text[-3000:]
    assert WRONG_PASSWORD not in run.text
    assert quote(WRONG_PASSWORD) not in run.text
    for path in playbook.report_dir.glob("*"):
        assert WRONG_PASSWORD not in path.read_text(), path
    assert playbook.backups() == []
    assert pgdb.state() == original


def test_right_password_is_never_shown_at_vvv(pgdb, playbook, secret_role):
    original = pgdb.state()
    parts = urlsplit(pgdb.url)
    hostport = parts.netloc.rpartition("@")[2]
    if secret_role is not None:
        user, password = secret_role
        url = urlunsplit(parts._replace(netloc=f"{user}:{quote(password)}@{hostport}"))
        needles = [password]
    else:  # no superuser access to make a role of our own: the stack's own credentials
        password = parts.password
        url = pgdb.url
        assert password not in parts.username and password not in pgdb.name, "password is not distinctive"
        needles = [password]

    run = playbook.run(url=url, json_output=False, verbosity=3)
    assert run.rc == 0, run.describe()
    assert_migrated(pgdb.state(), original)
    written = [*playbook.report_dir.glob("*"), *playbook.backup_dir.glob("*.json")]
    assert written
    for needle in needles:
        assert needle not in run.text
        for path in written:
            assert needle not in path.read_text(), path
