"""Fixtures for the end-to-end playbook tests: real PostgreSQL (scripts/stack), real ansible-playbook.

Every test gets its own demo database ``lm_test_pb_<n>`` made by ``scripts/stack reset --rows 2000``
(revision 20251109_add_user_name_picture, text[] tokens, NULL and '{}' among them), dropped afterwards,
and its own backup and report directories under ``tmp_path``. Nothing is mocked.

Test modules must not ``import conftest`` (another directory's conftest.py may own that name):
the fixtures carry the helpers (``pgdb.state()``, ``playbook.run(...)``, ...).
"""
from __future__ import annotations

import glob
import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg2
import pytest
import stackdb
from stackdb import drop_database, server_url, with_db

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
SEED_ROWS = 2000
OTHER_ROWS = 1500
DB_PREFIX = "lm_test_pb_"
REVISION_BEFORE = "20251109_add_user_name_picture"
REVISION_AFTER = "502d44cd70ab"
INDEX = "ix_ml_features_tokens_gin"
ALTER_SQL = "ALTER TABLE ml_features ALTER COLUMN tokens TYPE jsonb USING to_jsonb(tokens)"
# A login role of our own with a password found nowhere else, for the secrets test (the stack's
# own password is also its user, database and collection name, so its absence proves nothing).
SECRET_ROLE = "lm_test_pb_secret"
SECRET_PASSWORD = "Pb-s3cr3t-Qx7Zk41mW"

_counter = itertools.count(1)


def ansible_env(url: str) -> dict[str, str]:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "PATH": "{}:{}".format(BIN, os.environ.get("PATH", "")),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "DATABASE_URL": url,
    }
    env.pop("ANSIBLE_STDOUT_CALLBACK", None)
    return env


# --------------------------------------------------------------------------------------------- database


@dataclass
class PgDb:
    """One scratch demo database and read-only probes of what the tests care about."""

    name: str
    url: str
    admin_url: str

    def connect(self, autocommit: bool = True) -> psycopg2.extensions.connection:
        # autocommit: an idle-in-transaction probe would hold a snapshot that CREATE INDEX
        # CONCURRENTLY waits for.
        conn = psycopg2.connect(self.url, connect_timeout=10, application_name="lm_test_pb_probe")
        conn.autocommit = autocommit
        return conn

    def query(self, statement: str, params: Any = None) -> list[tuple]:
        return stackdb.query(self.url, statement, params, "lm_test_pb_probe")

    def scalar(self, statement: str, params: Any = None) -> Any:
        return stackdb.scalar(self.url, statement, params, "lm_test_pb_probe")

    def execute(self, statement: str, params: Any = None) -> None:
        self.query(statement, params)

    def column_type(self) -> str:
        return self.scalar(
            "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
            " WHERE a.attrelid = 'public.ml_features'::regclass AND a.attname = 'tokens' AND NOT a.attisdropped"
        )

    def revision(self) -> str | None:
        exists = self.scalar("SELECT to_regclass('public.alembic_version') IS NOT NULL")
        if not exists:
            return None
        rows = self.query("SELECT version_num FROM alembic_version ORDER BY 1")
        return ",".join(r[0] for r in rows) or "base"

    def index(self) -> dict[str, Any] | None:
        row = self.query(
            "SELECT i.indisvalid, am.amname::text, pg_get_indexdef(i.indexrelid),"
            "  (SELECT string_agg(oc.opcname, ',') FROM unnest(i.indclass) AS k(opc)"
            "   JOIN pg_opclass oc ON oc.oid = k.opc)"
            " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam"
            " WHERE i.indexrelid = to_regclass(%s)", (f"public.{INDEX}",)
        )
        if not row:
            return None
        valid, method, definition, opclasses = row[0]
        return {"valid": valid, "method": method, "opclasses": opclasses, "definition": definition}

    def fingerprint(self) -> str:
        """Type-agnostic content fingerprint: text[] {a,b} and jsonb ["a","b"] hash the same."""
        return self.scalar(
            "SELECT md5(string_agg(txn_id || ':' || coalesce(to_jsonb(tokens)::text, 'NULL'), '|' ORDER BY txn_id))"
            " || '/' || count(*) FROM ml_features"
        )

    def state(self) -> dict[str, Any]:
        return {
            "type": self.column_type(),
            "revision": self.revision(),
            "index": self.index(),
            "fingerprint": self.fingerprint(),
        }


