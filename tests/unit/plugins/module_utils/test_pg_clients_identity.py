"""Pure helpers of module_utils/_pg_clients.py that bind archives to their database (issue 9): sidecar shape,
retention by identity and column type, descriptions."""
from __future__ import annotations

import json

import pytest

from ansible_collections.ledgermind.migrations.plugins.module_utils import _pg_clients as pc

PREFIX = "tokens"
NO_IDENTITY = "its sidecar records no database identity (written before identities were recorded)"
OURS = {"system_identifier": "7301", "database": "ledgermind", "database_oid": 16384, "database_uuid": None,
        "schema": "public", "table": "ml_features", "table_oid": 16390, "column": "tokens", "column_type": "text[]"}
JSONB = dict(OURS, column_type="jsonb", table_oid=16500)  # after the migration (and a restore: another oid)
OTHER = dict(OURS, database="lm_other", database_oid=16999)
WHOLE = dict(OURS, schema=None, table=None, table_oid=None, column=None, column_type=None)


def sidecar(identity):
    return {"sha256": "ab", "identity": identity}


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"sha256": "ab", "identity": OURS, "metadata": {"run_id": "r1"}, "size_bytes": 3, "schema": None}, None),
        ({}, None),
        (["a"], "it holds a JSON list, not an object"),
        ("text", "it holds a JSON str, not an object"),
        ({"sha256": 12}, "fields of the wrong type: sha256 is int"),
        ({"identity": "ledgermind", "metadata": [], "size_bytes": True},
         "fields of the wrong type: size_bytes is bool, identity is str, metadata is list"),
    ],
)
def test_sidecar_problem(data, problem):
    assert pc.sidecar_problem(data) == problem


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ('{"sha256": "', "cannot read sidecar {path}: Unterminated string"),
        (b"\xff\xfe garbage", "cannot read sidecar {path}: 'utf-8' codec can't decode"),
        ("[1, 2]", "sidecar {path} is not one pg_backup_archive writes: it holds a JSON list, not an object"),
        ('{"identity": 5}',
         "sidecar {path} is not one pg_backup_archive writes: fields of the wrong type: identity is int"),
    ],
)
def test_read_sidecar_names_the_file(tmp_path, content, says):
    path = tmp_path / "a.dump.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(pc.ClientError) as caught:
        pc.read_sidecar(str(path))
    assert str(caught.value).startswith(says.format(path=path))
    assert pc.sidecar_or_reason(str(path)) == str(caught.value)


def test_unreadable_sidecar_is_named(tmp_path):
    path = tmp_path / "a.dump.json"
    path.mkdir()  # not a file: open fails
    assert pc.sidecar_or_reason(str(path)).startswith(f"cannot read sidecar {path}: ")
    assert pc.sidecar_or_reason(str(tmp_path / "missing.json")) is None
    good = tmp_path / "b.dump.json"
    good.write_text(json.dumps(sidecar(OURS)))
    assert pc.sidecar_or_reason(str(good)) == sidecar(OURS)


def test_archives_newest_first():
    names = [f"{PREFIX}_20260101T000000Z.dump", f"{PREFIX}_20260103T000000Z.dir", f"{PREFIX}_20260101T000000Z-2.dump",
             f"{PREFIX}_20260103T000000Z.dir.json", f"{PREFIX}x_20260109T000000Z.dump", "notes.txt"]
    assert pc.archives_newest_first(names, PREFIX) == [
        f"{PREFIX}_20260103T000000Z.dir", f"{PREFIX}_20260101T000000Z-2.dump", f"{PREFIX}_20260101T000000Z.dump"]


@pytest.mark.parametrize(
    ("side", "reason"),
    [
        (sidecar(OURS), None),
        (sidecar(JSONB), None),  # the same table after the migration: its oid is not compared
        (sidecar(WHOLE), None),  # a whole-database archive of this database
        (None, "no sidecar records which database it is of"),
        ("cannot read sidecar /b/x.dump.json: Expecting value", "cannot read sidecar /b/x.dump.json: Expecting value"),
        ({"sha256": "ab"}, NO_IDENTITY),
        ({"sha256": "ab", "identity": {}}, NO_IDENTITY),
        (sidecar(OTHER), "another database or table: database lm_other (recorded) vs ledgermind (target); "
                         "database_oid 16999 (recorded) vs 16384 (target)"),
        (sidecar(dict(OURS, table="other")),
         "another database or table: table other (recorded) vs ml_features (target)"),
        (sidecar(dict(OURS, system_identifier="9999")),
         "another database or table: system_identifier 9999 (recorded) vs 7301 (target)"),
    ],
)
def test_retention_candidate(side, reason):
    assert pc.retention_candidate(side, OURS) == reason


def a(n):
    return f"{PREFIX}_2026010{n}T000000Z.dump"


@pytest.mark.parametrize(
    ("archives", "current", "keep", "expired", "kept_last_of_type", "skipped"),
    [
        # Plain: newest `keep` of ours survive.
        ([(a(4), sidecar(OURS)), (a(3), sidecar(OURS)), (a(2), sidecar(OURS))], OURS, 2, [a(2)], [], []),
        # keep 0 deletes nothing, and judges nothing.
        ([(a(4), sidecar(OURS)), (a(3), sidecar(OURS))], OURS, 0, [], [], []),
        # Another database's archives are never deleted, nor counted, whatever the prefix.
        ([(a(5), sidecar(OTHER)), (a(4), sidecar(OURS)), (a(3), sidecar(OTHER)), (a(2), sidecar(OURS))], OURS, 1,
         [a(2)], [], [a(5), a(3)]),
        # The last text[] archive survives any number of jsonb backups; older jsonb ones go.
        ([(a(6), sidecar(JSONB)), (a(5), sidecar(JSONB)), (a(4), sidecar(JSONB)), (a(3), sidecar(OURS)),
          (a(2), sidecar(OURS))], JSONB, 1, [a(5), a(4), a(2)], [a(3)], []),
        # ... also when it is within keep (then it is simply kept).
        ([(a(6), sidecar(JSONB)), (a(5), sidecar(OURS))], JSONB, 2, [], [], []),
        # No sidecar, an unreadable one, no identity: left alone.
        ([(a(6), sidecar(OURS)), (a(5), None), (a(4), "cannot read sidecar x: bad"), (a(3), {"sha256": "ab"}),
          (a(2), sidecar(OURS))], OURS, 1, [a(2)], [], [a(5), a(4), a(3)]),
        # Whole-database archives (no column type) are ours and never "last of their type".
        ([(a(6), sidecar(WHOLE)), (a(5), sidecar(WHOLE))], WHOLE, 1, [a(5)], [], []),
    ],
)
def test_plan_retention(archives, current, keep, expired, kept_last_of_type, skipped):
    plan = pc.plan_retention(archives, current, keep)
    assert plan.expired == expired
    assert plan.kept_last_of_type == kept_last_of_type
    assert [name for name, _why in plan.skipped] == skipped


@pytest.mark.parametrize(
    ("identity", "text"),
    [
        (OURS, "database ledgermind (oid 16384) on system 7301, table public.ml_features"),
        (WHOLE, "database ledgermind (oid 16384) on system 7301, the whole database"),
        (dict(OTHER, system_identifier=None), "database lm_other (oid 16999) on system unknown system, "
                                              "table public.ml_features"),
        (None, "no recorded identity"),
    ],
)
def test_describe(identity, text):
    assert pc.describe(identity) == text
