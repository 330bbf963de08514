"""HTTP service of the stand-in backend: the endpoints the runbook's smoke tests call.

Standard library plus psycopg2 only (the container is Debian's python3 and python3-psycopg2):

* ``GET /ready`` -> ``{"ok", "db_ok", "llm_ok", ...}``; ``db_ok`` really queries PostgreSQL and is
  false when the database is unreachable or ``ml_features.tokens`` does not have the type this build's
  model expects (``jsonb`` for the JSON model, ``text[]`` for the previous one). 200 when ok, else 503.
* ``POST /agent/chat`` with ``x-test-mode: stub`` answers without any LLM, after reading a few tokens
  the way the deployed model does (so a model/schema mismatch fails here too); without the header it
  forwards to the LLM stand-in.

Environment: ``DATABASE_URL`` (libpq URI), ``BACKEND_PORT`` (18080), ``BACKEND_HOST`` (127.0.0.1),
``LLM_BASE_URL`` (http://127.0.0.1:18081), ``LEDGERMIND_TOKENS_MODEL`` (``json`` or ``text-array``,
baked into the image), ``LEDGERMIND_FAULT`` (``chat`` makes /agent/chat fail: for rollback drills;
``crash-once`` kills the process on the first /agent/chat of the container's life, a marker in /tmp keeping the
restarted process alive: a crash that a restart policy and a retry would hide).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ledgermind_backend import __version__

# LEDGERMIND_FAULT=crash-once: written before the crash, so the process the restart policy brings back lives.
CRASH_MARKER = "/tmp/ledgermind-crashed-once"
# udt_name the column must have for each model: jsonb for the JSON model, _text (text[]) before it.
EXPECTED_UDT = {"json": "jsonb", "text-array": "_text"}
# The query each model runs to find features by token: it fails on the other model's column type.
TOKEN_QUERY = {
    "json": "SELECT txn_id, tokens FROM ml_features WHERE tokens @> %s::jsonb ORDER BY txn_id LIMIT 3",
    "text-array": "SELECT txn_id, tokens FROM ml_features WHERE %s = ANY(tokens) ORDER BY txn_id LIMIT 3",
}
TYPE_SQL = (
    "SELECT t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
    " WHERE a.attrelid = to_regclass('ml_features') AND a.attname = 'tokens' AND NOT a.attisdropped"
)


def model() -> str:
    return os.environ.get("LEDGERMIND_TOKENS_MODEL", "json")


def _connect() -> Any:
    import psycopg2  # imported late: the unit tests exercise the helpers without a driver

    url = os.environ.get("DATABASE_URL", "")
    if not url:
        raise RuntimeError("DATABASE_URL is not set")
    return psycopg2.connect(url, connect_timeout=3, application_name="ledgermind-backend",
                            options="-c statement_timeout=5000 -c lock_timeout=1000")


def check_db() -> dict[str, Any]:
    """db_ok, the column's type and why not ok. Never raises."""
    expected = EXPECTED_UDT.get(model())
    found = None
    try:
        conn = _connect()
        try:
            with conn.cursor() as cur:
                cur.execute(TYPE_SQL)
                row = cur.fetchone()
                found = row[0] if row else None
        finally:
            conn.close()
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", reported as text
        return {"db_ok": False, "tokens_type": None, "expected_tokens_type": expected,
                "db_error": "{}: {}".format(type(exc).__name__, str(exc).strip().splitlines()[0] if str(exc) else "")}
    ok = found is not None and found == expected
    result: dict[str, Any] = {"db_ok": ok, "tokens_type": found, "expected_tokens_type": expected}
    if not ok:
        result["db_error"] = (f"ml_features.tokens is {found or 'missing'}, model {model()!r} expects {expected}"
                              if expected else f"unknown model {model()!r}")
    return result


def _fetch_json(url: str, payload: dict[str, Any] | None = None, timeout: float = 2.0) -> tuple[int, Any]:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - configured URL
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None