def demo_database(rows: int) -> PgDb:
    """A new demo database at 20251109_add_user_name_picture with ``rows`` rows (the caller drops it)."""
    admin = server_url()
    name = f"{DB_PREFIX}{os.getpid()}_{next(_counter)}"
    out = subprocess.run(
        [str(REPO / "scripts" / "stack"), "reset", "--rows", str(rows), "--db", name],
        cwd=REPO, env={**os.environ, "DATABASE_URL": admin}, capture_output=True, text=True, check=False,
    )
    assert out.returncode == 0, f"scripts/stack reset failed:\n{out.stdout}\n{out.stderr}"
    db = PgDb(name=name, url=with_db(admin, name), admin_url=admin)
    assert db.revision() == REVISION_BEFORE and db.column_type() == "text[]"
    return db


@pytest.fixture
def pgdb() -> Iterator[PgDb]:
    """A fresh demo database at 20251109_add_user_name_picture with 2000 rows, dropped afterwards."""
    db = demo_database(SEED_ROWS)
    try:
        yield db
    finally:
        drop_database(db.admin_url, db.name)


@pytest.fixture
def pgdb_other() -> Iterator[PgDb]:
    """A second demo database, of another size (1500 rows), for runs sharing one backup directory."""
    db = demo_database(OTHER_ROWS)
    try:
        yield db
    finally:
        drop_database(db.admin_url, db.name)


# --------------------------------------------------------------------------------------- superuser access


def _stack_dirs() -> list[Path]:
    dirs = [Path(os.environ["LEDGERMIND_STACK_DIR"])] if os.environ.get("LEDGERMIND_STACK_DIR") else []
    dirs.append(REPO / ".stack")
    dirs.extend(Path(p) for p in sorted(glob.glob("/var/tmp/ledgermind-stack-*")))
    return dirs


def admin_psql(statement: str) -> subprocess.CompletedProcess[str] | None:
    """Runs SQL as the stack's superuser over its Unix socket; None when that is out of reach."""
    port = str(urlsplit(server_url()).port or 5432)
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"))
    if not bins:
        return None
    for run_dir in (d / "run" for d in _stack_dirs()):
        if not (run_dir / f".s.PGSQL.{port}").exists():
            continue
        argv = [bins[-1], "-X", "-qAt", "-v", "ON_ERROR_STOP=1", "-h", str(run_dir), "-p", port,
                "-U", "postgres", "-d", "postgres", "-c", statement]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
        if out.returncode == 0:
            return out
    return None


@pytest.fixture
def secret_role() -> Iterator[tuple[str, str] | None]:
    """(user, password) of a login role that is a member of the stack's role, or None without superuser access.

    Membership lets it alter the tables the stack's role owns, so the whole migration runs as it.
    """
    owner = urlsplit(server_url()).username
    made = admin_psql(
        f"DROP ROLE IF EXISTS {SECRET_ROLE}; "
        f"CREATE ROLE {SECRET_ROLE} LOGIN PASSWORD '{SECRET_PASSWORD}' IN ROLE {owner}"
    )
    yield (SECRET_ROLE, SECRET_PASSWORD) if made else None
    if made:
        admin_psql(f"DROP ROLE IF EXISTS {SECRET_ROLE}")


# --------------------------------------------------------------------------------------------- playbooks


