"""The notification templates: AWX would save them, their secrets come from the vault, and each outcome's payload.

Saving: AWX renders every custom message against its context stub with an undefined that fails on any missing field,
and checks the backend's configuration (awx_model.message_errors, configuration_errors). Sending: AWX renders the
message (Slack, e-mail subjects) and the webhook body in its sandbox with the job's context (a workflow job's has no
artifacts, an approval's only four names); the webhook backend then posts the body if it is a JSON object, else {}.
Each outcome is rendered here with the artifacts the playbooks publish (ledgermind_gate, ledgermind_backup_path(s),
and ledgermind_signoff once the playbooks publish it; without it the messages point at the job's output).
"""
from __future__ import annotations

import json
from typing import Any

import pytest
from awx_model import (
    SECRET_FIELDS,
    approval_context,
    by_name,
    configuration_errors,
    job_context,
    load_awx_data,
    message_errors,
    render_notification,
)

STARTED = "Tokens migration: started"
APPROVAL = "Tokens migration: approval"
SUCCEEDED = "Tokens migration: succeeded"
FAILED = "Tokens migration: failed or rolled back"
WORKFLOW = "Tokens migration with rollback"
APPROVAL_NODE = "Approve the tokens migration"
HOST = "backend-1.prod.example.internal"
BACKUP = "/var/backups/ledgermind/ledgermind_ml_features_20261202T090112Z.dump"
REPORT = "/runner/project/reports/tokens_migrate_backend-1.prod.example.internal_migrate-20261202T091502-3f2a.md"

# What the rehearsal job publishes (playbooks/tasks/hand_off.yml): the figures, by host.
GATE = {HOST: {
    "expected_migration_seconds": 41.73, "expected_lock_seconds": 0.018, "rehearsal_ok": True,
    "rehearsal_summary": "Rehearsal PASSED on ledgermind_lm_rehearsal_3f2a9c1e: migrated (online) in 41.7 s, "
                         "validated, rolled back, migrated again; scratch database dropped",
    "preflight_summary": "pending migration (text[] at 20251109_add_user_name_picture); 1204332 rows",
    "backup_path": BACKUP, "conversion": "online",
    "conversion_rule": "auto: 1204332 rows >= ledgermind_online_min_rows (100000)",
}}
GATE_NO_REHEARSAL = {HOST: {
    "expected_migration_seconds": None, "expected_lock_seconds": None, "rehearsal_ok": False,
    "rehearsal_summary": "Rehearsal skipped (ledgermind_rehearsal=false): the migration and its rollback were not "
                         "tried on a copy of the table before the real run.",
    "preflight_summary": "pending migration (text[] at 20251109_add_user_name_picture); 8500 rows",
    "backup_path": BACKUP, "conversion": "in_place", "conversion_rule": "auto: 8500 rows < 100000",
}}
GATE_FLEET = {
    "tenant-a": {**GATE[HOST], "expected_migration_seconds": 312.0, "expected_lock_seconds": 1.5},
    "tenant-b": {**GATE[HOST], "conversion": "in_place", "conversion_rule": "in_place, as asked",
                 "expected_migration_seconds": 3.6, "expected_lock_seconds": 3.6},
}
# What the sign-off's set_stats would carry (asked of the playbooks; see docs/awx.md): by host.
SIGNOFF_PASSED = {HOST: {"kind": "migrate", "verdict": "PASSED", "report": REPORT, "failed": "", "rolled_back": ""}}
SIGNOFF_ROLLED_BACK = {HOST: {
    "kind": "migrate", "verdict": "ROLLED BACK", "report": REPORT,
    "failed": "validate (Validate the result): index ix_ml_features_tokens_gin uses jsonb_ops, expected jsonb_path_ops",
    "rolled_back": "downgraded to 20251109_add_user_name_picture; type, index and content verified",
}}
SIGNOFF_ROLLBACK = {HOST: {"kind": "rollback", "verdict": "NOTHING TO ROLL BACK",
                           "report": REPORT.replace("migrate", "rollback"), "failed": "", "rolled_back": ""}}
SIGNOFF_REFUSED = {HOST: {
    "kind": "migrate", "verdict": "FAILED", "report": REPORT, "rolled_back": "",
    "failed": "preflight (Refuse what would not survive): 1 row would not survive text[] -> jsonb -> text[]: txn_id 17",
}}
SURVEY = {"ledgermind_conversion": "auto", "ledgermind_online_batch_size": 5000, "ledgermind_rehearsal": "true"}


