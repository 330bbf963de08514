"""The approval gate, run: the workflow's paths through ansible-runner against a scratch database (see conftest.py).

rehearse -> approve -> migrate -> (failure) rollback -> (always) fail on purpose. Approved, the database is migrated
and the migrate job received the rehearsal's figures; denied or timed out, only the rehearsal ran and the database is
exactly as before; a failing migration is rolled back and the workflow still ends red; a refused pre-flight never
opens the approval. Every notification AWX would send on each path is rendered and checked.

The job templates' own hand-offs are checked on these same runs (test_awx_jobs.py launched its migrate, rollback and
fail-on-purpose jobs one by one, repeating them): a migration job signs off as the AWX user and hands its backup on
with set_stats; the rollback job, given those artifacts as extra vars (as AWX passes them), rolls back against that
exact archive; a failing migration is a failed job, after which the rollback succeeds and the workflow's last node
fails on purpose, naming the backup. A job launched on its own (by a schedule) is in test_awx_jobs.py.
"""
from __future__ import annotations

from pathlib import Path

import pytest

AWX_USER = "jdoe-sre"  # conftest.AWX_USER
REVISION_BEFORE = "20251109_add_user_name_picture"
REVISION_AFTER = "502d44cd70ab"
STARTED = "Tokens migration: started"
APPROVAL = "Tokens migration: approval"
SUCCEEDED = "Tokens migration: succeeded"
FAILED = "Tokens migration: failed or rolled back"
HOST = "ledgermind-db-test"
ROLLBACK = "Tokens rollback"


def events(result) -> list[tuple[str, str, str]]:
    return [(n.template, n.event, n.source) for n in result.notifications]


def handed_on(job) -> dict:
    """What AWX passes to the next workflow node: the job's set_stats artifacts."""
    return {key: job.artifact_data[key] for key in ("ledgermind_backup_path", "ledgermind_backup_paths")
            if key in job.artifact_data}


def assert_one_line_payloads(result) -> None:
    for sent in result.notifications:
        assert sent.message and "\n" not in sent.message, sent
        assert sent.body.get("text") == sent.message, sent
        assert "None" not in sent.message and "{{" not in sent.message, sent.message


def test_approved_the_workflow_migrates_with_the_rehearsals_figures_handed_on_and_the_rollback_job_restores_its_backup(
        awx_workflow, awx_jobs, scratch_db):
    """The approved path, then the rollback job launched with the migrate job's artifacts: the migrate job signs off as
    the AWX user and hands its backup on with set_stats, and the rollback restores that exact archive (this was also
    test_awx_jobs.py's test_migrate_then_rollback_jobs_hand_the_backup_on, whose own migrate job repeated this one)."""
    original = scratch_db.state()

    result = awx_workflow.run({"ledgermind_notes": "CHG-1313", "ledgermind_rehearsal": "true"}, approval="approved")

    assert result.status == "successful", result.describe()
    assert result.ran == ["rehearse", "approve", "migrate"]
    state = scratch_db.state()
    assert state["type"] == "jsonb" and state["revision"] == REVISION_AFTER
    assert state["fingerprint"] == original["fingerprint"]

    rehearse, migrate = result.jobs["rehearse"], result.jobs["migrate"]
    assert rehearse.report["verdict"] == "READY FOR APPROVAL", rehearse.report
    assert rehearse.report["deployed_by"] == AWX_USER and rehearse.report["notes"] == "CHG-1313"
    gate = rehearse.artifact_data["ledgermind_gate"][HOST]
    assert set(gate) >= {"expected_migration_seconds", "expected_lock_seconds", "rehearsal_ok", "rehearsal_summary",
                         "preflight_summary", "backup_path", "conversion", "conversion_rule"}
    assert gate["backup_path"] == rehearse.report["backup"]["path"] and Path(gate["backup_path"]).is_file()
    assert gate["conversion"] == "in_place" and "1000 rows" in gate["preflight_summary"]
    # The rehearsal ran on a scratch copy and handed its figures on.
    assert gate["rehearsal_ok"] is True and gate["expected_migration_seconds"] > 0, gate
    # What AWX hands the migrate node: the rehearsal's artifacts (through the approval), under the workflow's answers.
    assert migrate.extra_vars["ledgermind_gate"] == rehearse.artifact_data["ledgermind_gate"]
    assert migrate.extra_vars["ledgermind_notes"] == "CHG-1313"
    assert "ledgermind_stop_before_migration" not in migrate.extra_vars
    assert migrate.report["verdict"] == "PASSED" and migrate.report["deployed_by"] == AWX_USER
    # The migration took its own backup, and hands it on.
    assert migrate.artifact_data["ledgermind_backup_path"] == migrate.report["backup"]["path"] != gate["backup_path"]

    assert events(result) == [
        (STARTED, "started", "Tokens migration with rollback"),
        (APPROVAL, "success", "Tokens migration rehearsal"),
        (APPROVAL, "workflow_approval.running", "Approve the tokens migration"),
        (APPROVAL, "workflow_approval.approved", "Approve the tokens migration"),
        (SUCCEEDED, "success", "Tokens migration"),
        (SUCCEEDED, "success", "Tokens migration with rollback"),
    ]
    assert_one_line_payloads(result)
    needed = result.sent(APPROVAL)[0]
    assert needed.message.startswith("[LedgerMind] Approval needed for the tokens migration: rehearsal job #")
    assert f"; {HOST}: expected migration " in needed.message and ", in_place (" in needed.message
    assert needed.body["event"] == "approval_needed"
    assert needed.body["gate"] == rehearse.artifact_data["ledgermind_gate"]
    succeeded = result.sent(SUCCEEDED)[0]
    assert succeeded.message.startswith("[LedgerMind] Tokens migration SUCCEEDED: job #")
    # Until the playbook publishes its sign-off (ledgermind_signoff), the message names the backup and the output.
    assert ("; signed off PASSED (the sign-off is in the job's output)" in succeeded.message
            and migrate.report["backup"]["path"] in succeeded.message) or ", report " in succeeded.message

    # The migrate job's sign-off and what it hands on (test_awx_jobs.py's former migrate job).
    assert migrate.status == "successful" and migrate.rc == 0, migrate.describe()
    report = migrate.report
    assert report is not None and report["verdict"] == "PASSED", report
    assert report["deployed_by"] == AWX_USER
    # The AWX job id: the workflow job took 4100, the rehearsal 4101 (alone, the migrate job was 4100).
    assert str(report["awx_job_id"]) == str(migrate.job_id) == "4102"
    assert report["notes"] == "CHG-1313"

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


