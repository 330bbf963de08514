"""pg_backup_restore under the lock budget (issue 11 §4), on real PostgreSQL: a session holding a lock on the table
makes each try give up after lock_timeout_ms (rolled back whole), and the restore retries, then fails cleanly naming
the holder with the table untouched, or succeeds once the holder has gone; an application writing throughout never
queues behind a waiting restore for longer than one try. No timed assertions: the waits are read from pg_locks."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from stackdb import drop_database, server_url, with_db
from test_backup_restore import TO_JSONB_SQL, backup, holding, psql, restore, scratch_database, snapshot

RESTORE_APP = "ledgermind.migrations.pg_backup_restore"
BUDGET = {"lock_timeout_ms": 300, "retry_delay": 0.1, "max_retry_delay": 0.2}
WAITING_SQL = """
SELECT a.pid, extract(epoch FROM clock_timestamp() - l.waitstart)::float8
FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE NOT l.granted AND a.application_name = %s AND l.waitstart IS NOT NULL
"""


@pytest.fixture
def budget_db() -> Iterator[str]:
    yield from scratch_database("lm_test_restore_budget", 5000)


class RestoreWatcher(threading.Thread):
    """Samples pg_locks for the restore's sessions waiting for a lock: which tries waited (one session per try) and
    the longest wait the server recorded (waitstart)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.waiting_pids: set[int] = set()
        self.longest_wait = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        conn = psycopg2.connect(self.url, application_name="lm_test_restore_watcher")
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                while not self.stop.is_set():
                    cur.execute(WAITING_SQL, (RESTORE_APP,))
                    for pid, seconds in cur.fetchall():
                        self.waiting_pids.add(pid)
                        self.longest_wait = max(self.longest_wait, seconds or 0.0)
                    self.stop.wait(0.02)
        finally:
            conn.close()


class Holder(threading.Thread):
    """A session holding ACCESS SHARE on the table (an open transaction that read it) until the restore has given up
    ``tries`` times (seen as that many waiting restore sessions), then ending its transaction."""

    def __init__(self, url: str, watcher: RestoreWatcher, tries: int) -> None:
        super().__init__(daemon=True)
        self.url, self.watcher, self.tries = url, watcher, tries
        self.holding = threading.Event()
        self.released_after: int | None = None

    def run(self) -> None:
        conn = psycopg2.connect(self.url, application_name="lm_test_restore_holder")
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM ml_features")
                self.holding.set()
                deadline = time.monotonic() + 120
                while len(self.watcher.waiting_pids) < self.tries and time.monotonic() < deadline:
                    time.sleep(0.02)
                # The try seen waiting last must have given up (its session gone) before the holder lets go.
                while self._restore_waiting() and time.monotonic() < deadline:
                    time.sleep(0.02)
            self.released_after = len(self.watcher.waiting_pids)
        finally:
            conn.rollback()
            conn.close()

    def _restore_waiting(self) -> bool:
        return psql(self.url, f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{RESTORE_APP}'"
                              " AND wait_event_type = 'Lock'") != "0"


class Inserter(threading.Thread):
    """The application inserting new rows (autocommit) until stopped; the longest single INSERT it measured. Keys
    committed before the restore are gone with the table it replaces, and may come again (duplicate key)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.commits = 0
        self.longest = 0.0
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        conn = psycopg2.connect(self.url, application_name="lm_test_restore_inserter")
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                while not self.stop.is_set():
                    started = time.monotonic()
                    try:
                        # No tokens: the column is jsonb before the restore and text[] after it.
                        cur.execute("INSERT INTO ml_features (txn_id, merchant) VALUES (%s, 'live')",
                                    (100000 + self.commits,))
                        self.commits += 1
                    except psycopg2.Error as exc:
                        self.errors.append(" ".join(str(exc).split()))
                    self.longest = max(self.longest, time.monotonic() - started)
                    self.stop.wait(0.005)
        finally:
            conn.close()


def migrated_archive(url: str, tmp_path) -> tuple[dict, dict]:
    """The table's backup (text[]) and what the archive holds; the table then converted to jsonb."""
    archived = snapshot(url)
    result = backup(url, tmp_path)
    psql(url, TO_JSONB_SQL)
    return result, archived


