"""awx_configure.yml calls awx.awx modules with real parameters only, and the data fits them.

Offline: each module's argument spec is taken from the installed awx.awx collection by running its
main() until it builds its AnsibleModule (which is stopped there), so it is the spec the module
really validates against, connection options included. The data of every loop item is then
validated with ansible-core's own ArgumentSpecValidator: unknown keys, types, choices and the
suboptions of workflow_nodes, as the module would on a controller.
"""
from __future__ import annotations

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
ITEM_KEY = re.compile(r"^\{\{\s*item\.(\w+)\b")


class _SpecCaptured(Exception):
    pass


_SPECS: dict[str, dict[str, Any]] = {}


def module_argspec(fqcn: str) -> dict[str, Any]:
    """The argument spec awx.awx's module passes to AnsibleModule (connection options included)."""
    if fqcn not in _SPECS:
        namespace, collection, name = fqcn.split(".")
        module = importlib.import_module(f"ansible_collections.{namespace}.{collection}.plugins.modules.{name}")
        captured: dict[str, Any] = {}

        def fake_init(self, argument_spec=None, **kwargs):
            captured.update(argument_spec or {})
            raise _SpecCaptured

        with mock.patch.object(basic.AnsibleModule, "__init__", fake_init), pytest.raises(_SpecCaptured):
            module.main()
        _SPECS[fqcn] = captured
    return _SPECS[fqcn]


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


def awx_tasks(yaml_loader) -> list[tuple[str, str, dict[str, Any], str]]:
    """(task name, module FQCN, its arguments, the variable it loops over) for every awx.awx task."""
    found = []
    for play in yaml_loader(PLAYBOOK):
        for task in play["tasks"]:
            modules = [k for k in task if k.startswith("awx.awx.")]
            assert len(modules) == 1, task
            loop = re.match(r"\{\{\s*(\w+)", task["loop"]).group(1)
            found.append((task["name"], modules[0], task[modules[0]], loop))
    return found


def test_the_playbook_uses_only_awx_modules_by_fqcn(yaml_loader):
    tasks = awx_tasks(yaml_loader)
    assert [m for _n, m, _a, _l in tasks] == [
        "awx.awx.organization", "awx.awx.credential_type", "awx.awx.credential", "awx.awx.execution_environment",
        "awx.awx.project", "awx.awx.inventory", "awx.awx.host", "awx.awx.group", "awx.awx.job_template",
        "awx.awx.workflow_job_template",
    ]


def test_every_parameter_is_a_real_one(yaml_loader):
    for name, fqcn, args, _loop in awx_tasks(yaml_loader):
        unknown = set(args) - accepted_names(module_argspec(fqcn))
        assert not unknown, f"{name}: {fqcn} has no parameter(s) {sorted(unknown)}"


def test_every_parameter_is_documented(yaml_loader):
    for name, fqcn, args, _loop in awx_tasks(yaml_loader):
        undocumented = set(args) - accepted_names(doc_to_argspec(documented_options(fqcn)))
        assert not undocumented, f"{name}: {fqcn} documents no parameter(s) {sorted(undocumented)}"


def test_workflow_nodes_fit_the_documented_suboptions(awx_data):
    """The module takes workflow_nodes as a plain list of dicts; its DOCUMENTATION says what a node holds."""
    options = documented_options("awx.awx.workflow_job_template")["workflow_nodes"]["suboptions"]
    validator = ArgumentSpecValidator(doc_to_argspec(options))
    for workflow in awx_data["controller_workflows"]:
        for node in workflow["workflow_nodes"]:
            result = validator.validate(node)
            assert not result.error_messages, f"{workflow['name']} / {node['identifier']}: {result.error_messages}"


def test_connection_defaults_are_real_parameters_of_every_module(yaml_loader):
    play = yaml_loader(PLAYBOOK)[0]
    defaults = play["module_defaults"]["group/awx.awx.controller"]
    for _name, fqcn, _args, _loop in awx_tasks(yaml_loader):
        unknown = set(defaults) - accepted_names(module_argspec(fqcn))
        assert not unknown, f"{fqcn}: {sorted(unknown)}"


def test_the_controller_password_and_token_are_no_log_in_the_modules():
    spec = module_argspec("awx.awx.credential")
    assert spec["controller_password"].get("no_log") and spec["controller_oauthtoken"].get("no_log")


