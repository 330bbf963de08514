"""What AWX does with the objects as code, reproduced offline for the tests (unit and integration).

- ``load_awx_data``: inventories/awx/group_vars/all as awx_configure.yml sees it, rendered by Ansible itself (vault
  placeholders, the notification switch), ``!unsafe`` AWX-side Jinja left as the text AWX receives.
- ``survey_answer_errors``: AWX's check of a launch's answers against a survey (SurveyJobTemplateMixin.
  _survey_element_validation, AWX 24.6.1): what a wrong answer gets refused with, before any job starts.
- Notification templates: AWX's save-time check of custom messages (NotificationTemplateSerializer.validate_messages
  and validate: rendered against JobNotificationMixin.context_stub with an undefined that fails on any missing field;
  the backend's init_parameters), and the contexts AWX renders them with at send time (JobNotificationMixin.context
  for jobs and workflow jobs, WorkflowApproval.context for approvals), in its Jinja sandbox.
- The workflow graph: its nodes and edges.

Written from AWX 24.6.1's source (the awx.awx collection installed is 24.6.1); the values that matter are named
where they are used.
"""
from __future__ import annotations

import datetime
import functools
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from jinja2 import ChainableUndefined, StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

REPO = Path(__file__).resolve().parents[3]
AWX_INVENTORY = REPO / "inventories" / "awx" / "hosts.yml"
AWX_BASE = "https://awx.example.internal"

# --------------------------------------------------------------------------------------------------- the data


_RENDER = """
import json, sys
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import init_plugin_loader
from ansible.template import Templar
from ansible.vars.manager import VariableManager

init_plugin_loader()
loader = DataLoader()
inventory = InventoryManager(loader=loader, sources=[sys.argv[1]])
host_vars = dict(VariableManager(loader=loader, inventory=inventory).get_vars(host=inventory.get_host('localhost')))
host_vars.update(json.loads(sys.argv[2]))
templar = Templar(loader=loader, variables=host_vars)
names = [n for n in host_vars if n.startswith(('controller_', 'aap_', 'ledgermind_', 'vault_'))]
print(json.dumps({name: templar.template(host_vars[name]) for name in names}))
"""


