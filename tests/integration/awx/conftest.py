"""Fixtures for the AWX-side tests: jobs run through ansible-runner the way AWX runs them.

AWX gives every job a private data directory: ``inventory/`` (its inventory, as JSON), ``env/extravars``
(the survey answers, the job template's extra_vars, the credentials' injected extra vars and the
``awx_*`` variables), ``env/settings``, and the project checkout. ``AwxJob`` builds one from the AWX
objects as code (inventories/awx/group_vars/all): the inventory's variables and groups, the credential
types' injectors rendered in a Jinja sandbox as AWX renders them, the surveys' defaults. Only the
host differs: a local-connection host whose credential inputs point at a scratch database of the
local stack (``scripts/stack reset``). Nothing is mocked.
"""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
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
        ssh_key = files_dir / "unused"
        deploy_inputs = {"username": "ledgermind-deploy", "ssh_key_data": f"not a key ({ssh_key})\n",
                         "known_hosts": "backend-1.prod.example.internal ssh-ed25519 AAAA\n"}
        return {**render_injectors(types["LedgerMind PostgreSQL"], db_inputs, files_dir),
                **render_injectors(types["LedgerMind deploy host"], deploy_inputs, files_dir)}

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

    def launch(self, template_name: str, extra_vars: dict[str, Any] | None = None) -> JobResult:
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
            "awx_job_launch_type": "workflow",
            "awx_job_template_name": template_name,
            "awx_user_name": AWX_USER, "tower_user_name": AWX_USER,
            "awx_user_email": f"{AWX_USER}@ledgermind.invalid",
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
            ident=str(job_id), quiet=True,
            envvars={"PATH": f"{BIN}:{os.environ.get('PATH', '')}", "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
                     "ANSIBLE_NOCOLOR": "1"},
        )
        events = list(runner.events)
        stats = [e for e in events if e.get("event") == "playbook_on_stats"]
        artifact_data = stats[-1]["event_data"].get("artifact_data", {}) if stats else {}
        written = sorted(set(self.report_dir.glob("*.json")) - reports_before) if self.report_dir.exists() else []
        report = json.loads(written[-1].read_text()) if written else None
        return JobResult(status=runner.status, rc=runner.rc, stdout=runner.stdout.read(),
                         artifact_data=artifact_data, report=report, events=events)


@pytest.fixture
def awx_jobs(scratch_db, tmp_path) -> AwxJobs:
    return AwxJobs(scratch_db, tmp_path)
