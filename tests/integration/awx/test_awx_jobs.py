"""The job templates, run through ansible-runner the way AWX runs them (see conftest.py).

A migration job signs off as the AWX user and hands its backup to the next workflow node with
set_stats; the rollback node, given those artifacts as extra vars (as AWX passes them), rolls back
against that exact archive; a failing migration is a failed job, after which the rollback succeeds
and the workflow's last node fails on purpose.
"""
from __future__ import annotations

from pathlib import Path

import pytest

# Test modules do not import conftest (another directory's conftest.py may own that name).
AWX_USER = "jdoe-sre"  # conftest.AWX_USER: the awx_user_name every job is launched with
REVISION_BEFORE = "20251109_add_user_name_picture"
REVISION_AFTER = "502d44cd70ab"
MIGRATE = "Tokens migration"
ROLLBACK = "Tokens rollback"
MARKER = "Tokens migration rolled back (fail on purpose)"


def handed_on(job) -> dict:
    """What AWX passes to the next workflow node: the job's set_stats artifacts."""
    return {key: job.artifact_data[key] for key in ("ledgermind_backup_path", "ledgermind_backup_paths")
            if key in job.artifact_data}


def test_migrate_then_rollback_jobs_hand_the_backup_on(awx_jobs, scratch_db):
    original = scratch_db.state()

    migrate = awx_jobs.launch(MIGRATE, {"ledgermind_notes": "CHG-1234"})
    assert migrate.status == "successful" and migrate.rc == 0, migrate.describe()
    state = scratch_db.state()
    assert state["type"] == "jsonb" and state["revision"] == REVISION_AFTER
    assert state["fingerprint"] == original["fingerprint"]

    report = migrate.report
    assert report is not None and report["verdict"] == "PASSED", report
    assert report["deployed_by"] == AWX_USER
    assert str(report["awx_job_id"]) == "4100"
    assert report["notes"] == "CHG-1234"

    backup = report["backup"]["path"]
    assert Path(backup).is_file() and Path(backup).parent == awx_jobs.backup_dir
    assert migrate.artifact_data["ledgermind_backup_path"] == backup
    assert migrate.artifact_data["ledgermind_backup_paths"] == {"ledgermind-db-test": backup}

    # The rollback node: the migrate node's artifacts arrive as extra vars. Restoring proves it used
    # that archive, not merely the newest one in the directory.
    rollback = awx_jobs.launch(ROLLBACK, {**handed_on(migrate), "migration_rollback_restore_from_backup": "true"})
    assert rollback.status == "successful", rollback.describe()
    assert rollback.report["verdict"] == "PASSED" and rollback.report["deployed_by"] == AWX_USER
    assert rollback.report["rollback"]["restored_from"] == backup
    assert scratch_db.state() == original


@pytest.mark.parametrize("auto_rollback", ["true", "false"])
def test_a_failing_migration_fails_the_job_and_the_workflow_rolls_back_and_ends_red(awx_jobs, scratch_db,
                                                                                    auto_rollback):
    original = scratch_db.state()
    # Validation demands an opclass the migration does not create: a legitimate post-migration failure.
    migrate = awx_jobs.launch(MIGRATE, {"migration_validate_index_opclass": "jsonb_path_ops",
                                        "ledgermind_auto_rollback": auto_rollback})
    assert migrate.status == "failed" and migrate.rc != 0, migrate.describe()
    assert migrate.report["verdict"] == "FAILED"
    assert migrate.report["deployed_by"] == AWX_USER
    backup = migrate.report["backup"]["path"]
    assert migrate.artifact_data["ledgermind_backup_path"] == backup
    # Rolled back by the job itself, or left migrated for the workflow's rollback node.
    expected_type = "text[]" if auto_rollback == "true" else "jsonb"
    assert scratch_db.state()["type"] == expected_type

    rollback = awx_jobs.launch(ROLLBACK, handed_on(migrate))
    assert rollback.status == "successful", rollback.describe()
    # After the job's own automatic rollback the workflow's rollback node finds nothing to roll back, and says so.
    assert rollback.report["verdict"] == ("NOTHING TO ROLL BACK" if auto_rollback == "true" else "PASSED")
    assert scratch_db.state() == original
    assert scratch_db.state()["revision"] == REVISION_BEFORE

    marker = awx_jobs.launch(MARKER, handed_on(migrate))
    assert marker.status == "failed", marker.describe()
    assert backup in marker.stdout and "fails on purpose" in marker.stdout
