"""A stand-in for the LLM the backend talks to: ``GET /health`` and ``POST /v1/chat``, no model at all.

Environment: ``LLM_PORT`` (18081), ``LLM_HOST`` (127.0.0.1), ``LLM_STUB_UNHEALTHY=1`` to answer 503
(for testing the health checks). Standard library only, so it runs from the bare base image.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Handler(BaseHTTPRequestHandler):
    server_version = "ledgermind-llm-stub/1"

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        if self.path != "/health":
            self._send(404, {"error": "no route"})
        elif os.environ.get("LLM_STUB_UNHEALTHY") == "1":
            self._send(503, {"status": "unhealthy"})
        else:
            self._send(200, {"status": "healthy", "model": "stand-in"})

    def do_POST(self) -> None:  # noqa: N802
        if self.path != "/v1/chat":
            self._send(404, {"error": "no route"})
            return
        length = int(self.headers.get("content-length") or 0)
        try:
            messages = json.loads(self.rfile.read(length) or b"{}").get("messages") or [{}]
        except (ValueError, AttributeError):
            self._send(400, {"error": "body is not JSON"})
            return
        self._send(200, {"content": "stand-in answer to: {}".format(messages[-1].get("content", ""))})

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def main() -> None:
    host, port = os.environ.get("LLM_HOST", "127.0.0.1"), int(os.environ.get("LLM_PORT", "18081"))
    server = ThreadingHTTPServer((host, port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"llm stand-in on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