def test_a_lock_held_through_the_restore_retries_then_fails_cleanly_naming_the_holder(budget_db, tmp_path):
    result, _archived = migrated_archive(budget_db, tmp_path)
    before = snapshot(budget_db)
    with holding(budget_db, "SELECT count(*) FROM ml_features") as holder:
        failed = restore(budget_db, result["path"], lock_retries=3, **BUDGET)
    assert failed["failed"]
    msg = failed["msg"]
    assert msg.startswith("public.ml_features stayed locked by another session: 3 tries of the restore each waited "
                          "at most 300 ms for its lock"), msg
    assert f"pid {holder} (application_name 'lm_test_backup_holder'" in msg and "AccessShareLock" in msg, msg
    assert "Nothing was changed: read back from the database, public.ml_features is as it was" in msg, msg
    assert "column tokens jsonb" in msg and "Retry the restore once that session has finished" in msg, msg
    assert [a["lock_timeout"] for a in failed["attempts"]] == [True, True, True]
    assert all("55P03" in a["error"] for a in failed["attempts"]), failed["attempts"]
    assert [h["pid"] for h in failed["lock_holders"]] == [holder]
    assert failed["changed"] is False and failed["lock_timeout_ms"] == 300
    assert snapshot(budget_db) == before  # still jsonb, same rows, same indexes
    assert psql(budget_db, f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{RESTORE_APP}'") == "0"


def test_a_blocker_that_ends_after_two_tries_lets_the_restore_through_with_the_archives_content(budget_db, tmp_path):
    result, archived = migrated_archive(budget_db, tmp_path)
    watcher = RestoreWatcher(budget_db)
    watcher.start()
    holder = Holder(budget_db, watcher, tries=2)
    holder.start()
    try:
        assert holder.holding.wait(30)
        restored = restore(budget_db, result["path"], lock_retries=10, **BUDGET)
    finally:
        holder.join(60)
        watcher.stop.set()
        watcher.join(10)
    assert not restored.get("failed"), restored.get("msg")
    tries = restored["attempts"]
    assert holder.released_after is not None and holder.released_after >= 2
    assert len(tries) >= 3 and [a["lock_timeout"] for a in tries[:2]] == [True, True], tries
    assert tries[-1]["lock_timeout"] is False and tries[-1]["error"] == "", tries
    assert restored["restored_identity"]["column_type"] == "text[]"
    assert snapshot(budget_db) == archived  # the archive's rows, text[] again


def test_a_writer_never_queues_behind_the_restore_longer_than_one_try(budget_db, tmp_path):
    result, _archived = migrated_archive(budget_db, tmp_path)
    watcher = RestoreWatcher(budget_db)
    watcher.start()
    inserter = Inserter(budget_db)
    inserter.start()
    holder = Holder(budget_db, watcher, tries=2)
    holder.start()
    try:
        assert holder.holding.wait(30)
        restored = restore(budget_db, result["path"], lock_retries=10, **BUDGET)
        commits_at_end = inserter.commits
        deadline = time.monotonic() + 30
        while inserter.commits < commits_at_end + 20 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        inserter.stop.set()
        holder.join(60)
        watcher.stop.set()
        inserter.join(30)
        watcher.join(10)
    assert not restored.get("failed"), restored.get("msg")
    assert [a["lock_timeout"] for a in restored["attempts"][:2]] == [True, True], restored["attempts"]
    assert inserter.commits > commits_at_end, "the writer did not go on after the restore"
    # The server's own record: no try of the restore waited for its lock longer than one try's budget.
    assert 0 < watcher.longest_wait < 0.3 + 0.5, watcher.longest_wait
    # The writer's longest INSERT: at most a waiting try, plus the successful try holding the table, plus slack.
    held = max(a["seconds"] for a in restored["attempts"])
    assert inserter.longest < 0.3 + held + 5.0, (inserter.longest, restored["attempts"])
    assert not [e for e in inserter.errors if "duplicate key" not in e], inserter.errors[:5]


def test_a_scratch_copy_is_read_back_against_the_archives_content(budget_db, tmp_path):
    result = backup(budget_db, tmp_path)
    content = result["content"]
    copy_name = "lm_test_restore_budget_copy"
    copy = with_db(server_url(), copy_name)
    sidecar = Path(result["path"] + ".json")
    try:
        for attempt in ("as archived", "sidecar altered"):
            drop_database(server_url(), copy_name)
            psql(server_url(), f"CREATE DATABASE {copy_name}")
            restored = restore(copy, result["path"], restore_into="scratch", **BUDGET)
            if attempt == "as archived":
                assert not restored.get("failed"), restored.get("msg")
                assert restored["restored_content"] == {
                    "fingerprint": content["fingerprint"], "fingerprint_sums": content["fingerprint_sums"],
                    "total": 5000, "column": "tokens", "key": "txn_id", "matches": True}
                data = json.loads(sidecar.read_text())
                data["content"]["fingerprint"] = "0" * 32  # the checksum covers the archive, not its sidecar
                sidecar.write_text(json.dumps(data))
            else:
                assert restored["failed"]
                assert restored["msg"] == (
                    f"the scratch copy of public.ml_features restored from {result['path']} does not hold the "
                    f"archive's content: fingerprint {content['fingerprint']} over 5000 rows, the archive's sidecar "
                    f"records {'0' * 32}")
    finally:
        drop_database(server_url(), copy_name)