@pytest.mark.parametrize("decision", ["denied", "timed_out"])
def test_denied_or_timed_out_the_workflow_ends_red_and_the_database_is_untouched(awx_workflow, scratch_db, decision):
    original = scratch_db.state()

    result = awx_workflow.run(approval=decision)

    assert result.status == "failed" and "(approve,failed)" in result.explanation, result.describe()
    assert result.ran == ["rehearse", "approve"] and list(result.jobs) == ["rehearse"]
    assert scratch_db.state() == original
    assert original["type"] == "text[]" and original["revision"] == REVISION_BEFORE
    # The rehearsal read the table and backed it up; the approval's refusal started nothing.
    assert result.jobs["rehearse"].report["verdict"] == "READY FOR APPROVAL"
    assert events(result) == [
        (STARTED, "started", "Tokens migration with rollback"),
        (APPROVAL, "success", "Tokens migration rehearsal"),
        (APPROVAL, "workflow_approval.running", "Approve the tokens migration"),
        (APPROVAL, f"workflow_approval.{decision}", "Approve the tokens migration"),
        (FAILED, "error", "Tokens migration with rollback"),
    ]
    assert_one_line_payloads(result)
    assert "the database was only read and backed up; the workflow ends red" in result.notifications[3].message
    assert result.notifications[-1].body["event"] == "workflow_failed"


def test_a_failing_migration_fails_its_job_is_rolled_back_against_its_own_backup_and_the_workflow_ends_red(
        awx_workflow, scratch_db):
    """The migrate node fails after its change (validation demands an opclass the migration does not create); the
    rollback node restores from the archive the migrate job published, not the rehearsal's (AWX merges the parents'
    artifacts, the nearest last).

    With the automatic rollback off, this is also test_awx_jobs.py's former failing migration ([false]: the migrate,
    rollback and fail-on-purpose jobs launched one by one, which repeated these three nodes): the job fails, leaves the
    table migrated for the rollback node, and the last node fails on purpose naming the backup. That test's rollback
    job took the survey's default (downgrade, no restore); that the downgrade alone keeps every row is the playbook
    tests' to prove (tests/integration/playbooks/test_migrate_tokens_playbooks.py)."""
    original = scratch_db.state()
    after: dict[str, dict] = {}  # by node, the database as that node's job left it

    result = awx_workflow.run(
        {"ledgermind_auto_rollback": "false", "migration_rollback_restore_from_backup": "true"},
        faults={"migrate": {"migration_validate_index_opclass": "jsonb_path_ops"}},
        after_job=lambda node, job: after.setdefault(node, scratch_db.state()))

    assert result.status == "failed", result.describe()
    assert result.ran == ["rehearse", "approve", "migrate", "rollback", "rolled_back_fails"]
    rehearse, migrate, rollback = (result.jobs[i] for i in ("rehearse", "migrate", "rollback"))
    assert migrate.status == "failed" and migrate.report["verdict"] == "FAILED"
    assert rollback.status == "successful" and rollback.report["verdict"] == "PASSED", rollback.describe()
    own, rehearsed = migrate.report["backup"]["path"], rehearse.report["backup"]["path"]
    assert own != rehearsed
    assert rollback.extra_vars["ledgermind_backup_paths"] == {HOST: own}
    assert rollback.report["rollback"]["restored_from"] == own
    assert result.jobs["rolled_back_fails"].status == "failed"
    assert scratch_db.state() == original

    assert events(result) == [
        (STARTED, "started", "Tokens migration with rollback"),
        (APPROVAL, "success", "Tokens migration rehearsal"),
        (APPROVAL, "workflow_approval.running", "Approve the tokens migration"),
        (APPROVAL, "workflow_approval.approved", "Approve the tokens migration"),
        (FAILED, "error", "Tokens migration"),
        (FAILED, "success", "Tokens rollback"),
        (FAILED, "error", "Tokens migration with rollback"),
    ]
    assert_one_line_payloads(result)
    assert result.notifications[4].message.startswith("[LedgerMind] Tokens migration job #")
    assert " FAILED" in result.notifications[4].message
    assert result.notifications[5].body["event"] == "rollback_finished"

    # The jobs themselves (test_awx_jobs.py's former failing migration, automatic rollback off).
    assert migrate.status == "failed" and migrate.rc != 0, migrate.describe()
    assert migrate.report["deployed_by"] == AWX_USER
    assert migrate.artifact_data["ledgermind_backup_path"] == own
    # Left migrated for the workflow's rollback node.
    assert after["migrate"]["type"] == "jsonb"
    assert scratch_db.state()["revision"] == REVISION_BEFORE
    marker = result.jobs["rolled_back_fails"]
    assert marker.status == "failed", marker.describe()
    assert own in marker.stdout and "fails on purpose" in marker.stdout


