"""awx_configure.yml calls awx.awx modules with real parameters only, and the data fits them.

Offline: each module's argument spec is taken from the installed awx.awx collection by running its
main() until it builds its AnsibleModule (which is stopped there), so it is the spec the module
really validates against, connection options included, with its mutually_exclusive and required_if
rules. The data of every loop item (a workflow's nodes through subelements) is then validated with
ansible-core's own ArgumentSpecValidator: unknown keys, types, choices, the suboptions of
approval_node, and those rules, as the module would on a controller.
"""
from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from ansible.module_utils import basic
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

REPO = Path(__file__).resolve().parents[3]
PLAYBOOK = REPO / "playbooks" / "awx_configure.yml"
# "{{ item.name ... }}" (a plain loop) or "{{ item.1.identifier ... }}" (subelements: 0 the parent, 1 the element).
ITEM_KEY = re.compile(r"^\{\{\s*item\.(?:([01])\.)?(\w+)\b")
DEFAULT_LITERAL = re.compile(r"\| default\((\[\]|'[^']*')\) \}\}$")
LOOP = re.compile(r"\{\{\s*(\w+)\b.*?(?:subelements\('(\w+)')?")


class _SpecCaptured(Exception):
    pass


_SPECS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}


def _capture(fqcn: str) -> tuple[dict[str, Any], dict[str, Any]]:
    if fqcn not in _SPECS:
        namespace, collection, name = fqcn.split(".")
        module = importlib.import_module(f"ansible_collections.{namespace}.{collection}.plugins.modules.{name}")
        captured: dict[str, Any] = {}

        def fake_init(self, argument_spec=None, **kwargs):
            captured["spec"] = argument_spec or {}
            captured["rules"] = {k: v for k, v in kwargs.items()
                                 if k in ("mutually_exclusive", "required_together", "required_one_of", "required_if",
                                          "required_by")}
            raise _SpecCaptured

        with mock.patch.object(basic.AnsibleModule, "__init__", fake_init), pytest.raises(_SpecCaptured):
            module.main()
        _SPECS[fqcn] = (captured["spec"], captured["rules"])
    return _SPECS[fqcn]


def module_argspec(fqcn: str) -> dict[str, Any]:
    """The argument spec awx.awx's module passes to AnsibleModule (connection options included)."""
    return _capture(fqcn)[0]


def module_rules(fqcn: str) -> dict[str, Any]:
    """Its mutually_exclusive, required_if, ... as passed to AnsibleModule."""
    return _capture(fqcn)[1]


def documented_options(fqcn: str) -> dict[str, Any]:
    """The options the module's DOCUMENTATION declares (without its doc fragments' connection options)."""
    namespace, collection, name = fqcn.split(".")
    module = importlib.import_module(f"ansible_collections.{namespace}.{collection}.plugins.modules.{name}")
    return yaml.safe_load(module.DOCUMENTATION)["options"]


def doc_to_argspec(options: dict[str, Any]) -> dict[str, Any]:
    """A documented option tree as an argument spec (what validate-modules holds the two to)."""
    spec = {}
    for name, doc in options.items():
        entry = {key: doc[key] for key in ("type", "elements", "choices", "aliases", "required") if key in doc}
        if "suboptions" in doc:
            entry["options"] = doc_to_argspec(doc["suboptions"])
        spec[name] = entry
    return spec


def accepted_names(spec: dict[str, Any]) -> set[str]:
    return set(spec) | {alias for option in spec.values() for alias in option.get("aliases", [])}


def awx_tasks(yaml_loader) -> list[tuple[str, str, dict[str, Any], str, str | None]]:
    """(task name, module FQCN, its arguments, the variable it loops over, the subelements key or None)."""
    found = []
    for play in yaml_loader(PLAYBOOK):
        for task in play["tasks"]:
            modules = [k for k in task if k.startswith("awx.awx.")]
            assert len(modules) == 1, task
            loop = LOOP.match(task["loop"])
            sub = re.search(r"subelements\('(\w+)'", task["loop"])
            found.append((task["name"], modules[0], task[modules[0]], loop.group(1), sub.group(1) if sub else None))
    return found


def loop_items(data: dict[str, Any], loop: str, sub: str | None) -> list[tuple[dict[str, Any], ...]]:
    """What `item` is for each iteration: (item,) for a plain loop, (parent, element) for subelements."""
    if sub is None:
        return [(item,) for item in data.get(loop, [])]
    return [(parent, element) for parent in data.get(loop, []) for element in parent.get(sub, [])]