@pytest.fixture(scope="module")
def notifications(awx_data) -> dict[str, dict[str, Any]]:
    return {n["name"]: n for n in awx_data["controller_notifications"]}


def rendered(notifications, name: str, event: str, context: dict[str, Any], status: str | None = None):
    message, body = render_notification(notifications[name], event, context, status)
    # What every payload must be: one line, the same line as the webhook's "text", nothing left unrendered.
    assert message and "\n" not in message, message
    assert body.get("text") == message, (body.get("text"), message)
    assert body["source"] == "awx" and body["collection"] == "ledgermind.migrations"
    for leftover in ("{{", "{%", "Undefined", "None", "{'", "['"):
        assert leftover not in message, (leftover, message)
    return message, body


# ------------------------------------------------------------------------------------------------- saving


@pytest.mark.parametrize("kind", ["webhook", "slack"])
def test_awx_would_save_every_notification_template(kind):
    data = load_awx_data(ledgermind_notification_type=kind)
    assert len(data["controller_notifications"]) == 4
    for template in data["controller_notifications"]:
        assert template["notification_type"] == kind
        assert configuration_errors(kind, template["notification_configuration"]) == [], template["name"]
        assert message_errors(template["messages"], kind) == [], template["name"]


def test_the_secrets_come_from_the_vault(awx_data_as_written, awx_data):
    """Each field AWX stores encrypted (and the webhook URL, which may hold a token) is a vault variable; the vault
    file holds placeholders only."""
    configurations = awx_data_as_written["ledgermind_notification_configurations"]
    for kind, fields in {**SECRET_FIELDS, "webhook": SECRET_FIELDS["webhook"] | {"url", "username"}}.items():
        for field in fields:
            assert configurations[kind][field] == f"{{{{ vault_ledgermind_notify_{kind}_{field} }}}}", (kind, field)
    for template in awx_data_as_written["controller_notifications"]:
        assert template["notification_type"] == "{{ ledgermind_notification_type }}"
        assert template["notification_configuration"] == (
            "{{ ledgermind_notification_configurations[ledgermind_notification_type] }}")
    vault = {k: v for k, v in awx_data.items() if k.startswith("vault_ledgermind_notify_")}
    assert len(vault) == 4
    for name, value in vault.items():
        assert value == "" or "CHANGE-ME" in value, name
    assert awx_data["ledgermind_notification_type"] == "webhook"


def test_an_unrendered_secret_would_be_caught():
    assert configuration_errors("slack", {"channels": ["#x"]}) == [
        "Missing required fields for Notification Configuration: ['token']."]
    assert configuration_errors("webhook", {"url": "https://x", "headers": "{}"}) == [
        "Configuration field 'headers' incorrect type, expected object."]


def test_awx_refuses_a_message_that_would_not_render():
    assert message_errors({"success": {"message": "{{ job.nope.deeper }}"}}, "webhook") == ["Field 'nope' unavailable"]
    assert message_errors({"success": {"message": "a\nb"}}, "webhook") == [
        "Messages cannot contain newlines (found newline in success event)"]
    assert message_errors({"workflow_approval": {"expired": {}}}, "webhook") == [
        "Workflow Approval event 'expired' invalid"]


# ----------------------------------------------------------------------------------------------- sending


def test_started(notifications):
    context = job_context(4100, WORKFLOW, "running", workflow=True, extra_vars=SURVEY)
    message, body = rendered(notifications, STARTED, "started", context)
    assert message == (
        "[LedgerMind] Tokens migration with rollback #4100 started by jdoe-sre on LedgerMind prod: pre-flight, backup "
        "and rehearsal first; the database changes only after an approval. "
        "https://awx.example.internal/#/jobs/workflow/4100")
    assert body["event"] == "started" and body["job"]["launched_by"] == "jdoe-sre"
    assert json.loads(json.loads(json.dumps(body["awx_metadata"])))["extra_vars"]


def test_started_by_a_schedule_with_a_limit(notifications):
    context = job_context(4100, WORKFLOW, "running", workflow=True, launched_by=None, limit="tenant-a")
    message, _body = rendered(notifications, STARTED, "started", context)
    assert "started by a schedule on LedgerMind prod, limit tenant-a:" in message


