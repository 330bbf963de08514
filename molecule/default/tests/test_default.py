"""The world after migrate_tokens.yml (twice), then after rollback_tokens.yml (side_effect)."""
from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "resources"))
import world  # noqa: E402

migrated = pytest.mark.skipif(world.rolled_back(), reason="after the rollback")
after_rollback = pytest.mark.skipif(not world.rolled_back(), reason="before the rollback")


@migrated
def test_tokens_column_is_jsonb_at_the_new_revision():
    assert world.column_type() == "jsonb"
    assert world.revision() == "502d44cd70ab"


def test_converted_online_without_leftovers():
    # This scenario runs the online conversion both ways (ledgermind_conversion=online).
    assert world.tokens_is_last_column()
    assert world.online_leftovers() == []


@migrated
def test_gin_index_with_jsonb_ops():
    definition = world.index_definition()
    assert definition is not None and "USING gin (tokens)" in definition, definition


def test_content_is_unchanged():
    assert world.fingerprint() == world.expected()["fingerprint"]


@migrated
def test_backup_is_private(host):
    dumps = sorted((world.EPHEMERAL / "backups").glob("*.dump"))
    assert len(dumps) == 1, dumps  # the idempotence run took no second backup
    assert host.file(str(dumps[0])).mode == 0o600
    assert stat.S_IMODE(dumps[0].with_name(dumps[0].name + ".json").stat().st_mode) == 0o600


@migrated
def test_container_runs_the_new_image(host):
    container = world.backend_container(host)
    assert container["State"]["Running"] and not container["State"]["Restarting"]
    assert container["Image"] == world.image_id(host, "ledgermind-backend:json")
    assert container["Config"]["Labels"]["org.ledgermind.tokens-model"] == "json"
    assert container["Image"] != world.expected()["previous_image_id"]
    assert container["HostConfig"]["NetworkMode"] == "host"


@migrated
def test_ready_is_true():
    status, body = world.get_json("/ready")
    assert status == 200 and body["ok"] and body["db_ok"] and body["llm_ok"], body
    assert body["model"] == "json" and body["tokens_type"] == "jsonb"


@after_rollback
def test_tokens_column_is_text_array_again():
    assert world.column_type() == "text[]"
    assert world.revision() == "20251109_add_user_name_picture"
    assert world.index_definition() is None


@after_rollback
def test_previous_image_runs_again_and_is_ready(host):
    container = world.backend_container(host)
    assert container["State"]["Running"] and not container["State"]["Restarting"]
    assert container["Image"] == world.expected()["previous_image_id"]
    assert container["Config"]["Labels"]["org.ledgermind.tokens-model"] == "text-array"
    status, body = world.get_json("/ready")
    assert status == 200 and body["ok"] and body["model"] == "text-array" and body["tokens_type"] == "_text", body
