"""After a migration whose smoke test failed: the automatic rollback left everything as it was."""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "resources"))
import world  # noqa: E402


def test_data_is_exactly_as_before():
    assert world.column_type() == "text[]"
    assert world.revision() == "20251109_add_user_name_picture"
    assert world.index_definition() is None
    assert world.fingerprint() == world.expected()["fingerprint"]


def test_previous_backend_runs_again(host):
    container = world.backend_container(host)
    assert container["State"]["Running"] and not container["State"]["Restarting"]
    assert container["Image"] == world.expected()["previous_image_id"]
    assert container["Config"]["Labels"]["org.ledgermind.tokens-model"] == "text-array"
    status, body = world.get_json("/ready")
    assert status == 200 and body["ok"] and body["model"] == "text-array", body


def test_signoff_names_the_failed_smoke_test_and_the_rollback():
    reports = sorted((world.EPHEMERAL / "reports").glob("tokens_migrate_*.json"))
    report = json.loads(reports[-1].read_text())
    assert report["verdict"] == "FAILED"
    items = {i["item"]: i for i in report["items"]}
    assert items["Backend deployed with JSON model"]["status"] == "pass"
    smoke = items["Smoke tests passed (stub mode, health, LLM)"]
    assert smoke["status"] == "fail" and "chat (stub mode) | FAIL" in smoke["evidence"], smoke
    assert report["rollback"]["ok"] is True
    assert "backend put back" in report["rollback"]["summary"]
