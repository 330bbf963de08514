"""Fixtures for the AWX-side tests: jobs run through ansible-runner the way AWX runs them.

AWX gives every job a private data directory: ``inventory/`` (its inventory, as JSON), ``env/extravars``
(the survey answers, the job template's extra_vars, the custom credentials' injected extra vars and the
``awx_*`` variables), ``env/settings``, the Machine credential's command-line arguments (``-u``), and the
project checkout. ``AwxJobs`` builds one from the AWX objects as code (inventories/awx/group_vars/all): the
inventory's variables and groups, the credential types' injectors rendered in a Jinja sandbox as AWX renders
them, the surveys' defaults. Only the
host differs: a local-connection host whose credential inputs point at a scratch database of the
local stack (``scripts/stack reset``). Nothing is mocked.

``AwxWorkflow`` runs a workflow's graph the way AWX's workflow manager does (awx.main.scheduler.dag_workflow and
WorkflowJobNode.get_job_kwargs, AWX 24.6.1): the survey's answers checked as AWX checks them, a node run when an edge
into it fires, each job launched through ``AwxJobs`` with its parents' artifacts under the workflow's answers, an
approval decided by the test (approved, denied, timed out), the workflow failed when a failed node has no failure or
always edge; and every notification AWX would send on the way, rendered from the notification templates with the
contexts AWX gives them (tests/unit/awx/awx_model.py).
"""
from __future__ import annotations

import itertools
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import ansible_runner
import pytest
import stackdb
import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment
from stackdb import drop_database, server_url, with_db

# The AWX model shared with the unit tests (surveys, notification contexts and rendering, the graph).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "awx"))
import awx_model  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
AWX_DATA = REPO / "inventories" / "awx" / "group_vars" / "all"
REVISION_BEFORE = "20251109_add_user_name_picture"
REVISION_AFTER = "502d44cd70ab"
AWX_USER = "jdoe-sre"

_counter = itertools.count(1)


class _AnsibleYamlLoader(yaml.SafeLoader):
    pass


_AnsibleYamlLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def load_yaml(path: Path) -> Any:
    with path.open() as handle:
        return yaml.load(handle, Loader=_AnsibleYamlLoader)


def awx_data() -> dict[str, Any]:
    data: dict[str, Any] = {}
    for path in sorted(AWX_DATA.glob("*.yml")):
        data.update(load_yaml(path) or {})
    return data


# --------------------------------------------------------------------------------------------- databases


@dataclass
class ScratchDb:
    name: str
    url: str

    def query(self, statement: str, params: Any = None) -> list[tuple]:
        return stackdb.query(self.url, statement, params, "lm_test_awx_probe")

    def scalar(self, statement: str, params: Any = None) -> Any:
        return stackdb.scalar(self.url, statement, params, "lm_test_awx_probe")

    def state(self) -> dict[str, Any]:
        return {
            "type": self.scalar(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                " WHERE attrelid = 'public.ml_features'::regclass AND attname = 'tokens'"),
            "revision": self.scalar("SELECT string_agg(version_num, ',') FROM alembic_version"),
            "index": self.scalar("SELECT to_regclass('public.ix_ml_features_tokens_gin')::text"),
            "fingerprint": self.scalar(
                "SELECT md5(string_agg(txn_id || ':' || coalesce(to_jsonb(tokens)::text, 'NULL'), '|'"
                " ORDER BY txn_id)) || '/' || count(*) FROM ml_features"),
        }


@pytest.fixture
def make_db() -> Iterator:
    """make_db(name, rows=1000): a demo database at 20251109_add_user_name_picture, dropped afterwards."""
    admin = server_url()
    made: list[str] = []

    def make(name: str, rows: int = 1000) -> ScratchDb:
        out = subprocess.run(
            [str(REPO / "scripts" / "stack"), "reset", "--rows", str(rows), "--db", name],
            cwd=REPO, env={**os.environ, "DATABASE_URL": admin}, capture_output=True, text=True, check=False,
        )
        assert out.returncode == 0, f"scripts/stack reset failed:\n{out.stdout}\n{out.stderr}"
        made.append(name)
        db = ScratchDb(name=name, url=with_db(admin, name))
        assert db.state()["type"] == "text[]" and db.state()["revision"] == REVISION_BEFORE
        return db

    yield make
    for name in made:
        drop_database(admin, name)


@pytest.fixture
def scratch_db(make_db) -> ScratchDb:
    return make_db(f"lm_test_awx_{os.getpid()}_{next(_counter)}")


# ------------------------------------------------------------------------------------------- AWX jobs


