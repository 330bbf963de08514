"""The pre-flight's verdicts: pending or not, and every refusal, from its modules' results."""
from __future__ import annotations

import typing as t

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.ledgermind.migrations.plugins.filter.preflight import preflight_findings

BEFORE, AFTER = "20251109_add_user_name_picture", "502d44cd70ab"
SETTINGS = {"schema": "public", "table": "ml_features", "column": "tokens", "type_before": "_text",
            "type_after": "jsonb", "column_type_before": "text[]", "column_type_after": "jsonb", "revision": AFTER,
            "allowed_current": [BEFORE], "max_transaction_seconds": 30}


def inputs(udt: str = "_text", revision: str | None = BEFORE, index: bool | None = None, violations: int = 0,
           long_running: t.Sequence[str] = ()) -> dict[str, t.Any]:
    formatted = {"_text": "text[]", "jsonb": "jsonb", "int4": "integer"}[udt]
    return {
        "column_type": {"udt_name": udt, "formatted_type": formatted, "data_type": "ARRAY"},
        "integrity": {"total": 10, "nulls": 1, "empty": 2, "roundtrip_violations": violations,
                      "offending_keys": {"roundtrip_violations": [3, 4][:violations]}, "fingerprint": "f",
                      "fingerprint_sums": {"a": 1}, "snapshot": "s", "sample": []},
        "activity": {"long_running": list(long_running), "summary": [f"pid {p}" for p in long_running]},
        "alembic": {"current_before": revision, "pending": [AFTER] if revision != AFTER else []},
        "state": {"index_exists": index is not None, "index_valid": bool(index)},
        "settings": SETTINGS,
    }


def test_a_clean_pre_migration_table_is_pending_without_refusals() -> None:
    found = preflight_findings(inputs())
    assert found["pending"] is True and found["refusals"] == [] and found["situation"]["name"] == "pre_migration"
    assert found["table"] == "public.ml_features" and found["total"] == 10


def test_a_migrated_table_is_not_pending() -> None:
    found = preflight_findings(inputs("jsonb", AFTER, True))
    assert found["pending"] is False and found["refusals"] == []


def test_a_half_applied_table_is_pending_and_allowed() -> None:
    found = preflight_findings(inputs("jsonb", BEFORE, False))
    assert found["pending"] is True and found["situation"]["name"] == "half_applied" and found["refusals"] == []


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"udt": "int4"}, "column tokens is integer, neither _text nor jsonb"),
    ({"violations": 2}, "2 row(s) would not survive text[] -> jsonb -> text[] unchanged"),
    ({"revision": "0001_other"}, f"Alembic is at revision 0001_other, expected {BEFORE}"),
    ({"long_running": ["42"]}, "open for more than 30s, so the ALTER would queue every query behind them: pid 42"),
])
def test_each_refusal_says_what_is_wrong(kwargs: dict[str, t.Any], words: str) -> None:
    found = preflight_findings(inputs(**kwargs))
    assert found["refusals"] and words in found["refusals"][0], found["refusals"]


def test_long_transactions_do_not_refuse_a_migration_with_nothing_to_do() -> None:
    assert preflight_findings(inputs("jsonb", AFTER, True, long_running=["42"]))["refusals"] == []


def test_round_trip_violations_matter_only_before_the_migration() -> None:
    assert preflight_findings(inputs("jsonb", AFTER, True, violations=2))["refusals"] == []


def test_a_contradiction_is_named_and_pending() -> None:
    # Alembic says migrated, the column says text[]: half rolled back; the migration has work to do again.
    found = preflight_findings(inputs("_text", AFTER))
    assert found["pending"] is True and found["situation"]["name"] == "half_rolled_back"


def test_a_state_no_revision_explains_is_refused() -> None:
    found = preflight_findings(inputs("int4", BEFORE))
    assert any("no state this migration knows" in r for r in found["refusals"]), found["refusals"]


@pytest.mark.parametrize(("bad", "words"), [
    ({}, "missing column_type"),
    (dict(inputs(), settings={"schema": "public"}), "settings lack"),
    (dict(inputs(), integrity="nope"), "integrity must be a mapping"),
])
def test_wrong_inputs(bad: dict[str, t.Any], words: str) -> None:
    with pytest.raises(AnsibleFilterError, match=words):
        preflight_findings(bad)