def check_llm() -> dict[str, Any]:
    base = os.environ.get("LLM_BASE_URL", "http://127.0.0.1:18081").rstrip("/")
    try:
        status, body = _fetch_json(base + "/health")
    except Exception as exc:  # noqa: BLE001
        return {"llm_ok": False, "llm_error": f"{base}/health: {exc}"}
    ok = status == 200 and isinstance(body, dict) and body.get("status") == "healthy"
    return {"llm_ok": ok} if ok else {"llm_ok": False, "llm_error": f"{base}/health answered {status}: {body}"}


def ready() -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {"model": model(), "version": __version__,
                            "revision": os.environ.get("LEDGERMIND_GIT_REVISION", "unknown")}
    body.update(check_db())
    body.update(check_llm())
    body["ok"] = bool(body["db_ok"] and body["llm_ok"])
    return (200 if body["ok"] else 503), body


def chat(payload: Any, stub: bool) -> tuple[int, dict[str, Any]]:
    if os.environ.get("LEDGERMIND_FAULT", "") == "chat":
        return 500, {"error": "fault injected: LEDGERMIND_FAULT=chat"}
    if os.environ.get("LEDGERMIND_FAULT", "") == "crash-once" and not os.path.exists(CRASH_MARKER):
        with open(CRASH_MARKER, "w", encoding="utf-8") as marker:
            marker.write("crashed once\n")
        os._exit(70)
    messages = payload.get("messages") if isinstance(payload, dict) else None
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        return 400, {"error": "expected {\"messages\": [{\"role\": ..., \"content\": ...}]}"}
    question = str(messages[-1].get("content", ""))
    if not stub:
        base = os.environ.get("LLM_BASE_URL", "http://127.0.0.1:18081").rstrip("/")
        try:
            status, body = _fetch_json(base + "/v1/chat", {"messages": messages}, timeout=10)
        except Exception as exc:  # noqa: BLE001
            return 502, {"error": f"LLM unreachable: {exc}"}
        if status != 200 or not isinstance(body, dict):
            return 502, {"error": f"LLM answered {status}"}
        return 200, {"content": body.get("content", ""), "mode": "llm"}
    # Stub mode: no LLM, but the features are read the way this model reads them.
    probe = json.dumps(["starbucks"]) if model() == "json" else "starbucks"
    try:
        conn = _connect()
        try:
            with conn.cursor() as cur:
                cur.execute(TOKEN_QUERY[model()], (probe,))
                rows = cur.fetchall()
        finally:
            conn.close()
    except Exception as exc:  # noqa: BLE001
        return 500, {"error": f"feature lookup failed: {str(exc).strip().splitlines()[0] if str(exc) else exc}"}
    return 200, {"content": f"stub reply to {question!r}: {len(rows)} matching features", "mode": "stub",
                 "model": model()}


class Handler(BaseHTTPRequestHandler):
    server_version = "ledgermind-backend/" + __version__

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.split("?")[0] in ("/ready", "/health"):
            self._send(*ready())
        else:
            self._send(404, {"error": f"no route {self.path}"})

    def do_POST(self) -> None:  # noqa: N802
        if self.path.split("?")[0] != "/agent/chat":
            self._send(404, {"error": f"no route {self.path}"})
            return
        length = int(self.headers.get("content-length") or 0)
        try:
            payload = json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            self._send(400, {"error": "body is not JSON"})
            return
        self._send(*chat(payload, stub=self.headers.get("x-test-mode", "").lower() == "stub"))

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def serve(host: str, port: int) -> None:
    server = ThreadingHTTPServer((host, port), Handler)
    # PID 1 in a container gets no default SIGTERM handling: exit promptly on `docker stop`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"ledgermind-backend {__version__} model={model()} on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def main() -> None:
    serve(os.environ.get("BACKEND_HOST", "127.0.0.1"), int(os.environ.get("BACKEND_PORT", "18080")))


if __name__ == "__main__":
    main()
