"""Issue 11 section 3 through the real playbooks: the backup's fingerprint is taken in the very snapshot pg_dump dumps
(the sidecar's ``content``), and a rollback that restores the archive proves the restored table against it.

Under live writes the pre-flight's fingerprint does not describe the archive (the application wrote between the
pre-flight and the backup), so a restore proven against it fails although the archive came back exactly.
Fixtures (pgdb, playbook) are in conftest.py.
"""
from __future__ import annotations

import json
import threading

import psycopg2
import psycopg2.errors

PROOF_TASK = "Prove the content over the rows nobody wrote meanwhile"


class TokenWriter(threading.Thread):
    """The application updating tokens of keys 1001..1500 (away from the pre-flight's sample rows) one by one
    (autocommit), as text[] or jsonb, whichever the column is at that moment, until stopped."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.commits = 0
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        conn = psycopg2.connect(self.url, application_name="lm_test_pb_token_writer")
        conn.autocommit = True
        jsonb = False
        try:
            while not self.stop.is_set():
                value = ["live", str(self.commits)]
                try:
                    with conn.cursor() as cur:
                        cur.execute("SET statement_timeout = '60s'")
                        cur.execute("UPDATE ml_features SET tokens = %s::{} WHERE txn_id = %s".format(
                            "jsonb" if jsonb else "text[]"), (json.dumps(value) if jsonb else value,
                                                              self.commits % 500 + 1001))
                    self.commits += 1
                except psycopg2.errors.DatatypeMismatch:
                    jsonb = not jsonb  # converted meanwhile: nothing was committed
                except psycopg2.Error as exc:
                    self.errors.append(str(exc))
                self.stop.wait(0.01)
        finally:
            conn.close()

    def finish(self) -> None:
        self.stop.set()
        self.join(60)


def test_a_restore_under_live_writes_is_proven_against_the_archives_own_content(pgdb, playbook):
    writer = TokenWriter(pgdb.url)
    writer.start()
    try:
        migrated = playbook.run("migrate_tokens.yml")
    finally:
        writer.finish()
    assert migrated.rc == 0, migrated.describe()
    assert writer.commits > 0 and not writer.errors, (writer.commits, writer.errors[:5])

    [archive] = migrated.new_backups
    sidecar = json.loads((archive.parent / (archive.name + ".json")).read_text())
    content, metadata = sidecar["content"], sidecar["metadata"]
    assert (content["column"], content["key"]) == ("tokens", "txn_id")
    # The application wrote between the pre-flight and the backup: the pre-flight does not describe the archive.
    assert content["fingerprint"] != metadata["fingerprint"], "no write landed between the pre-flight and the backup"

    back = playbook.run("rollback_tokens.yml", "-e", "migration_rollback_restore_from_backup=true")
    assert back.rc == 0, back.describe()
    proof_task = back.result(PROOF_TASK)
    proof = proof_task["proof"]
    # Proven against the archive's own content, in the dump's snapshot: exactly what came back.
    assert proof["matches"] is True and proof["method"] == "full", proof
    assert proof["baseline_fingerprint"] == content["fingerprint"], proof
    assert proof_task["fingerprint"] == content["fingerprint"]
    assert pgdb.column_type() == "text[]"


def test_an_archive_without_recorded_content_is_proven_against_what_the_migration_recorded(pgdb, playbook):
    migrated = playbook.run("migrate_tokens.yml")
    assert migrated.rc == 0, migrated.describe()
    [archive] = migrated.new_backups
    sidecar_file = archive.parent / (archive.name + ".json")
    sidecar = json.loads(sidecar_file.read_text())
    assert sidecar["content"]["fingerprint"] == sidecar["metadata"]["fingerprint"]  # nobody wrote meanwhile
    # As an archive taken before content was recorded: the proof falls back on the sidecar's metadata.
    sidecar_file.write_text(json.dumps({k: v for k, v in sidecar.items() if k != "content"}))

    back = playbook.run("rollback_tokens.yml", "-e", "migration_rollback_restore_from_backup=true")
    assert back.rc == 0, back.describe()
    proof = back.result(PROOF_TASK)["proof"]
    assert proof["matches"] is True and proof["baseline_fingerprint"] == sidecar["metadata"]["fingerprint"], proof


RESTORE_TASK = "Restore the table from the verified archive, in one transaction, under the lock budget"
BUDGET = ("-e", "migration_rollback_lock_timeout_ms=300", "-e", "migration_rollback_retries=2",
          "-e", "migration_rollback_retry_delay=0.1")


def test_the_restore_after_a_failed_downgrade_goes_through_the_lock_budget(pgdb, playbook):
    migrated = playbook.run("migrate_tokens.yml")
    assert migrated.rc == 0, migrated.describe()
    holder = pgdb.connect(autocommit=False)
    try:
        with holder.cursor() as cur:
            cur.execute("SET application_name = 'lm_test_pb_lock_holder'")
            cur.execute("SELECT count(*) FROM ml_features")  # ACCESS SHARE, held until the transaction ends
            cur.execute("SELECT pg_backend_pid()")
            holder_pid = cur.fetchone()[0]
        state = pgdb.state()
        # The downgrade gives up on the lock (its own budget); the restore that replaces it runs under the same one.
        back = playbook.run("rollback_tokens.yml", "-e", "migration_rollback_restore_from_backup=true", *BUDGET)
    finally:
        holder.rollback()
        holder.close()
    assert back.rc != 0, back.describe()
    downgrade = back.result("Downgrade to the exact previous revision under the lock budget")
    # Reported, not failed (failed_when): the restore replaces a failed downgrade.
    assert [a["lock_timeout"] for a in downgrade["attempts"]] == [True, True], downgrade
    restored = back.result(RESTORE_TASK)
    assert restored.get("failed"), restored
    assert restored["lock_timeout_ms"] == 300 and [a["lock_timeout"] for a in restored["attempts"]] == [True, True]
    msg = restored["msg"]
    assert msg.startswith("public.ml_features stayed locked by another session: 2 tries of the restore"), msg
    assert f"pid {holder_pid} (application_name 'lm_test_pb_lock_holder'" in msg, msg
    assert "Nothing was changed: read back from the database" in msg, msg
    assert pgdb.state() == state  # still migrated: jsonb, its index, the same content

    # The holder gone, the same rollback goes through: downgrade and restore, text[] with the archive's content.
    again = playbook.run("rollback_tokens.yml", "-e", "migration_rollback_restore_from_backup=true", *BUDGET)
    assert again.rc == 0, again.describe()
    assert again.result(RESTORE_TASK)["attempts"][-1]["lock_timeout"] is False
    assert pgdb.column_type() == "text[]"
