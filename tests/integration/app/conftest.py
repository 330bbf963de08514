"""Fixtures for the app-half integration tests: the real Docker engine, real HTTP, real PostgreSQL.

Each test module gets a scratch demo database (``scripts/stack reset``); the compose project ``lm_itest``
runs on ports 18280/18281 and is brought down afterwards.
"""
from __future__ import annotations

import json
import os
import subprocess
import textwrap
import time
from collections.abc import Iterator

import pytest
from appsupport import BACKEND_PORT, BIN, LLM_PORT, PROJECT, REPO, docker_ok
from stackdb import drop_database, reachable_server_url, with_db


@pytest.fixture(scope="session")
def docker_engine() -> None:
    if not docker_ok():
        pytest.fail("no Docker engine answers: start one with scripts/docker_engine up", pytrace=False)


@pytest.fixture(scope="module")
def db_url() -> Iterator[str]:
    admin = reachable_server_url()
    name = f"lm_test_app_{os.getpid()}"
    out = subprocess.run([str(REPO / "scripts" / "stack"), "reset", "--rows", "300", "--db", name], cwd=REPO,
                         env={**os.environ, "DATABASE_URL": admin}, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    yield with_db(admin, name)
    drop_database(admin, name)


@pytest.fixture
def run_playbook(tmp_path):
    """Runs a playbook of tasks on localhost with the collection from this checkout; returns (rc, json doc)."""

    def run(tasks: str, extra_vars: dict | None = None, env: dict | None = None, check: bool = False):
        book = tmp_path / f"play_{time.monotonic_ns()}.yml"
        book.write_text(textwrap.dedent("""\
            - hosts: localhost
              gather_facts: false
              vars:
                ansible_python_interpreter: "{{ ansible_playbook_python }}"
              tasks:
            """) + textwrap.indent(textwrap.dedent(tasks), "    "))
        argv = [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(book),
                "-e", json.dumps(extra_vars or {})]
        if check:
            argv.append("--check")
        out = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False, timeout=300, env={
            **os.environ, **(env or {}), "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json", "PATH": f"{BIN}:{os.environ['PATH']}"})
        try:
            return out.returncode, json.loads(out.stdout)
        except ValueError:
            raise AssertionError(out.stdout[-3000:] + out.stderr[-3000:]) from None

    return run


@pytest.fixture
def compose_project(db_url, tmp_path) -> Iterator[dict]:
    """The role variables for the lm_itest project; brought down afterwards."""
    subprocess.run([str(REPO / "scripts" / "backend_image"), "base"], check=True, capture_output=True)
    settings = {
        "compose_redeploy_project_dir": str(REPO / "examples" / "backend"),
        "compose_redeploy_project_name": PROJECT,
        "compose_redeploy_state_file": str(tmp_path / "state" / "compose.json"),
        "compose_redeploy_ready_url": f"http://127.0.0.1:{BACKEND_PORT}/ready",
        "compose_redeploy_ready_timeout": 20,
        "compose_redeploy_env": {"DATABASE_URL": db_url, "BACKEND_PORT": str(BACKEND_PORT), "LLM_PORT": str(LLM_PORT),
                                 "LEDGERMIND_TOKENS_MODEL": "text-array",
                                 "LEDGERMIND_BACKEND_IMAGE": "ledgermind-backend:text-array"},
    }
    yield settings
    subprocess.run(["docker", "compose", "--project-name", PROJECT, "--file",
                    str(REPO / "examples" / "backend" / "docker-compose.prod.yml"), "down"],
                   env={**os.environ, "DATABASE_URL": "unused"}, capture_output=True, check=False)
    remove_keepers(PROJECT)


def remove_keepers(project: str) -> None:
    """The stopped keeper containers compose_redeploy leaves for a put-back (compose down does not see them)."""
    ids = subprocess.run(["docker", "ps", "--all", "--quiet", "--filter",
                          f"label=org.ledgermind.keeper.project={project}"],
                         capture_output=True, text=True, check=False).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "--force", *ids], capture_output=True, check=False)
