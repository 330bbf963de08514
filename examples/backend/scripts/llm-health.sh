#!/bin/sh
# The runbook's LLM health check: exit 0 and print "LLM: healthy" when the LLM answers its health URL.
# LLM_HEALTH_URL (default http://127.0.0.1:${LLM_PORT:-18081}/health) points it at the LLM or its stand-in.
url=${LLM_HEALTH_URL:-http://127.0.0.1:${LLM_PORT:-18081}/health}
exec python3 - "$url" <<'PY'
import json, sys, urllib.request
url = sys.argv[1]
try:
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.loads(r.read() or b"null")
        status = r.status
except Exception as exc:
    print("LLM: unhealthy ({}: {})".format(url, exc))
    sys.exit(1)
if status == 200 and isinstance(body, dict) and body.get("status") == "healthy":
    print("LLM: healthy")
    sys.exit(0)
print("LLM: unhealthy ({} answered {}: {})".format(url, status, body))
sys.exit(1)
PY