def render_injectors(credential_type: dict[str, Any], inputs: dict[str, Any], files_dir: Path) -> dict[str, str]:
    """The extra vars AWX injects for a credential: its injector templates rendered in AWX's sandbox.

    File injectors are written (mode 0600) and their paths offered as ``tower.filename.<name>``, as AWX
    does; an input the credential leaves empty renders as an empty string.
    """
    env = ImmutableSandboxedEnvironment()
    fields = [f["id"] for f in credential_type["inputs"]["fields"]]
    namespace: dict[str, Any] = {field: inputs.get(field, "") for field in fields}
    filenames: dict[str, str] = {}
    for key, template in credential_type["injectors"].get("file", {}).items():
        name = key.split(".", 1)[1]
        path = files_dir / f"{credential_type['name'].replace(' ', '_')}_{name}"
        path.write_text(env.from_string(template).render(**namespace))
        path.chmod(0o600)
        filenames[name] = str(path)
    namespace["tower"] = {"filename": filenames}
    return {key: env.from_string(template).render(**namespace)
            for key, template in credential_type["injectors"].get("extra_vars", {}).items()}


@dataclass
class JobResult:
    status: str
    rc: int
    stdout: str
    artifact_data: dict[str, Any]
    report: dict[str, Any] | None
    events: list[dict[str, Any]]
    job_id: int = 0
    template: str = ""
    extra_vars: dict[str, Any] | None = None

    def describe(self) -> str:
        return f"status={self.status} rc={self.rc}\n{self.stdout[-4000:]}"


class AwxJobs:
    """Launches the job templates of the AWX data against one scratch database."""

    def __init__(self, db: ScratchDb, tmp_path: Path) -> None:
        self.db = db
        self.tmp = tmp_path
        self.data = awx_data()
        self.backup_dir = tmp_path / "backups"
        self.report_dir = tmp_path / "reports"
        self.job_ids = itertools.count(4100)

    def template(self, name: str) -> dict[str, Any]:
        return next(t for t in self.data["controller_templates"] if t["name"] == name)

    def credential_extra_vars(self, files_dir: Path) -> dict[str, str]:
        types = {t["name"]: t for t in self.data["controller_credential_types"]}
        url = urlsplit(self.db.url)
        db_inputs = {"host": url.hostname, "port": str(url.port), "name": self.db.name,
                     "user": unquote(url.username or ""), "password": unquote(url.password or "")}
        return render_injectors(types["LedgerMind PostgreSQL"], db_inputs, files_dir)

    def machine_args(self, template: dict[str, Any]) -> list[str]:
        """What AWX's RunJob.build_args adds for the job's Machine credential: -u (root without one), the become
        method and user. Its key goes to an ssh-agent and its become password to the prompt, neither of which a
        local-connection host asks for."""
        machine = {c["name"]: c for c in self.data["controller_credentials"] if c["credential_type"] == "Machine"}
        inputs = next((machine[n]["inputs"] for n in template.get("credentials", []) if n in machine), {})
        args = ["-u", inputs.get("username") or "root"]
        if inputs.get("become_method"):
            args += ["--become-method", inputs["become_method"]]
        if inputs.get("become_username"):
            args += ["--become-user", inputs["become_username"]]
        return args

    def inventory(self) -> dict[str, Any]:
        """The AWX inventory as AWX hands it to a job (JSON), its prod host swapped for a local one."""
        [inventory] = self.data["controller_inventories"]
        host = "ledgermind-db-test"
        hostvars = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            # Where this checkout keeps the stand-in backend, and scratch directories.
            "ledgermind_backend_dir": str(REPO / "examples" / "backend"),
            "ledgermind_backend_venv": str(BIN.parent),
            "ledgermind_backup_dir": str(self.backup_dir),
            "ledgermind_report_dir": str(self.report_dir),
        }
        groups = {g["name"]: {"hosts": [host], "vars": g.get("variables", {})}
                  for g in self.data["controller_groups"] if g["inventory"] == inventory["name"]}
        return {"all": {"vars": inventory["variables"], "children": list(groups)},
                **groups, "_meta": {"hostvars": {host: hostvars}}}

    def launch(self, template_name: str, extra_vars: dict[str, Any] | None = None, *,
               launched_by: str | None = AWX_USER, launch_type: str = "workflow") -> JobResult:
        """A job of this template; ``launched_by=None`` as a schedule launches it (AWX then sets no awx_user_*)."""
        template = self.template(template_name)
        job_id = next(self.job_ids)
        private = self.tmp / f"job_{job_id}"
        (private / "env").mkdir(parents=True)
        (private / "inventory").mkdir()
        files_dir = private / "credentials"
        files_dir.mkdir()
        survey = {q["variable"]: q["default"] for q in template.get("survey_spec", {}).get("spec", [])
                  if "default" in q}
        extravars = {
            **template.get("extra_vars", {}),
            **survey,
            **(self.credential_extra_vars(files_dir) if template.get("credentials") else {}),
            "awx_job_id": job_id, "tower_job_id": job_id,
            "awx_job_launch_type": launch_type,
            "awx_job_template_name": template_name,
            **({"awx_user_name": launched_by, "tower_user_name": launched_by,
                "awx_user_email": f"{launched_by}@ledgermind.invalid"} if launched_by else {}),
            **(extra_vars or {}),
        }
        (private / "env" / "extravars").write_text(yaml.safe_dump(extravars))
        (private / "env" / "settings").write_text(yaml.safe_dump({"suppress_ansible_output": True}))
        inventory_script = private / "inventory" / "hosts"
        inventory_script.write_text("#!/bin/sh\ncat <<'EOF'\n" + json.dumps(self.inventory()) + "\nEOF\n")
        inventory_script.chmod(0o700)
        reports_before = set(self.report_dir.glob("*.json")) if self.report_dir.exists() else set()
        runner = ansible_runner.run(
            private_data_dir=str(private), project_dir=str(REPO), playbook=template["playbook"],
            ident=str(job_id), quiet=True, cmdline=shlex.join(self.machine_args(template)),
            envvars={"PATH": f"{BIN}:{os.environ.get('PATH', '')}", "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
                     "ANSIBLE_NOCOLOR": "1"},
        )
        events = list(runner.events)
        stats = [e for e in events if e.get("event") == "playbook_on_stats"]
        artifact_data = stats[-1]["event_data"].get("artifact_data", {}) if stats else {}
        written = sorted(set(self.report_dir.glob("*.json")) - reports_before) if self.report_dir.exists() else []
        report = json.loads(written[-1].read_text()) if written else None
        return JobResult(status=runner.status, rc=runner.rc, stdout=runner.stdout.read(),
                         artifact_data=artifact_data, report=report, events=events, job_id=job_id,
                         template=template_name, extra_vars=extravars)


