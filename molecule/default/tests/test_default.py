"""The world after migrate_tokens.yml (twice), then after rollback_tokens.yml (side_effect).

Verify runs twice, once after each; every test checks what its phase must show (world.rolled_back()), so that
none is skipped in either run."""
from __future__ import annotations

import stat
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "resources"))
import world  # noqa: E402

ROLLED_BACK = world.rolled_back()


def test_tokens_column_type_and_revision_are_the_phases():
    if ROLLED_BACK:
        assert world.column_type() == "text[]"
        assert world.revision() == "20251109_add_user_name_picture"
    else:
        assert world.column_type() == "jsonb"
        assert world.revision() == "502d44cd70ab"


def test_converted_online_without_leftovers():
    # This scenario runs the online conversion both ways (ledgermind_conversion=online).
    assert world.tokens_is_last_column()
    assert world.online_leftovers() == []


def test_gin_index_with_jsonb_ops_only_while_migrated():
    definition = world.index_definition()
    if ROLLED_BACK:
        assert definition is None, definition
    else:
        assert definition is not None and "USING gin (tokens)" in definition, definition


def test_content_is_unchanged():
    assert world.fingerprint() == world.expected()["fingerprint"]


def test_backup_is_private(host):
    dumps = sorted((world.EPHEMERAL / "backups").glob("*.dump"))
    assert dumps, "the migrate took no backup"
    if not ROLLED_BACK:
        assert len(dumps) == 1, dumps  # the idempotence run took no second backup
    for dump in dumps:
        assert host.file(str(dump)).mode == 0o600
        assert stat.S_IMODE(dump.with_name(dump.name + ".json").stat().st_mode) == 0o600


def test_container_runs_the_phases_image(host):
    container = world.backend_container(host)
    assert container["State"]["Running"] and not container["State"]["Restarting"]
    assert container["HostConfig"]["NetworkMode"] == "host"
    if ROLLED_BACK:
        assert container["Image"] == world.expected()["previous_image_id"]
        assert container["Config"]["Labels"]["org.ledgermind.tokens-model"] == "text-array"
    else:
        assert container["Image"] == world.image_id(host, "ledgermind-backend:json")
        assert container["Config"]["Labels"]["org.ledgermind.tokens-model"] == "json"
        assert container["Image"] != world.expected()["previous_image_id"]


def test_ready_answers_with_the_phases_model():
    status, body = world.get_json("/ready")
    assert status == 200 and body["ok"] and body["db_ok"] and body["llm_ok"], body
    if ROLLED_BACK:
        assert body["model"] == "text-array" and body["tokens_type"] == "_text", body
    else:
        assert body["model"] == "json" and body["tokens_type"] == "jsonb", body