@dataclass(repr=False)
class Run:
    argv: list[str]
    rc: int
    stdout: str
    stderr: str
    seconds: float
    data: dict[str, Any] | None  # the json callback's document, when it was used
    report: dict[str, Any] | None  # the sign-off JSON this run wrote
    report_path: Path | None
    new_backups: list[Path] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"Run(rc={self.rc}, report={self.report_path})"

    @property
    def text(self) -> str:
        return self.stdout + self.stderr

    @property
    def recap(self) -> dict[str, int]:
        if self.data:
            return self.data["stats"]["localhost"]
        match = re.search(r"^localhost\s*:\s*(.*)$", self.stdout, re.M)
        assert match, f"no PLAY RECAP in:\n{self.stdout[-3000:]}"
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}

    def results(self) -> list[tuple[str, dict[str, Any]]]:
        """(task name, host result) for every task in the json callback's output."""
        assert self.data is not None, "run with the json callback for results()"
        return [(task["task"]["name"], host)
                for play in self.data["plays"] for task in play["tasks"] for host in task["hosts"].values()]

    def result(self, name_part: str) -> dict[str, Any]:
        found = [r for n, r in self.results() if name_part in n]
        assert found, f"no task matching {name_part!r}: {[n for n, _ in self.results()]}"
        return found[-1]

    @property
    def failure_msg(self) -> str:
        """The message of the last failed task (the playbook's final `fail`)."""
        if self.data is None:
            return self.text
        failed = [r for _n, r in self.results() if r.get("failed") and r.get("failed_when_result") is not False]
        return str(failed[-1].get("msg", "")) if failed else ""

    def describe(self) -> str:
        tail = self.stdout[-1500:] if self.data is None else ""
        return (f"rc={self.rc} ({self.seconds:.1f}s)\n{' '.join(self.argv)}\n--- msg: {self.failure_msg}\n"
                f"--- stderr:\n{self.stderr[-2000:]}\n--- stdout tail:\n{tail}")


class Playbooks:
    def __init__(self, db: PgDb, tmp_path: Path) -> None:
        self.db = db
        self.backup_dir = tmp_path / "backups"
        self.report_dir = tmp_path / "reports"

    def backups(self) -> list[Path]:
        return sorted(self.backup_dir.glob("*.dump")) if self.backup_dir.exists() else []

    def argv(self, playbook: str, *extra: str) -> list[str]:
        return [str(BIN / "ansible-playbook"), f"playbooks/{playbook}", "-i", "inventories/local",
                "-e", f"ledgermind_backup_dir={self.backup_dir}", "-e", f"ledgermind_report_dir={self.report_dir}",
                *extra]

    def start(self, playbook: str = "migrate_tokens.yml", *extra: str) -> subprocess.Popen[str]:
        """ansible-playbook in the background, in a session of its own (a controller the test may kill)."""
        return subprocess.Popen(self.argv(playbook, *extra), cwd=REPO, env=ansible_env(self.db.url), text=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def run(self, playbook: str = "migrate_tokens.yml", *extra: str, check: bool = False, url: str | None = None,
            json_output: bool = True, verbosity: int = 0, timeout: float = 300) -> Run:
        argv = self.argv(playbook, *extra)
        if check:
            argv.append("--check")
        if verbosity:
            argv.append("-" + "v" * verbosity)
        env = ansible_env(url or self.db.url)
        if json_output:
            env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.builtin.json"
        reports_before = {p: p.stat().st_mtime_ns for p in self.report_dir.glob("*.json")} \
            if self.report_dir.exists() else {}
        backups_before = set(self.backups())
        started = time.monotonic()
        out = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=timeout)
        seconds = time.monotonic() - started
        data = None
        if json_output:
            try:
                data = json.loads(out.stdout)
            except ValueError:
                raise AssertionError(f"no JSON from ansible-playbook:\n{out.stdout[-3000:]}\n{out.stderr}") from None
        written = [p for p in self.report_dir.glob("*.json") if reports_before.get(p) != p.stat().st_mtime_ns] \
            if self.report_dir.exists() else []
        written.sort(key=lambda p: p.stat().st_mtime_ns)
        report_path = written[-1] if written else None
        report = json.loads(report_path.read_text()) if report_path else None
        new_backups = sorted(set(self.backups()) - backups_before)
        return Run(argv=argv, rc=out.returncode, stdout=out.stdout, stderr=out.stderr, seconds=seconds, data=data,
                   report=report, report_path=report_path, new_backups=new_backups)


@pytest.fixture
def playbook(pgdb: PgDb, tmp_path: Path) -> Playbooks:
    return Playbooks(pgdb, tmp_path)


@pytest.fixture
def playbook_other(pgdb_other: PgDb, tmp_path: Path) -> Playbooks:
    """Runs against pgdb_other with the same backup and report directories as ``playbook``."""
    return Playbooks(pgdb_other, tmp_path)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture
def file_sha256():
    return sha256_of