@pytest.fixture
def awx_jobs(scratch_db, tmp_path) -> AwxJobs:
    return AwxJobs(scratch_db, tmp_path)


# ---------------------------------------------------------------------------------------------- workflows


class SurveyRefused(Exception):
    """AWX refuses the launch (variables_needed_to_start): no job starts."""


@dataclass
class Notification:
    template: str  # the notification template's name
    event: str  # started, success, error, or workflow_approval.<status>
    source: str  # the job template, workflow or approval node it was sent for
    message: str  # what Slack or an e-mail subject shows
    body: dict[str, Any]  # what the webhook posts


@dataclass
class WorkflowResult:
    status: str  # successful or failed
    explanation: str
    jobs: dict[str, JobResult]  # by node identifier, the nodes that ran a job
    approvals: dict[str, str]  # by node identifier: approved, denied or timed_out
    ran: list[str]  # node identifiers in the order they finished
    notifications: list[Notification]

    def sent(self, template: str) -> list[Notification]:
        return [n for n in self.notifications if n.template == template]

    def describe(self) -> str:
        return "\n".join([f"workflow {self.status}: ran {self.ran}; {self.explanation}"]
                         + [f"--- {i} ({j.template}):\n{j.describe()}" for i, j in self.jobs.items()])


class AwxWorkflow:
    """Runs a workflow of the AWX data as AWX's workflow manager would (see the module docstring)."""

    SurveyRefused = SurveyRefused  # for the tests, which do not import conftest

    def __init__(self, jobs: AwxJobs, name: str) -> None:
        self.jobs = jobs
        self.workflow = next(w for w in jobs.data["controller_workflows"] if w["name"] == name)
        self.nodes = awx_model.workflow_nodes(self.workflow)
        self.notification_templates = {n["name"]: n for n in jobs.data["controller_notifications"]}

    def _notify(self, owner: dict[str, Any], event: str, context: dict[str, Any], source: str,
                sent: list[Notification], approval_status: str | None = None) -> None:
        key = "approvals" if event == "workflow_approval" else event
        for name in owner.get(f"notification_templates_{key}", []):
            message, body = awx_model.render_notification(self.notification_templates[name], event, context,
                                                          approval_status)
            label = f"workflow_approval.{approval_status}" if approval_status else event
            sent.append(Notification(name, label, source, message, body))

    def run(self, answers: dict[str, Any] | None = None, *, approval: str = "approved",
            launched_by: str | None = AWX_USER, faults: dict[str, dict[str, Any]] | None = None,
            after_job: Callable[[str, JobResult], None] | None = None) -> WorkflowResult:
        """``approval``: approved, denied or timed_out. ``faults``: extra vars for one node's job (by identifier), to
        make it fail the way a real failure would; AWX has no such thing, it stands for the failure. ``after_job``:
        called with a node's identifier and its job as soon as the job ends, before any other node starts (a test
        reads the database between two nodes there)."""
        survey = self.workflow.get("survey_spec", {})
        # AWX fills in the defaults, then checks every answer; a wrong one refuses the launch.
        # The rehearsal costs about a minute a job here: off unless a test answers true (the approved path does).
        answers = {"ledgermind_rehearsal": "false", **(answers or {})}
        launch_vars = {**awx_model.survey_defaults(survey), **answers} if survey else dict(answers)
        errors = awx_model.survey_answer_errors(survey, launch_vars) if survey else []
        if errors:
            raise SurveyRefused(errors)
        workflow_vars = {**self.workflow.get("extra_vars", {}), **launch_vars}
        workflow_job_id = next(self.jobs.job_ids)
        sent: list[Notification] = []
        wf_context = {"workflow": True, "launched_by": launched_by, "extra_vars": workflow_vars,
                      "limit": "", "inventory": self.workflow.get("inventory", "")}
        self._notify(self.workflow, "started",
                     awx_model.job_context(workflow_job_id, self.workflow["name"], "running", **wf_context),
                     self.workflow["name"], sent)

        status: dict[str, str] = {}
        ancestors: dict[str, dict[str, Any]] = {}  # each node's ancestor_artifacts
        jobs: dict[str, JobResult] = {}
        approvals: dict[str, str] = {}
        ran: list[str] = []
        fired: dict[str, list[str]] = {}  # node -> the parents whose edge into it fired, in order
        ready = sorted(awx_model.roots(self.workflow))
        while ready:
            identifier = ready.pop(0)
            node = self.nodes[identifier]
            # WorkflowJobNode.get_job_kwargs: each parent's ancestor artifacts, then its job's artifacts.
            inherited: dict[str, Any] = {}
            for parent in fired.get(identifier, []):
                inherited.update(ancestors[parent])
                if parent in jobs:
                    inherited.update(jobs[parent].artifact_data)
            ancestors[identifier] = inherited
            if "approval_node" in node:
                name = node["approval_node"]["name"]
                self._notify(self.workflow, "workflow_approval",
                             awx_model.approval_context("running", name, workflow_job_id, launched_by=launched_by or "",
                                                        extra_vars=workflow_vars), name, sent, "running")
                approvals[identifier] = approval
                self._notify(self.workflow, "workflow_approval",
                             awx_model.approval_context(approval, name, workflow_job_id, launched_by=launched_by or "",
                                                        extra_vars=workflow_vars), name, sent, approval)
                status[identifier] = "successful" if approval == "approved" else "failed"
            else:
                template_name = node["unified_job_template"]
                template = self.jobs.template(template_name)
                # Artifacts over the node's own variables; the workflow's answers over both.
                extra = {**inherited, **workflow_vars, **(faults or {}).get(identifier, {}),
                         "awx_workflow_job_id": workflow_job_id, "awx_workflow_job_name": self.workflow["name"]}
                job = self.jobs.launch(template_name, extra, launched_by=launched_by)
                jobs[identifier] = job
                if after_job:
                    after_job(identifier, job)
                status[identifier] = "successful" if job.status == "successful" else "failed"
                event = "success" if status[identifier] == "successful" else "error"
                self._notify(template, event, awx_model.job_context(
                    job.job_id, template_name, status[identifier], artifacts=job.artifact_data,
                    launched_by=launched_by, playbook=template["playbook"], extra_vars=job.extra_vars), template_name,
                    sent)
            ran.append(identifier)
            edges = ["success_nodes" if status[identifier] == "successful" else "failure_nodes", "always_nodes"]
            for edge in edges:
                for child in awx_model.children(node, edge):
                    fired.setdefault(child, []).append(identifier)
                    if child not in ready:
                        ready.append(child)
        # dag_workflow.has_workflow_failed: a failed node with no failure or always edge fails the workflow.
        unhandled = [i for i, s in status.items() if s == "failed"
                     and not awx_model.children(self.nodes[i], "failure_nodes")
                     and not awx_model.children(self.nodes[i], "always_nodes")]
        outcome = "failed" if unhandled else "successful"
        failed_nodes = ",".join(f"({i},failed)" for i in unhandled)
        explanation = f"No error handling path for workflow job node(s) [{failed_nodes}]" if unhandled else ""
        self._notify(self.workflow, "success" if outcome == "successful" else "error",
                     awx_model.job_context(workflow_job_id, self.workflow["name"], outcome, explanation=explanation,
                                           **wf_context), self.workflow["name"], sent)
        return WorkflowResult(outcome, explanation, jobs, approvals, ran, sent)


@pytest.fixture
def awx_workflow(awx_jobs) -> AwxWorkflow:
    return AwxWorkflow(awx_jobs, "Tokens migration with rollback")