# The rehearsal job hands its archive over in ledgermind_gate only, never as the migrate job's restore source.
def test_the_migrate_jobs_own_automatic_restore_uses_its_own_backup_and_the_rollback_node_finds_nothing_to_roll_back(
        awx_workflow, scratch_db):
    """With the automatic rollback on, this is also test_awx_jobs.py's former failing migration ([true]: the migrate,
    rollback and fail-on-purpose jobs launched one by one, which repeated these three nodes): the job fails and rolls
    back by itself, the rollback node says there is nothing to roll back, and the last node fails on purpose naming the
    backup. Those jobs took the survey's default (downgrade, no restore); that the downgrade alone keeps every row is
    the playbook tests' to prove (tests/integration/playbooks/test_migrate_tokens_playbooks.py)."""
    original = scratch_db.state()
    after: dict[str, dict] = {}  # by node, the database as that node's job left it

    result = awx_workflow.run(
        {"ledgermind_auto_rollback": "true", "migration_rollback_restore_from_backup": "true"},
        faults={"migrate": {"migration_validate_index_opclass": "jsonb_path_ops"}},
        after_job=lambda node, job: after.setdefault(node, scratch_db.state()))
    migrate = result.jobs["migrate"]
    assert migrate.report["rollback"]["restored_from"] == migrate.report["backup"]["path"], migrate.report["rollback"]

    # The jobs themselves (test_awx_jobs.py's former failing migration, automatic rollback on).
    assert migrate.status == "failed" and migrate.rc != 0, migrate.describe()
    assert migrate.report["verdict"] == "FAILED"
    assert migrate.report["deployed_by"] == AWX_USER
    backup = migrate.report["backup"]["path"]
    assert migrate.artifact_data["ledgermind_backup_path"] == backup
    # Rolled back by the job itself.
    assert after["migrate"]["type"] == "text[]"

    rollback = result.jobs["rollback"]
    assert rollback.status == "successful", rollback.describe()
    # After the job's own automatic rollback the workflow's rollback node finds nothing to roll back, and says so.
    assert rollback.report["verdict"] == "NOTHING TO ROLL BACK"
    assert scratch_db.state() == original
    assert scratch_db.state()["revision"] == REVISION_BEFORE

    marker = result.jobs["rolled_back_fails"]
    assert marker.status == "failed", marker.describe()
    assert backup in marker.stdout and "fails on purpose" in marker.stdout


def test_a_refused_preflight_never_opens_the_approval(awx_workflow, scratch_db):
    # A 2-D array would not survive text[] -> jsonb -> text[]: the pre-flight refuses before the backup.
    scratch_db.query("UPDATE ml_features SET tokens = '{{a,b},{c,d}}'"
                     " WHERE txn_id = (SELECT min(txn_id) FROM ml_features)")
    original = scratch_db.state()

    result = awx_workflow.run()

    assert result.status == "failed" and result.ran == ["rehearse"], result.describe()
    assert result.jobs["rehearse"].report["verdict"] == "FAILED"
    assert scratch_db.state() == original
    assert events(result) == [
        (STARTED, "started", "Tokens migration with rollback"),
        (FAILED, "error", "Tokens migration rehearsal"),
        (FAILED, "error", "Tokens migration with rollback"),
    ]
    assert_one_line_payloads(result)


def test_a_wrong_answer_is_refused_before_any_job_starts(awx_workflow, awx_jobs):
    for answers in ({"ledgermind_online_batch_size": 50}, {"ledgermind_conversion": "fast"},
                    {"ledgermind_latency_max_ratio": 0.5}, {"ledgermind_online_batch_pause": 30}):
        with pytest.raises(awx_workflow.SurveyRefused):
            awx_workflow.run(answers)
    assert not list(awx_jobs.tmp.glob("job_*"))