def test_approval_needed_with_the_rehearsals_figures(notifications):
    context = job_context(4101, "Tokens migration rehearsal", "successful",
                          artifacts={"ledgermind_gate": GATE, "ledgermind_backup_paths": {HOST: BACKUP},
                                     "ledgermind_backup_path": BACKUP})
    message, body = rendered(notifications, APPROVAL, "success", context)
    assert message == (
        "[LedgerMind] Approval needed for the tokens migration: rehearsal job #4101; backend-1.prod.example.internal: "
        "expected migration 41.7 s, lock 18 ms, online (auto: 1204332 rows >= ledgermind_online_min_rows (100000)), "
        "rehearsal passed, pre-flight: pending migration (text[] at 20251109_add_user_name_picture); 1204332 rows. "
        "https://awx.example.internal/#/jobs/playbook/4101")
    assert body["event"] == "approval_needed"
    assert body["gate"] == GATE and body["backup_paths"] == {HOST: BACKUP}


def test_approval_needed_for_a_fleet_in_minutes(notifications):
    context = job_context(4101, "Tokens migration rehearsal", "successful", artifacts={"ledgermind_gate": GATE_FLEET})
    message, body = rendered(notifications, APPROVAL, "success", context)
    assert "; tenant-a: expected migration 5.2 min, lock 1.5 s, online" in message
    assert "; tenant-b: expected migration 3.6 s, lock 3.6 s, in_place (in_place, as asked)" in message
    assert message.index("tenant-a") < message.index("tenant-b") and set(body["gate"]) == {"tenant-a", "tenant-b"}


def test_approval_needed_without_a_rehearsal(notifications):
    context = job_context(4101, "Tokens migration rehearsal", "successful",
                          artifacts={"ledgermind_gate": GATE_NO_REHEARSAL})
    message, _body = rendered(notifications, APPROVAL, "success", context)
    assert "expected migration unknown, lock unknown, in_place (auto: 8500 rows < 100000)" in message
    assert "rehearsal NOT RUN (Rehearsal skipped (ledgermind_rehearsal=false)" in message


def test_a_rehearsal_launched_alone_asks_for_no_approval(notifications):
    context = job_context(4101, "Tokens migration rehearsal", "successful", launch_type="manual",
                          artifacts={"ledgermind_gate": GATE})
    message, body = rendered(notifications, APPROVAL, "success", context)
    assert message.startswith("[LedgerMind] Tokens migration rehearsed (launched alone: nothing waits for an approval)")
    assert body["event"] == "rehearsed"


def test_a_rehearsal_that_handed_nothing_on_says_where_to_look(notifications):
    context = job_context(4101, "Tokens migration rehearsal", "successful", artifacts={})
    message, body = rendered(notifications, APPROVAL, "success", context)
    assert "no figures were handed on: read the job's output" in message and body["gate"] == {}


@pytest.mark.parametrize(("status", "event", "needle"), [
    ("running", "approval_running", 'Approval needed: "Approve the tokens migration" waits for a decision'),
    ("approved", "approval_approved", "The real migration starts now"),
    ("denied", "approval_denied", "The migration does not run: the database was only read and backed up; the "
                                  "workflow ends red"),
    ("timed_out", "approval_timed_out", "had no decision in time. The migration does not run"),
])
def test_the_approvals_steps(notifications, status, event, needle):
    context = approval_context(status, APPROVAL_NODE, 4100, extra_vars=SURVEY)
    message, body = rendered(notifications, APPROVAL, "workflow_approval", context, status)
    assert needle in message and "https://awx.example.internal/#/jobs/workflow/4100" in message
    assert body["event"] == event
    assert body["approval"] == {"node": APPROVAL_NODE, "status": status,
                                "workflow_url": "https://awx.example.internal/#/jobs/workflow/4100"}


def test_succeeded_with_the_signoff_and_the_reports_location(notifications):
    context = job_context(4102, "Tokens migration", "successful",
                          artifacts={"ledgermind_signoff": SIGNOFF_PASSED, "ledgermind_backup_paths": {HOST: BACKUP}})
    message, body = rendered(notifications, SUCCEEDED, "success", context)
    assert message == (
        "[LedgerMind] Tokens migration SUCCEEDED: job #4102 (Tokens migration); backend-1.prod.example.internal: "
        f"PASSED, report {REPORT}. https://awx.example.internal/#/jobs/playbook/4102")
    assert body["event"] == "succeeded" and body["signoff"] == SIGNOFF_PASSED


def test_succeeded_with_todays_artifacts_points_at_the_jobs_output(notifications):
    """Until the playbooks publish ledgermind_signoff, the backup path is all a job hands on."""
    context = job_context(4102, "Tokens migration", "successful",
                          artifacts={"ledgermind_backup_path": BACKUP, "ledgermind_backup_paths": {HOST: BACKUP}})
    message, body = rendered(notifications, SUCCEEDED, "success", context)
    assert ("; signed off PASSED (the sign-off is in the job's output); backend-1.prod.example.internal: backup "
            f"{BACKUP}.") in message
    assert body["signoff"] == {}


