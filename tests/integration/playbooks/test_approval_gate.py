"""Issue 13's first node, in the playbook: ``ledgermind_stop_before_migration`` runs the pre-flight and the backup
(and the rehearsal), changes nothing, says READY FOR APPROVAL, and the approved run then migrates.
Fixtures (pgdb, playbook) are in conftest.py."""
from __future__ import annotations

from livewrites import assert_ok


def test_stopping_before_the_migration_changes_nothing_and_the_approved_run_migrates(pgdb, playbook):
    original = pgdb.state()
    gate = playbook.run("migrate_tokens.yml", "-e", "ledgermind_stop_before_migration=true")
    assert gate.rc == 0, gate.describe()
    assert gate.report["verdict"] == "READY FOR APPROVAL", gate.report
    assert pgdb.state() == original
    assert len([p for p in playbook.backups() if p.suffix == ".dump"]) == 1
    items = {i["item"]: i for i in gate.report["items"]}
    assert items["Backup created and verified"]["status"] == "pass"
    assert "stopped before the migration" in items["Migration applied successfully"]["evidence"]

    approved = playbook.run("migrate_tokens.yml")
    assert_ok(approved)
    state = pgdb.state()
    assert state["type"] == "jsonb" and state["fingerprint"] == original["fingerprint"], state