def test_tasks_carrying_secrets_are_no_log(yaml_loader):
    plays = yaml_loader(PLAYBOOK)
    for task in plays[0]["tasks"]:
        if "awx.awx.credential" in task:
            assert task.get("no_log") is True


def test_every_key_of_the_data_reaches_its_module(yaml_loader, awx_data):
    """A key the task does not pass on (a typo, an unsupported field) would be silently dropped."""
    for name, _fqcn, args, loop in awx_tasks(yaml_loader):
        passed = {m.group(1) for value in args.values() if isinstance(value, str) and (m := ITEM_KEY.match(value))}
        for item in awx_data.get(loop, []):
            dropped = set(item) - passed
            assert not dropped, f"{name} ({item['name']}): keys {sorted(dropped)} are not passed to the module"


def test_the_data_validates_against_each_modules_argument_spec(yaml_loader, awx_data):
    """Types, choices and suboptions (workflow_nodes) checked by ansible-core's own validator."""
    checked = 0
    for name, fqcn, args, loop in awx_tasks(yaml_loader):
        spec = module_argspec(fqcn)
        validator = ArgumentSpecValidator(spec)
        for item in awx_data.get(loop, []):
            params = {}
            for param, value in args.items():
                match = ITEM_KEY.match(value) if isinstance(value, str) else None
                if match and match.group(1) in item:
                    params[param] = item[match.group(1)]
            # Connection settings come from module_defaults; the validator only needs them absent or valid.
            result = validator.validate(params)
            assert not result.error_messages, f"{name} ({item['name']}): {result.error_messages}"
            checked += 1
    assert checked >= 15


def test_workflow_nodes_name_templates_that_the_data_creates(awx_data):
    templates = {t["name"] for t in awx_data["controller_templates"]}
    for workflow in awx_data["controller_workflows"]:
        identifiers = {node["identifier"] for node in workflow["workflow_nodes"]}
        for node in workflow["workflow_nodes"]:
            assert node["unified_job_template"]["type"] == "job_template"
            assert node["unified_job_template"]["name"] in templates
            for kind in ("success_nodes", "failure_nodes", "always_nodes"):
                for child in node.get("related", {}).get(kind, []):
                    assert child["identifier"] in identifiers


def test_the_workflow_rolls_back_on_failure_and_then_fails_on_purpose(awx_data, yaml_loader):
    workflow = next(w for w in awx_data["controller_workflows"] if w["name"] == "Tokens migration with rollback")
    nodes = {n["identifier"]: n for n in workflow["workflow_nodes"]}
    templates = {t["name"]: t for t in awx_data["controller_templates"]}

    def playbook(identifier: str) -> str:
        return templates[nodes[identifier]["unified_job_template"]["name"]]["playbook"]

    def children(identifier: str, kind: str) -> list[str]:
        return [c["identifier"] for c in nodes[identifier].get("related", {}).get(kind, [])]

    roots = set(nodes) - {c for n in nodes for k in ("success_nodes", "failure_nodes", "always_nodes")
                          for c in children(n, k)}
    assert roots == {"migrate"} and playbook("migrate") == "playbooks/migrate_tokens.yml"
    assert children("migrate", "success_nodes") == [] and children("migrate", "always_nodes") == []
    [rollback] = children("migrate", "failure_nodes")
    assert playbook(rollback) == "playbooks/rollback_tokens.yml"
    [marker] = children(rollback, "always_nodes")
    assert playbook(marker) == "playbooks/awx_mark_failed.yml"
    # The marker fails unconditionally.
    tasks = yaml_loader(REPO / "playbooks" / "awx_mark_failed.yml")[0]["tasks"]
    assert [list(t)[1] for t in tasks] == ["ansible.builtin.fail"] and all("when" not in t for t in tasks)


def test_job_templates_run_playbooks_that_exist_with_credentials_the_data_creates(awx_data):
    credentials = {c["name"] for c in awx_data["controller_credentials"]}
    for template in awx_data["controller_templates"]:
        assert (REPO / template["playbook"]).is_file(), template["playbook"]
        assert set(template.get("credentials", [])) <= credentials
        assert template["allow_simultaneous"] is False