def test_the_workflow_succeeded(notifications):
    context = job_context(4100, WORKFLOW, "successful", workflow=True)
    message, body = rendered(notifications, SUCCEEDED, "success", context)
    assert message.startswith("[LedgerMind] Tokens migration with rollback #4100 SUCCEEDED: approved, migrated")
    assert body["event"] == "workflow_succeeded"


def test_failed_says_what_failed_and_what_was_rolled_back(notifications):
    context = job_context(4102, "Tokens migration", "failed",
                          artifacts={"ledgermind_signoff": SIGNOFF_ROLLED_BACK,
                                     "ledgermind_backup_paths": {HOST: BACKUP}})
    message, body = rendered(notifications, FAILED, "error", context)
    assert message == (
        "[LedgerMind] Tokens migration job #4102 FAILED; backend-1.prod.example.internal: ROLLED BACK, failed: "
        "validate (Validate the result): index ix_ml_features_tokens_gin uses jsonb_ops, expected jsonb_path_ops, "
        "rolled back: downgraded to 20251109_add_user_name_picture; type, index and content verified, report "
        f"{REPORT}. https://awx.example.internal/#/jobs/playbook/4102")
    assert body["event"] == "failed" and body["signoff"] == SIGNOFF_ROLLED_BACK


def test_a_refused_rehearsal_says_nothing_was_changed(notifications):
    context = job_context(4101, "Tokens migration rehearsal", "failed",
                          artifacts={"ledgermind_signoff": SIGNOFF_REFUSED, "ledgermind_gate": {HOST: {
                              **GATE_NO_REHEARSAL[HOST], "rehearsal_summary": "no rehearsal ran"}}})
    message, _body = rendered(notifications, FAILED, "error", context)
    assert ("FAILED; backend-1.prod.example.internal: FAILED, failed: preflight (Refuse what would not survive)"
            in message)
    assert "The real migration did not start: the database was only read and backed up." in message


def test_failed_with_todays_artifacts_points_at_the_jobs_output(notifications):
    context = job_context(4102, "Tokens migration", "failed", artifacts={"ledgermind_backup_path": BACKUP})
    message, _body = rendered(notifications, FAILED, "error", context)
    assert "FAILED; what failed and what was rolled back are in the job's output." in message


def test_the_rollback_nodes_verdict(notifications):
    context = job_context(4103, "Tokens rollback", "successful",
                          artifacts={"ledgermind_signoff": SIGNOFF_ROLLBACK, "ledgermind_backup_paths": {HOST: BACKUP}})
    message, body = rendered(notifications, FAILED, "success", context)
    assert ("Tokens rollback job #4103 finished; backend-1.prod.example.internal: NOTHING TO ROLL BACK, report"
            in message)
    assert body["event"] == "rollback_finished"


def test_the_workflow_failed(notifications):
    explanation = "No error handling path for workflow job node(s) [(812,failed)]. Workflow job node(s) missing ..."
    context = job_context(4100, WORKFLOW, "failed", workflow=True, explanation=explanation)
    message, body = rendered(notifications, FAILED, "error", context)
    assert ("FAILED: the workflow ended red (a refused pre-flight or rehearsal, a denied or timed-out approval"
            in message)
    assert body["event"] == "workflow_failed" and body["job"]["explanation"] == explanation


@pytest.mark.parametrize(("name", "event"), [(STARTED, "started"), (APPROVAL, "success"), (SUCCEEDED, "success"),
                                             (FAILED, "error"), (FAILED, "success")])
def test_a_job_with_almost_nothing_still_sends_a_json_body(notifications, name, event):
    """A value left undefined in the JSON would make AWX fail the send (a TypeError it does not catch)."""
    message, body = render_notification(notifications[name], event, {"job": {"id": 1}})
    assert message and body.get("text") == message


def test_slack_gets_the_same_lines():
    webhook = {n["name"]: n for n in load_awx_data()["controller_notifications"]}
    slack = {n["name"]: n for n in load_awx_data(ledgermind_notification_type="slack")["controller_notifications"]}
    assert {name: n["messages"] for name, n in slack.items()} == {name: n["messages"] for name, n in webhook.items()}
    assert by_name(list(slack.values()), APPROVAL)["notification_configuration"]["channels"] == ["#ledgermind-changes"]
