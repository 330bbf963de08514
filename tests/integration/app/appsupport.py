"""Helpers for the app-half integration tests (imported by name: conftest is not importable here).

Each test module gets a scratch demo database (``scripts/stack reset``); the compose project ``lm_itest``
runs on ports 18280/18281 and is brought down afterwards. Without a Docker engine the tests that need one
fail with the fix (``make integration`` starts one with scripts/docker_engine up).
"""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
PROJECT = "lm_itest"
BACKEND_PORT = 18280
LLM_PORT = 18281


def docker_ok() -> bool:
    return subprocess.run(["docker", "version"], capture_output=True, check=False).returncode == 0


# A test of the real engine fails, never skips, when no engine answers: make test starts one.
needs_docker = pytest.mark.usefixtures("docker_engine")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen | None = None, hang_guard: float = 300) -> None:
    """Returns once something listens on `port`; fails at once when `proc` (the server) has exited.

    The server is waited for, however slow the machine: `hang_guard` only stops a test that would never end."""
    deadline = time.monotonic() + hang_guard
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{' '.join(map(str, proc.args))} exited with {proc.returncode} "
                                 f"before listening on {port}")
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port} after {hang_guard:.0f} s (hang guard)")


def task_results(doc) -> list[tuple[str, dict]]:
    return [(t["task"]["name"], h) for p in doc["plays"] for t in p["tasks"] for h in t["hosts"].values()]


def facts(doc) -> dict:
    """Every fact the run set with set_fact, last value wins."""
    found: dict = {}
    for _name, host in task_results(doc):
        found.update(host.get("ansible_facts", {}))
    return found


def failure(doc) -> str:
    failed = [h.get("msg", "") for _n, h in task_results(doc) if h.get("failed")]
    return str(failed[-1]) if failed else ""
