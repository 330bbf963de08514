"""The stand-in backend's HTTP service run from source against the real PostgreSQL, over real HTTP."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from appsupport import REPO, free_port, wait_port

BACKEND = REPO / "examples" / "backend"


def request(url: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def serve():
    procs = []

    def start(module: str, **env: str) -> int:
        port = free_port()
        key = "LLM_PORT" if module.endswith("llm_stub") else "BACKEND_PORT"
        proc = subprocess.Popen([sys.executable, "-m", module], cwd=BACKEND, env={
            **os.environ, "PYTHONPATH": str(BACKEND), key: str(port), **env},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        wait_port(port, proc)
        return port

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


def test_ready_matches_the_column_type_the_model_expects(serve, db_url):
    llm = serve("ledgermind_backend.llm_stub")
    old = serve("ledgermind_backend.service", DATABASE_URL=db_url, LEDGERMIND_TOKENS_MODEL="text-array",
                LLM_BASE_URL=f"http://127.0.0.1:{llm}")
    new = serve("ledgermind_backend.service", DATABASE_URL=db_url, LEDGERMIND_TOKENS_MODEL="json",
                LLM_BASE_URL=f"http://127.0.0.1:{llm}")
    status, body = request(f"http://127.0.0.1:{old}/ready")
    assert status == 200 and body["ok"] and body["db_ok"] and body["llm_ok"] and body["tokens_type"] == "_text", body
    status, body = request(f"http://127.0.0.1:{new}/ready")
    assert status == 503 and not body["ok"] and not body["db_ok"] and body["llm_ok"], body
    assert "expects jsonb" in body["db_error"]
    # The JSON model's feature lookup fails on text[] too, so chat says so.
    status, body = request(f"http://127.0.0.1:{new}/agent/chat", {"messages": [{"role": "user", "content": "test"}]},
                           {"x-test-mode": "stub"})
    assert status == 500 and "feature lookup failed" in body["error"], body


def test_chat_stub_mode_and_llm_mode(serve, db_url):
    llm = serve("ledgermind_backend.llm_stub")
    port = serve("ledgermind_backend.service", DATABASE_URL=db_url, LEDGERMIND_TOKENS_MODEL="text-array",
                 LLM_BASE_URL=f"http://127.0.0.1:{llm}")
    body = {"messages": [{"role": "user", "content": "test"}]}
    status, answer = request(f"http://127.0.0.1:{port}/agent/chat", body, {"x-test-mode": "stub"})
    assert status == 200 and answer["content"] and answer["mode"] == "stub", answer
    status, answer = request(f"http://127.0.0.1:{port}/agent/chat", body)
    assert status == 200 and answer["content"] == "stand-in answer to: test", answer


def test_ready_is_false_when_the_database_is_unreachable(serve):
    llm = serve("ledgermind_backend.llm_stub")
    port = serve("ledgermind_backend.service", DATABASE_URL=f"postgresql://nobody:x@127.0.0.1:{free_port()}/none",
                 LLM_BASE_URL=f"http://127.0.0.1:{llm}")
    status, body = request(f"http://127.0.0.1:{port}/ready")
    assert status == 503 and body["db_ok"] is False and body["llm_ok"] is True
    assert "OperationalError" in body["db_error"]


def test_fault_injection_breaks_chat(serve, db_url):
    port = serve("ledgermind_backend.service", DATABASE_URL=db_url, LEDGERMIND_FAULT="chat")
    status, body = request(f"http://127.0.0.1:{port}/agent/chat", {"messages": [{"role": "user", "content": "x"}]},
                           {"x-test-mode": "stub"})
    assert status == 500 and "fault injected" in body["error"]


def test_llm_health_script(serve):
    script = BACKEND / "scripts" / "llm-health.sh"
    llm = serve("ledgermind_backend.llm_stub")
    ok = subprocess.run([str(script)], env={**os.environ, "LLM_HEALTH_URL": f"http://127.0.0.1:{llm}/health"},
                        capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and ok.stdout.strip() == "LLM: healthy"
    sick = serve("ledgermind_backend.llm_stub", LLM_STUB_UNHEALTHY="1")
    bad = subprocess.run([str(script)], env={**os.environ, "LLM_HEALTH_URL": f"http://127.0.0.1:{sick}/health"},
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 1 and bad.stdout.startswith("LLM: unhealthy"), bad.stdout
    assert Path(script).stat().st_mode & 0o111