def task_params(args: dict[str, Any], item: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    """The parameters an iteration passes: each "{{ item... }}" resolved; when the data lacks the key, its
    `default(<literal>)` (`default(omit)` and other defaults leave the parameter out)."""
    params = {}
    for param, value in args.items():
        match = ITEM_KEY.match(value) if isinstance(value, str) else None
        if not match:
            continue
        source = item[int(match.group(1) or 0)]
        if match.group(2) in source:
            params[param] = source[match.group(2)]
        elif fallback := DEFAULT_LITERAL.search(value):
            params[param] = ast.literal_eval(fallback.group(1))
    return params


def label(item: tuple[dict[str, Any], ...]) -> str:
    return " / ".join(str(i.get("name") or i.get("identifier") or i.get("role")) for i in item)


def test_the_playbook_uses_only_awx_modules_by_fqcn(yaml_loader):
    tasks = awx_tasks(yaml_loader)
    assert [m for _n, m, _a, _l, _s in tasks] == [
        "awx.awx.organization", "awx.awx.team", "awx.awx.credential_type", "awx.awx.credential",
        "awx.awx.execution_environment", "awx.awx.project", "awx.awx.inventory", "awx.awx.host", "awx.awx.group",
        "awx.awx.notification_template", "awx.awx.job_template", "awx.awx.workflow_job_template",
        "awx.awx.workflow_job_template_node", "awx.awx.workflow_job_template_node", "awx.awx.role",
        "awx.awx.credential", "awx.awx.credential_type",
    ]


def test_every_parameter_is_a_real_one(yaml_loader):
    for name, fqcn, args, _loop, _sub in awx_tasks(yaml_loader):
        unknown = set(args) - accepted_names(module_argspec(fqcn))
        assert not unknown, f"{name}: {fqcn} has no parameter(s) {sorted(unknown)}"


def test_every_parameter_is_documented(yaml_loader):
    for name, fqcn, args, _loop, _sub in awx_tasks(yaml_loader):
        undocumented = set(args) - accepted_names(doc_to_argspec(documented_options(fqcn)))
        assert not undocumented, f"{name}: {fqcn} documents no parameter(s) {sorted(undocumented)}"


def test_connection_defaults_are_real_parameters_of_every_module(yaml_loader):
    play = yaml_loader(PLAYBOOK)[0]
    defaults = play["module_defaults"]["group/awx.awx.controller"]
    for _name, fqcn, _args, _loop, _sub in awx_tasks(yaml_loader):
        unknown = set(defaults) - accepted_names(module_argspec(fqcn))
        assert not unknown, f"{fqcn}: {sorted(unknown)}"


def test_the_controller_password_and_token_are_no_log_in_the_modules():
    spec = module_argspec("awx.awx.credential")
    assert spec["controller_password"].get("no_log") and spec["controller_oauthtoken"].get("no_log")


def test_tasks_carrying_secrets_are_no_log(yaml_loader):
    """Credentials hold the database password and SSH key; notification templates the webhook password or Slack
    token (the modules declare neither notification_configuration nor inputs no_log)."""
    plays = yaml_loader(PLAYBOOK)
    secret_modules = {"awx.awx.credential", "awx.awx.notification_template"}
    found = set()
    for task in plays[0]["tasks"]:
        for module in secret_modules & set(task):
            found.add(module)
            assert task.get("no_log") is True, task["name"]
    assert found == secret_modules
    assert not module_argspec("awx.awx.notification_template")["notification_configuration"].get("no_log")


def test_every_key_of_the_data_reaches_its_module(yaml_loader, awx_data):
    """A key the tasks do not pass on (a typo, an unsupported field) would be silently dropped."""
    passed: dict[tuple[str, str | None], set[str]] = {}
    for _name, _fqcn, args, loop, sub in awx_tasks(yaml_loader):
        for value in args.values():
            match = ITEM_KEY.match(value) if isinstance(value, str) else None
            if match:
                level = int(match.group(1) or 0)
                passed.setdefault((loop, sub if level == 1 else None), set()).add(match.group(2))
        if sub:  # the parent's list of elements is what the subelements loop consumes
            passed.setdefault((loop, None), set()).add(sub)
    for (loop, sub), keys in passed.items():
        items = [i[-1] for i in loop_items(awx_data, loop, sub)]
        assert items or loop in ("controller_hosts",), f"no data for {loop}/{sub}"
        for item in items:
            dropped = set(item) - keys
            assert not dropped, f"{loop}{'/' + sub if sub else ''} ({label((item,))}): {sorted(dropped)} not passed"


def test_the_data_validates_against_each_modules_argument_spec(yaml_loader, awx_data):
    """Types, choices, suboptions and the modules' own rules (e.g. unified_job_template xor approval_node), checked by
    ansible-core's own validator."""
    checked: dict[str, int] = {}
    for name, fqcn, args, loop, sub in awx_tasks(yaml_loader):
        validator = ArgumentSpecValidator(module_argspec(fqcn), **module_rules(fqcn))
        for item in loop_items(awx_data, loop, sub):
            # Connection settings come from module_defaults; the validator only needs them absent or valid.
            result = validator.validate(task_params(args, item))
            assert not result.error_messages, f"{name} ({label(item)}): {result.error_messages}"
            checked[name] = checked.get(name, 0) + 1
    assert checked["Workflow nodes"] == checked["Workflow node links"] == 5
    assert checked["Notification templates"] == 4 and checked["Job templates"] == 4
    assert sum(checked.values()) >= 36


def test_the_approval_node_is_what_the_node_module_documents(awx_data):
    """approval_node's documented suboptions: name (required), description, timeout."""
    options = documented_options("awx.awx.workflow_job_template_node")["approval_node"]["suboptions"]
    validator = ArgumentSpecValidator(doc_to_argspec(options))
    [workflow] = awx_data["controller_workflows"]
    approvals = [n["approval_node"] for n in workflow["simplified_workflow_nodes"] if "approval_node" in n]
    assert len(approvals) == 1
    result = validator.validate(approvals[0])
    assert not result.error_messages, result.error_messages
    assert set(approvals[0]) == {"name", "description", "timeout"}


def test_the_node_tasks_create_before_they_link(yaml_loader):
    """A link names a node by identifier, which must exist when the link is made: every node is created first."""
    tasks = [(n, a) for n, m, a, _l, _s in awx_tasks(yaml_loader) if m == "awx.awx.workflow_job_template_node"]
    (create, create_args), (link, link_args) = tasks
    assert not {"success_nodes", "failure_nodes", "always_nodes"} & set(create_args), create
    assert {"success_nodes", "failure_nodes", "always_nodes"} <= set(link_args), link
    # Every link task passes all three lists (default []): the controller then holds exactly the data's links.
    for edge in ("success_nodes", "failure_nodes", "always_nodes"):
        assert link_args[edge] == f"{{{{ item.1.{edge} | default([]) }}}}"


def test_no_task_destroys_workflow_nodes(yaml_loader):
    """Deleting an approval node's template denies its pending approval (AWX's deny_orphaned_approvals signal):
    re-applying the configuration must not touch a workflow waiting for its approval."""
    for name, _fqcn, args, _loop, _sub in awx_tasks(yaml_loader):
        assert "destroy_current_nodes" not in args and "workflow_nodes" not in args, name


def test_workflow_nodes_name_templates_that_the_data_creates(awx_data):
    templates = {t["name"] for t in awx_data["controller_templates"]}
    for workflow in awx_data["controller_workflows"]:
        identifiers = [node["identifier"] for node in workflow["simplified_workflow_nodes"]]
        assert len(identifiers) == len(set(identifiers))
        for node in workflow["simplified_workflow_nodes"]:
            assert ("unified_job_template" in node) != ("approval_node" in node), node["identifier"]
            if "unified_job_template" in node:
                assert node["unified_job_template"] in templates
                assert node["lookup_organization"] == workflow["organization"]
            for kind in ("success_nodes", "failure_nodes", "always_nodes"):
                assert set(node.get(kind, [])) <= set(identifiers)


def test_job_templates_run_playbooks_that_exist_with_credentials_the_data_creates(awx_data):
    credentials = {c["name"] for c in awx_data["controller_credentials"]}
    for template in awx_data["controller_templates"]:
        assert (REPO / template["playbook"]).is_file(), template["playbook"]
        assert set(template.get("credentials", [])) <= credentials
        assert template["allow_simultaneous"] is False


def test_notification_attachments_name_templates_that_the_data_creates(awx_data):
    notifications = {n["name"] for n in awx_data["controller_notifications"]}
    attached = set()
    for template in awx_data["controller_templates"] + awx_data["controller_workflows"]:
        for key in ("started", "success", "error", "approvals"):
            names = template.get(f"notification_templates_{key}", [])
            assert set(names) <= notifications, (template["name"], key)
            attached |= set(names)
    assert attached == notifications


def test_roles_name_teams_workflows_and_templates_that_the_data_creates(awx_data):
    teams = {t["name"] for t in awx_data["controller_teams"]}
    workflows = {w["name"] for w in awx_data["controller_workflows"]}
    templates = {t["name"] for t in awx_data["controller_templates"]}
    for role in awx_data["controller_roles"]:
        assert set(role["teams"]) <= teams
        assert set(role.get("workflows", [])) <= workflows
        assert set(role.get("job_templates", [])) <= templates
        assert role["lookup_organization"] == "LedgerMind"
