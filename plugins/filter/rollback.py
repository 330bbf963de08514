# Copyright: (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollback's verdict, judged from the database's state after it and the content proof, never from the
downgrade's exit."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

REQUIRED = ("state", "revision", "expected_type", "index", "situation")


def _writes(counts: Any) -> int | None:
    if not isinstance(counts, Mapping) or "inserted" not in counts:
        return None
    return int(counts["inserted"]) + int(counts["updated"]) + int(counts["deleted"])


def writes_discarded(then: Any, now: Any) -> int | None:
    """Row writes between two pg_stat_user_tables readings (what a restore discards); None when unknown."""
    first, second = _writes(then), _writes(now)
    return None if first is None or second is None else second - first


def _proof_evidence(proof: Mapping[str, Any], against: str) -> str:
    if not proof:
        return "no proof"
    return ("proof: {} against {}; {} rows compared, {} written by the application meanwhile; untouched before={}, "
            "after={}{}").format(proof.get("method"), against, proof.get("rows_compared"), proof.get("rows_written"),
                                 proof.get("fingerprint_untouched_before"), proof.get("fingerprint_untouched_after"),
                                 "" if proof.get("matches") else " - CONTENT DIFFERS")


def _revision_evidence(inputs: Mapping[str, Any], state: Mapping[str, Any]) -> str:
    downgrade = inputs.get("downgrade") or {}
    if inputs.get("downgrade_failed"):
        return ("the downgrade failed ({}); restored from the archive instead and Alembic stamped at {}").format(
            downgrade.get("msg") or "?", inputs["revision"])
    stamped = f"stamped at {downgrade['stamped']} first (half-applied); " if downgrade.get("stamped") else ""
    return stamped + ("; ".join(str(line) for line in downgrade.get("output") or [])
                      or f"already at {state.get('revision')}")


def rollback_verdict(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """``inputs``: ``state`` (pg_run_record's state after), ``proof`` (pg_jsonb_integrity's), ``revision``,
    ``expected_type``, ``index``, ``situation`` (migration_situation before), ``downgrade`` (its result),
    ``downgrade_failed``, ``restore_requested``, ``archive`` (path, source, table_writes_at_start), ``writes_now``
    and ``baseline_source``. Returns the rollback report: ``ok``, ``checks``, ``summary`` and what was restored."""
    if not isinstance(inputs, Mapping):
        raise AnsibleFilterError("rollback_verdict expects a mapping of the rollback's results")
    missing = [k for k in REQUIRED if k not in inputs]
    if missing:
        raise AnsibleFilterError(f"rollback_verdict: missing {', '.join(missing)}")
    state = inputs["state"] or {}
    proof = inputs.get("proof") or {}
    situation = inputs["situation"] or {}
    archive = inputs.get("archive") or {}
    restore = bool(inputs.get("restore_requested"))
    replaced = bool(inputs.get("downgrade_failed")) and restore
    against = f"the archive {archive.get('path')}" if restore else (inputs.get("baseline_source") or "the baseline")
    checks = [
        {"item": f"Revision is {inputs['revision']}", "passed": state.get("revision") == inputs["revision"],
         "evidence": _revision_evidence(inputs, state)},
        {"item": f"Column type is {inputs['expected_type']} again",
         "passed": state.get("column_type") == inputs["expected_type"],
         "evidence": f"column {state.get('column_type')}"},
        {"item": f"Index {inputs['index']} is gone", "passed": not state.get("index_exists"),
         "evidence": f"exists={bool(state.get('index_exists'))}"},
        {"item": "Content is as before the rollback (rows nobody wrote meanwhile compared)",
         "passed": bool(proof.get("matches")), "evidence": _proof_evidence(proof, against)},
    ]
    discarded = writes_discarded(archive.get("table_writes_at_start"), inputs.get("writes_now")) if restore else None
    head = (f"Half-applied migration ({situation.get('note')}) rolled back to "
            if situation.get("name") == "half_applied" else "Rolled back to ") + str(inputs["revision"])
    if restore:
        lost = (f"{discarded} row writes since the migrate run started were discarded, per pg_stat_user_tables"
                if discarded is not None else "writes since the backup were discarded; how many is unknown")
        head += f" and restored from {archive.get('path')} ({archive.get('source')}; {lost})"
    summary = head + ": " + "; ".join(f"{c['item']} = {'pass' if c['passed'] else 'FAIL'}" for c in checks)
    return {
        "ok": all(c["passed"] for c in checks), "checks": checks, "situation": situation.get("description"),
        "proof": proof, "restore_requested": restore, "downgrade_replaced_by_restore": replaced,
        "downgrade_error": (inputs.get("downgrade") or {}).get("msg") or "" if inputs.get("downgrade_failed") else "",
        "restored_from": archive.get("path") if restore else "", "archive_source": archive.get("source") or "",
        "writes_discarded": discarded, "summary": summary,
    }


class FilterModule:
    """rollback_verdict."""

    def filters(self) -> dict[str, Any]:
        return {"rollback_verdict": rollback_verdict}
