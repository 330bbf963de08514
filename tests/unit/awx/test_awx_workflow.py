"""The workflow's shape: rehearse -> approve -> migrate -> (failure) rollback -> (always) fail on purpose.

What AWX does with a graph (awx.main.scheduler.dag_workflow, AWX 24.6.1): a node runs when an edge into it fires
(success_nodes after a success, failure_nodes after a failure, always_nodes after either); a denied or timed-out
approval is a failed node; a failed node with no failure or always edge ends the workflow failed ("No error handling
path"). So "denied or timed out ends red without touching the database" is a property of the graph, checked here on
every path; tests/integration/awx/test_awx_workflow_runs.py runs the paths through ansible-runner.
"""
from __future__ import annotations

from typing import Any

import pytest
from awx_model import REPO, by_name, children, paths, roots, workflow_nodes

WORKFLOW = "Tokens migration with rollback"
REHEARSAL = "Tokens migration rehearsal"
MIGRATE = "Tokens migration"
ROLLBACK = "Tokens rollback"
MARKER = "Tokens migration rolled back (fail on purpose)"
STOP = "ledgermind_stop_before_migration"
ARTIFACTS = ("ledgermind_gate", "ledgermind_backup_path", "ledgermind_backup_paths")


@pytest.fixture(scope="module")
def workflow(awx_data) -> dict[str, Any]:
    return by_name(awx_data["controller_workflows"], WORKFLOW)


@pytest.fixture(scope="module")
def templates(awx_data) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in awx_data["controller_templates"]}


def changes_the_database(template: dict[str, Any]) -> bool:
    """A job template whose playbook can change the database: migrate (unless told to stop before it) or rollback."""
    if template["playbook"] == "playbooks/rollback_tokens.yml":
        return True
    stops = template.get("extra_vars", {}).get(STOP) is True
    return template["playbook"] == "playbooks/migrate_tokens.yml" and not stops


def test_the_graph(workflow):
    nodes = workflow_nodes(workflow)
    edges = {(n, e, c) for n, node in nodes.items() for e in ("success_nodes", "failure_nodes", "always_nodes")
             for c in children(node, e)}
    assert roots(workflow) == {"rehearse"}
    assert edges == {
        ("rehearse", "success_nodes", "approve"),
        ("approve", "success_nodes", "migrate"),
        ("migrate", "failure_nodes", "rollback"),
        ("rollback", "always_nodes", "rolled_back_fails"),
    }
    assert nodes["rehearse"]["unified_job_template"] == REHEARSAL
    assert "approval_node" in nodes["approve"]
    assert nodes["migrate"]["unified_job_template"] == MIGRATE
    assert nodes["rollback"]["unified_job_template"] == ROLLBACK
    assert nodes["rolled_back_fails"]["unified_job_template"] == MARKER


def test_no_path_reaches_a_database_job_without_an_approval(workflow, templates):
    """On every path from the root, a job that can change the database comes after the approval's success edge."""
    nodes = workflow_nodes(workflow)
    checked = 0
    for path in paths(workflow):
        approved = False
        for identifier, edge in path:
            node = nodes[identifier]
            if "unified_job_template" in node and changes_the_database(templates[node["unified_job_template"]]):
                assert approved, f"{identifier} can run without an approval: {path}"
                checked += 1
            if "approval_node" in node:
                assert edge in ("success_nodes", ""), f"the approval's {edge} edge leads on: {path}"
                approved = approved or edge == "success_nodes"
    assert checked >= 2


def test_a_denied_or_timed_out_approval_ends_the_workflow_red_and_runs_nothing(workflow):
    """Denied or timed out, the approval node fails; with no failure or always edge nothing runs after it, and AWX
    fails the workflow for the unhandled failure: red, and no job touched the database."""
    approve = workflow_nodes(workflow)["approve"]
    assert children(approve, "failure_nodes") == [] and children(approve, "always_nodes") == []
    assert children(approve, "success_nodes") == ["migrate"]


def test_a_failed_rehearsal_ends_red_before_the_approval_opens(workflow):
    rehearse = workflow_nodes(workflow)["rehearse"]
    assert children(rehearse, "failure_nodes") == [] and children(rehearse, "always_nodes") == []
    assert children(rehearse, "success_nodes") == ["approve"]


def test_a_failed_migration_rolls_back_and_then_fails_on_purpose(workflow, templates, yaml_loader):
    nodes = workflow_nodes(workflow)
    assert children(nodes["migrate"], "success_nodes") == [] and children(nodes["migrate"], "always_nodes") == []
    [rollback] = children(nodes["migrate"], "failure_nodes")
    assert templates[nodes[rollback]["unified_job_template"]]["playbook"] == "playbooks/rollback_tokens.yml"
    [marker] = children(nodes[rollback], "always_nodes")
    assert templates[nodes[marker]["unified_job_template"]]["playbook"] == "playbooks/awx_mark_failed.yml"
    # The marker fails unconditionally.
    tasks = yaml_loader(REPO / "playbooks" / "awx_mark_failed.yml")[0]["tasks"]
    assert [list(t)[1] for t in tasks] == ["ansible.builtin.fail"] and all("when" not in t for t in tasks)