@functools.cache
def _rendered(overrides: str) -> str:
    # In a process of its own: Ansible's plugin loader changes how ansible_collections imports resolve.
    out = subprocess.run([sys.executable, "-c", _RENDER, str(AWX_INVENTORY), overrides], capture_output=True,
                         text=True, check=False, timeout=120, cwd=REPO,
                         env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")})
    assert out.returncode == 0, out.stderr
    return out.stdout


def load_awx_data(**overrides: Any) -> dict[str, Any]:
    """Every variable of inventories/awx/group_vars/all, rendered as Ansible renders it for awx_configure.yml, as the
    modules receive it (plain dicts, lists and strings).

    ``overrides`` act as extra vars (e.g. ``ledgermind_notification_type='slack'``).
    """
    return json.loads(_rendered(json.dumps(overrides, sort_keys=True)))


def by_name(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
    [found] = [item for item in items if item.get("name") == name]
    return found


# ------------------------------------------------------------------------------------------------- surveys


def survey_answer_errors(survey: Mapping[str, Any], answers: Mapping[str, Any]) -> list[str]:
    """The errors AWX's launch endpoint returns for these answers (variables_needed_to_start); [] when accepted."""
    errors: list[str] = []
    for element in survey["spec"]:
        variable = element["variable"]
        low, high = element.get("min"), element.get("max")
        has_low, has_high = low not in ("", None), high not in ("", None)
        if variable not in answers:
            if element["required"]:
                errors.append(f"'{variable}' value missing")
            continue
        value = answers[variable]
        kind = element["type"]
        if kind in ("text", "textarea", "password"):
            if not isinstance(value, str):
                errors.append(f"Value {value} for '{variable}' expected to be a string.")
                continue
            if has_low and len(value) < int(low):
                errors.append(f"'{variable}' value {value} is too small "
                              f"(length is {len(value)} must be at least {low}).")
            if has_high and len(value) > int(high):
                errors.append(f"'{variable}' value {value} is too large (must be no more than {high}).")
        elif kind == "integer":
            if type(value) is not int:
                errors.append(f"Value {value} for '{variable}' expected to be an integer.")
                continue
            if has_low and value < int(low):
                errors.append(f"'{variable}' value {value} is too small (must be at least {low}).")
            if has_high and value > int(high):
                errors.append(f"'{variable}' value {value} is too large (must be no more than {high}).")
        elif kind == "float":
            if type(value) not in (float, int):
                errors.append(f"Value {value} for '{variable}' expected to be a numeric type.")
                continue
            if has_low and value < float(low):
                errors.append(f"'{variable}' value {value} is too small (must be at least {low}).")
            if has_high and value > float(high):
                errors.append(f"'{variable}' value {value} is too large (must be no more than {high}).")
        elif kind in ("multiplechoice", "multiselect"):
            choices = element["choices"]
            choices = [c for c in choices.splitlines() if c.strip()] if isinstance(choices, str) else list(choices)
            values = value if kind == "multiselect" else [value]
            if kind == "multiselect" and not isinstance(value, list):
                errors.append(f"'{variable}' value is expected to be a list.")
                continue
            errors += [f"Value {v} for '{variable}' expected to be one of {choices}."
                       for v in values if v not in choices]
    return errors


def survey_defaults(survey: Mapping[str, Any]) -> dict[str, Any]:
    """The answers a launch gets when nobody changes a field (AWX fills in each default)."""
    return {q["variable"]: q["default"] for q in survey["spec"] if "default" in q}


# ------------------------------------------------------------------------------------------- notifications

# awx.main.notifications.*_backend init_parameters (AWX 24.6.1): the fields AWX checks when a notification template is
# saved, their types, and the defaults it fills in (a field without one is required).
BACKEND_INIT_PARAMETERS: dict[str, dict[str, dict[str, Any]]] = {
    "webhook": {
        "url": {"type": "string"},
        "http_method": {"type": "string", "default": "POST"},
        "disable_ssl_verification": {"type": "bool", "default": False},
        "username": {"type": "string", "default": ""},
        "password": {"type": "password", "default": ""},
        "headers": {"type": "object"},
    },
    "slack": {
        "token": {"type": "password"},
        "channels": {"type": "list"},
    },
}
# NotificationTemplateSerializer.type_map
_TYPE_MAP = {"string": (str,), "int": (int,), "bool": (bool,), "list": (list,), "password": (str,), "object": (dict,)}
# Fields AWX stores encrypted (type password): the only places a secret is kept encrypted.
SECRET_FIELDS = {kind: {f for f, p in params.items() if p["type"] == "password"}
                 for kind, params in BACKEND_INIT_PARAMETERS.items()}


def configuration_errors(notification_type: str, configuration: Mapping[str, Any]) -> list[str]:
    """What AWX refuses in a notification template's configuration (NotificationTemplateSerializer.validate)."""
    errors, missing = [], []
    for field, params in BACKEND_INIT_PARAMETERS[notification_type].items():
        if field not in configuration:
            if "default" not in params:
                missing.append(field)
            continue
        value = configuration[field]
        if type(value) not in _TYPE_MAP[params["type"]]:
            errors.append(f"Configuration field '{field}' incorrect type, expected {params['type']}.")
        elif params["type"] == "list" and len(value) < 1:
            errors.append(f"No values specified for field '{field}'")
        elif field == "http_method" and value.lower() not in ("put", "post"):
            errors.append("HTTP method must be either 'POST' or 'PUT'.")
    if missing:
        errors.append(f"Missing required fields for Notification Configuration: {missing}.")
    return errors


class _DescriptiveUndefined(StrictUndefined):
    """validate_messages' undefined: any use of a missing field fails the save, naming the field."""

    __repr__ = __str__ = StrictUndefined._fail_with_undefined_error  # type: ignore[assignment]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._undefined_hint = self._undefined_name  # the error names the missing field


def context_stub() -> dict[str, Any]:
    """JobNotificationMixin.context_stub (AWX 24.6.1): what a message must render against to be saved."""
    utc = datetime.UTC
    return {
        "job": {
            "allow_simultaneous": False, "artifacts": {}, "controller_node": "foo_controller",
            "created": datetime.datetime(2018, 11, 13, 6, 4, 0, 0, tzinfo=utc), "custom_virtualenv": "my_venv",
            "description": "Sample job description", "diff_mode": False, "elapsed": 0.403018, "execution_node": "awx",
            "failed": False, "finished": False, "force_handlers": False, "forks": 0,
            "host_status_counts": {"skipped": 1, "ok": 5, "changed": 3, "failures": 0, "dark": 0, "failed": False,
                                   "processed": 0, "rescued": 0},
            "id": 42, "job_explanation": "Sample job explanation", "job_slice_count": 1, "job_slice_number": 0,
            "job_tags": "", "job_type": "run", "launch_type": "workflow", "limit": "bar_limit",
            "modified": datetime.datetime(2018, 12, 13, 6, 4, 0, 0, tzinfo=utc), "name": "Stub JobTemplate",
            "playbook": "ping.yml", "scm_branch": "", "scm_revision": "", "skip_tags": "", "start_at_task": "",
            "started": "2019-07-29T17:38:14.137461Z", "status": "running",
            "summary_fields": {
                "created_by": {"first_name": "", "id": 1, "last_name": "", "username": "admin"},
                "instance_group": {"id": 1, "name": "tower"},
                "inventory": {"description": "Sample inventory description", "has_active_failures": False,
                              "has_inventory_sources": False, "hosts_with_active_failures": 0, "id": 17,
                              "inventory_sources_with_failures": 0, "kind": "", "name": "Stub Inventory",
                              "organization_id": 121, "total_groups": 0, "total_hosts": 1,
                              "total_inventory_sources": 0},
                "job_template": {"description": "Sample job template description", "id": 39,
                                 "name": "Stub JobTemplate"},
                "labels": {"count": 0, "results": []},
                "project": {"description": "Sample project description", "id": 38, "name": "Stub project",
                            "scm_type": "git", "status": "successful"},
                "schedule": {"description": "Sample schedule", "id": 42, "name": "Stub schedule",
                             "next_run": datetime.datetime(2038, 1, 1, 0, 0, 0, 0, tzinfo=utc)},
                "unified_job_template": {"description": "Sample unified job template description", "id": 39,
                                         "name": "Stub Job Template", "unified_job_type": "job"},
            },
            "timeout": 0, "type": "job", "url": "/api/v2/jobs/13/", "use_fact_cache": False, "verbosity": 0,
        },
        "job_friendly_name": "Job",
        "url": "https://platformhost/#/jobs/playbook/1010",
        "approval_status": "approved",
        "approval_node_name": "Approve Me",
        "workflow_url": "https://platformhost/#/jobs/workflow/1010",
        "job_metadata": "{'url': 'https://platformhost/$/jobs/playbook/13', 'status': 'running', 'id': 42}",
    }


EVENTS = ("started", "success", "error", "workflow_approval")
APPROVAL_EVENTS = ("running", "approved", "timed_out", "denied")


def message_errors(messages: Mapping[str, Any], notification_type: str) -> list[str]:
    """What AWX refuses when the notification template is saved with these custom messages."""
    errors: list[str] = []
    collected: list[str] = []

    def check(event: str, pair: Any) -> None:
        if not isinstance(pair, dict):
            errors.append(f"Expected dict for event '{event}'")
            return
        for kind, text in pair.items():
            if kind not in ("message", "body"):
                errors.append(f"Message type '{kind}' invalid, must be either 'message' or 'body'")
            elif text is not None and not isinstance(text, str):
                errors.append(f"Expected string for '{kind}'")
            elif kind == "message" and text and "\n" in text:
                errors.append(f"Messages cannot contain newlines (found newline in {event} event)")
            elif text:
                collected.append(text)

    for event, value in messages.items():
        if event not in EVENTS:
            errors.append(f"Event '{event}' invalid")
        elif event == "workflow_approval":
            for sub, pair in value.items():
                if sub not in APPROVAL_EVENTS:
                    errors.append(f"Workflow Approval event '{sub}' invalid")
                else:
                    check(f"workflow_approval.{sub}", pair)
        elif value is not None:
            check(event, value)
    env = ImmutableSandboxedEnvironment(undefined=_DescriptiveUndefined)
    for text in collected:
        try:
            env.from_string(text).render(context_stub())
        except TemplateSyntaxError as exc:
            errors.append(f"Unable to render message '{text[:60]}...': {exc.message}")
        except UndefinedError as exc:
            errors.append(f"Field '{exc.message}' unavailable")
        except SecurityError as exc:
            errors.append(f"Security error due to field '{exc.message}'")
    return errors


def job_context(job_id: int, name: str, status: str, *, artifacts: Mapping[str, Any] | None = None,
                launched_by: str | None = "jdoe-sre", launch_type: str = "workflow", playbook: str = "",
                inventory: str = "LedgerMind prod", limit: str = "", extra_vars: Mapping[str, Any] | None = None,
                explanation: str = "", workflow: bool = False) -> dict[str, Any]:
    """The context AWX renders a job's (or a workflow job's) notification with (JobNotificationMixin.context): the
    serialized job's fields of JOB_FIELDS_ALLOWED_LIST (a workflow job has no artifacts nor playbook), url, ..."""
    summary: dict[str, Any] = {"inventory": {"id": 17, "name": inventory, "kind": ""},
                               "unified_job_template": {"id": 39, "name": name,
                                                        "unified_job_type": "workflow_job" if workflow else "job"}}
    if launched_by:
        summary["created_by"] = {"id": 7, "username": launched_by, "first_name": "", "last_name": ""}
    if not workflow:
        summary["job_template"] = {"id": 39, "name": name, "description": ""}
    job: dict[str, Any] = {
        "id": job_id, "type": "workflow_job" if workflow else "job",
        "url": f"/api/v2/{'workflow_' if workflow else ''}jobs/{job_id}/",
        "name": name, "description": "", "launch_type": launch_type, "status": status,
        "failed": status in ("failed", "error"), "started": "2026-12-02T09:00:00.000000Z",
        "finished": None if status == "running" else "2026-12-02T09:04:12.000000Z", "elapsed": 252.3,
        "job_explanation": explanation, "limit": limit, "allow_simultaneous": False, "summary_fields": summary,
        "host_status_counts": {} if workflow else {"ok": 40, "changed": 3, "failures": int(status == "failed")},
    }
    if not workflow:
        job.update(artifacts=dict(artifacts or {}), playbook=playbook, job_type="run", forks=0, verbosity=0,
                   job_tags="", skip_tags="", scm_branch="", scm_revision="0f3c2a1", execution_node="awx-ee-1")
    kind = "workflow" if workflow else "playbook"
    metadata = {"id": job_id, "name": name, "url": f"{AWX_BASE}/#/jobs/{kind}/{job_id}",
                "created_by": launched_by or "None", "started": job["started"], "finished": job["finished"],
                "status": status, "traceback": "", "inventory": inventory, "limit": limit,
                "extra_vars": json.dumps(dict(extra_vars or {}))}
    return {"job": job, "job_friendly_name": "Workflow Job" if workflow else "Job",
            "url": f"{AWX_BASE}/#/jobs/{kind}/{job_id}", "job_metadata": json.dumps(metadata, indent=4)}


def approval_context(status: str, node_name: str, workflow_job_id: int, *, approval_id: int = 4200,
                     launched_by: str = "jdoe-sre", extra_vars: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """WorkflowApproval.context: the only names an approval's notification can use."""
    workflow_url = f"{AWX_BASE}/#/jobs/workflow/{workflow_job_id}"
    metadata = {"id": approval_id, "name": node_name, "url": workflow_url, "created_by": launched_by,
                "started": "2026-12-02T09:04:20+00:00", "finished": None, "status": "pending", "traceback": "",
                "extra_vars": json.dumps(dict(extra_vars or {}))}
    return {"approval_status": status, "approval_node_name": node_name, "workflow_url": workflow_url,
            "job_metadata": json.dumps(metadata, indent=4)}


def render_notification(template: Mapping[str, Any], event: str, context: Mapping[str, Any],
                        approval_status: str | None = None) -> tuple[str, Any]:
    """(message, body) as AWX renders them when it sends: a job's with the sandbox and ChainableUndefined
    (build_notification_message), an approval's with the sandbox's default undefined
    (build_approval_notification_message). A template that fails to render gives '' as AWX does, so a test sees it.
    The webhook body is then parsed as the webhook backend does (format_body: not a JSON object -> {})."""
    messages = template["messages"][event]
    if event == "workflow_approval":
        messages = messages[approval_status]
        env = ImmutableSandboxedEnvironment()
    else:
        env = ImmutableSandboxedEnvironment(undefined=ChainableUndefined)
    rendered = []
    for kind in ("message", "body"):
        try:
            rendered.append(env.from_string(messages[kind]).render(**context))
        except (TemplateSyntaxError, UndefinedError, SecurityError):
            rendered.append("")
    message, body = rendered
    try:
        parsed = json.loads(body)
    except json.JSONDecodeError:
        parsed = {}
    return message, parsed if isinstance(parsed, dict) else {}


# ----------------------------------------------------------------------------------------------- the graph

EDGES = ("success_nodes", "failure_nodes", "always_nodes")


def workflow_nodes(workflow: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {node["identifier"]: node for node in workflow["simplified_workflow_nodes"]}


def children(node: Mapping[str, Any], edge: str) -> list[str]:
    return list(node.get(edge, []))


def roots(workflow: Mapping[str, Any]) -> set[str]:
    nodes = workflow_nodes(workflow)
    return set(nodes) - {c for n in nodes.values() for e in EDGES for c in children(n, e)}


def paths(workflow: Mapping[str, Any]) -> Iterator[list[tuple[str, str]]]:
    """Every path from a root to a leaf, as [(node, edge taken to the next), ..., (leaf, '')]."""
    nodes = workflow_nodes(workflow)

    def walk(identifier: str, so_far: list[tuple[str, str]]) -> Iterator[list[tuple[str, str]]]:
        outgoing = [(edge, child) for edge in EDGES for child in children(nodes[identifier], edge)]
        if not outgoing:
            yield [*so_far, (identifier, "")]
        for edge, child in outgoing:
            yield from walk(child, [*so_far, (identifier, edge)])

    for root in sorted(roots(workflow)):
        yield from walk(root, [])
