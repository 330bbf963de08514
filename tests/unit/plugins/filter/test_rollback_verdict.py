"""The rollback's verdict from the state after it and the proof, including the contradictions: a downgrade that
says it worked on a table still jsonb, a passing downgrade with a differing content, a restore replacing a failed
downgrade."""
from __future__ import annotations

import typing as t

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.ledgermind.migrations.plugins.filter.rollback import rollback_verdict, writes_discarded

BEFORE = "20251109_add_user_name_picture"
GOOD_STATE = {"revision": BEFORE, "column_type": "text[]", "index_exists": False}
PROOF = {"method": "untouched_rows", "rows_compared": 1990, "rows_written": 10, "matches": True,
         "fingerprint_untouched_before": "a", "fingerprint_untouched_after": "a"}


def inputs(**changes: t.Any) -> dict[str, t.Any]:
    base = {"state": GOOD_STATE, "proof": PROOF, "revision": BEFORE, "expected_type": "text[]",
            "index": "ix_ml_features_tokens_gin", "situation": {"name": "migrated", "note": "n", "description": "d"},
            "downgrade": {"output": ["Running downgrade 502d44cd70ab -> " + BEFORE], "stamped": ""},
            "downgrade_failed": False, "restore_requested": False,
            "archive": {"path": "/b/x.dump", "source": "run r1", "table_writes_at_start":
                        {"inserted": 1, "updated": 2, "deleted": 3}},
            "writes_now": {"inserted": 5, "updated": 2, "deleted": 4}, "baseline_source": "this run's pre-flight"}
    base.update(changes)
    return base


def test_a_proven_rollback_passes() -> None:
    report = rollback_verdict(inputs())
    assert report["ok"] is True and report["summary"].startswith("Rolled back to " + BEFORE)
    assert "against this run's pre-flight; 1990 rows compared, 10 written" in report["checks"][3]["evidence"]
    assert report["writes_discarded"] is None and report["restored_from"] == ""


@pytest.mark.parametrize(("changes", "failing"), [
    # The downgrade's output says it ran; the table says otherwise.
    ({"state": dict(GOOD_STATE, column_type="jsonb")}, "Column type is text[] again"),
    ({"state": dict(GOOD_STATE, index_exists=True)}, "Index ix_ml_features_tokens_gin is gone"),
    ({"state": dict(GOOD_STATE, revision="502d44cd70ab")}, "Revision is " + BEFORE),
    ({"proof": dict(PROOF, matches=False)}, "Content is as before"),
    ({"proof": {}}, "Content is as before"),
])
def test_each_check_is_judged_from_the_database(changes: dict[str, t.Any], failing: str) -> None:
    report = rollback_verdict(inputs(**changes))
    assert report["ok"] is False
    assert [c["item"] for c in report["checks"] if not c["passed"]] == [next(
        c["item"] for c in report["checks"] if c["item"].startswith(failing))]
    assert f"{failing}" in report["summary"] and "= FAIL" in report["summary"]


def test_a_restore_replacing_a_failed_downgrade_says_so_and_counts_the_discarded_writes() -> None:
    report = rollback_verdict(inputs(downgrade={"msg": "rows jsonb cannot hold"}, downgrade_failed=True,
                                     restore_requested=True))
    assert report["ok"] is True and report["downgrade_replaced_by_restore"] is True
    assert report["downgrade_error"] == "rows jsonb cannot hold" and report["writes_discarded"] == 5
    assert "restored from /b/x.dump (run r1; 5 row writes since the migrate run started were discarded" in \
        report["summary"]
    assert report["checks"][0]["evidence"].startswith("the downgrade failed (rows jsonb cannot hold)")
    assert "against the archive /b/x.dump" in report["checks"][3]["evidence"]


def test_a_half_applied_rollback_names_it() -> None:
    report = rollback_verdict(inputs(situation={"name": "half_applied", "note": "index missing", "description": "d"},
                                     downgrade={"output": [], "stamped": "502d44cd70ab"}))
    assert report["summary"].startswith("Half-applied migration (index missing) rolled back to")
    assert report["checks"][0]["evidence"] == "stamped at 502d44cd70ab first (half-applied); already at " + BEFORE


def test_unknown_writes_are_said_unknown() -> None:
    assert writes_discarded({}, {"inserted": 1, "updated": 0, "deleted": 0}) is None
    report = rollback_verdict(inputs(restore_requested=True, writes_now={}))
    assert "how many is unknown" in report["summary"]


def test_wrong_inputs() -> None:
    with pytest.raises(AnsibleFilterError, match="missing state"):
        rollback_verdict({})