def test_the_rehearsal_node_stops_before_the_migration_and_nothing_at_launch_undoes_it(awx_data, workflow, templates):
    """The first node runs migrate_tokens.yml told to stop before the migration; no launch prompt, survey answer or
    workflow variable can change that, and none can make the migrate node stop instead (a workflow's variables
    override every node's)."""
    rehearsal = templates[REHEARSAL]
    assert rehearsal["playbook"] == "playbooks/migrate_tokens.yml"
    assert rehearsal["extra_vars"] == {STOP: True}
    assert not rehearsal.get("ask_variables_on_launch") and not workflow.get("ask_variables_on_launch")
    assert STOP not in workflow.get("extra_vars", {})
    for name, template in templates.items():
        if name != REHEARSAL:
            assert STOP not in template.get("extra_vars", {}), name
    for template in [*templates.values(), workflow]:
        asked = {q["variable"] for q in template.get("survey_spec", {}).get("spec", [])}
        assert STOP not in asked, template["name"]


def test_the_artifacts_handed_on_are_never_survey_answers(awx_data):
    """A workflow's survey answers override the artifacts a node hands on (set_stats): a question named like one
    would replace the gate's figures or the backup the rollback restores."""
    for template in awx_data["controller_templates"] + awx_data["controller_workflows"]:
        asked = {q["variable"] for q in template.get("survey_spec", {}).get("spec", [])}
        assert not asked & set(ARTIFACTS), template["name"]
        assert not set(template.get("extra_vars", {})) & set(ARTIFACTS), template["name"]


def test_the_approval_is_bounded_and_tells_the_approver_where_the_figures_are(workflow):
    approval = workflow_nodes(workflow)["approve"]["approval_node"]
    # A timeout: an approval nobody answers must not wait for ever (0 would), and a day at most: the rehearsal
    # measured the table as it was.
    assert 3600 <= approval["timeout"] <= 86400
    assert f"{approval['timeout'] // 3600} hours" in approval["description"]
    description = approval["description"]
    # AWX copies the description as it is (no templating): it says where the figures are instead of holding them.
    assert "{{" not in description and "{%" not in description
    for needle in ("rehearsal", "READY FOR APPROVAL", "expected migration time", "expected lock time",
                   "pre-flight", "Tokens migration: approval", "nothing touches the database", "ends red"):
        assert needle in description, needle


def test_who_may_launch_and_who_may_approve(awx_data, templates):
    roles = awx_data["controller_roles"]

    def holders(role: str, workflow: str | None = None, template: str | None = None) -> set[str]:
        return {team for r in roles if r["role"] == role
                and (workflow is None or workflow in r.get("workflows", []))
                and (template is None or template in r.get("job_templates", [])) for team in r["teams"]}

    approvers, launchers = holders("approval", workflow=WORKFLOW), holders("execute", workflow=WORKFLOW)
    assert approvers and launchers and not approvers & launchers
    # Launchers cannot run the migration or the rollback alone, past the approval.
    for name, template in templates.items():
        if changes_the_database(template):
            assert not holders("execute", template=name), name
    # Reading a job's output needs read on its job template: the approvers read the rehearsal's figures.
    for name in (REHEARSAL, MIGRATE, ROLLBACK):
        assert approvers | launchers <= holders("read", template=name), name


ATTACHMENTS = {
    # (template or workflow, event) -> notification template
    (WORKFLOW, "started"): "Tokens migration: started",
    (WORKFLOW, "approvals"): "Tokens migration: approval",
    (WORKFLOW, "success"): "Tokens migration: succeeded",
    (WORKFLOW, "error"): "Tokens migration: failed or rolled back",
    (REHEARSAL, "success"): "Tokens migration: approval",
    (REHEARSAL, "error"): "Tokens migration: failed or rolled back",
    (MIGRATE, "success"): "Tokens migration: succeeded",
    (MIGRATE, "error"): "Tokens migration: failed or rolled back",
    (ROLLBACK, "success"): "Tokens migration: failed or rolled back",
    (ROLLBACK, "error"): "Tokens migration: failed or rolled back",
}


def test_notifications_are_attached_where_each_moment_happens(awx_data):
    found = {}
    for template in awx_data["controller_templates"] + awx_data["controller_workflows"]:
        for event in ("started", "success", "error", "approvals"):
            for name in template.get(f"notification_templates_{event}", []):
                found[(template["name"], event)] = name
    assert found == ATTACHMENTS


def test_every_attachment_has_its_own_message_and_body(awx_data):
    """An event without a custom message would send AWX's default one, without the figures."""
    notifications = {n["name"]: n for n in awx_data["controller_notifications"]}
    for (_owner, event), name in ATTACHMENTS.items():
        messages = notifications[name]["messages"]
        if event == "approvals":
            for sub in ("running", "approved", "denied", "timed_out"):
                assert set(messages["workflow_approval"][sub]) == {"message", "body"}, (name, sub)
        else:
            assert set(messages[event]) == {"message", "body"}, (name, event)
