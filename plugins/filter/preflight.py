# Copyright: (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pre-flight's findings and refusals, judged from what its read-only modules returned."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.ledgermind.migrations.plugins.filter.run_state import migration_situation

REQUIRED = ("column_type", "integrity", "activity", "alembic", "settings")
SETTINGS = ("schema", "table", "column", "type_before", "type_after", "column_type_before", "column_type_after",
            "revision", "allowed_current", "max_transaction_seconds")


def _mapping(value: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise AnsibleFilterError(f"preflight_findings: {name} must be a mapping (the module's registered result)")
    return value


def refusals(s: Mapping[str, Any], udt: str, formatted: str, current: str | None, integrity: Mapping[str, Any],
             activity: Mapping[str, Any], situation: Mapping[str, Any], pending: bool) -> list[str]:
    """What makes the migration unsafe, each in words an operator can act on. Empty: it may go ahead."""
    found = []
    type_pending = udt == s["type_before"]
    allowed = list(s["allowed_current"]) + [s["revision"]]
    if udt not in (s["type_before"], s["type_after"]):
        found.append(f"column {s['column']} is {formatted or udt}, neither {s['type_before']} "
                     f"nor {s['type_after']}")
    violations = int(integrity.get("roundtrip_violations") or 0)
    if type_pending and violations > 0:
        keys = (integrity.get("offending_keys") or {}).get("roundtrip_violations") or []
        found.append(f"{violations} row(s) would not survive text[] -> jsonb -> text[] unchanged (multi-dimensional "
                     f"arrays or lower bound other than 1), {s['table']} keys: {', '.join(str(k) for k in keys)}")
    if current not in allowed:
        found.append(f"Alembic is at revision {current}, expected {' or '.join(s['allowed_current'])} (or "
                     f"{s['revision']} when already migrated)")
    if pending and activity.get("long_running"):
        found.append(f"sessions have held a transaction on {s['table']} open for more than "
                     f"{s['max_transaction_seconds']}s, so the ALTER would queue every query behind them: "
                     + "; ".join(activity.get("summary") or []))
    if situation.get("name") == "unknown" and current in allowed:
        found.append(f"the table is in no state this migration knows: {situation.get('description')}")
    return found


def preflight_findings(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """``inputs``: ``column_type`` (pg_column_type), ``integrity`` (pg_jsonb_integrity), ``activity``
    (pg_table_activity), ``alembic`` (alembic_migrate in check mode), ``state`` (the run record's state at the
    start, for the index) and ``settings`` (the role's: schema, table, column, type_before/after as udt names,
    column_type_before/after as format_type spells them, revision, allowed_current, max_transaction_seconds)."""
    inputs = _mapping(inputs, "the input")
    missing = [k for k in REQUIRED if k not in inputs]
    if missing:
        raise AnsibleFilterError(f"preflight_findings: missing {', '.join(missing)}")
    s = _mapping(inputs["settings"], "settings")
    absent = [k for k in SETTINGS if k not in s]
    if absent:
        raise AnsibleFilterError(f"preflight_findings: settings lack {', '.join(absent)}")
    column = _mapping(inputs["column_type"], "column_type")
    integrity = _mapping(inputs["integrity"], "integrity")
    activity = _mapping(inputs["activity"], "activity")
    alembic = _mapping(inputs["alembic"], "alembic")
    udt = str(column.get("udt_name") or "")
    current = alembic.get("current_before")
    state = dict(inputs.get("state") or {}, revision=current, column_type=column.get("formatted_type"))
    situation = migration_situation(state, s["allowed_current"][0], s["revision"], s["column_type_before"],
                                    s["column_type_after"])
    pending = udt == s["type_before"] or current != s["revision"] or situation["name"] != "migrated"
    return {
        "table": f"{s['schema']}.{s['table']}", "column": s["column"],
        "data_type": column.get("data_type"), "udt_name": udt, "column_type": column.get("formatted_type"),
        "revision": current, "situation": situation, "pending": pending,
        "pending_revisions": alembic.get("pending") or [], "sql": alembic.get("sql") or "",
        "total": integrity.get("total"), "nulls": integrity.get("nulls"), "empty": integrity.get("empty"),
        "invalid_types": integrity.get("invalid_types"), "roundtrip_violations": integrity.get("roundtrip_violations"),
        "fingerprint": integrity.get("fingerprint"),
        # The proof under live writes compares later scans with these, over the rows nobody wrote meanwhile.
        "fingerprint_sums": integrity.get("fingerprint_sums"), "snapshot": integrity.get("snapshot"),
        "sample": integrity.get("sample") or [], "lock_sessions": activity.get("summary") or [],
        "refusals": refusals(s, udt, str(column.get("formatted_type") or ""), current, integrity, activity, situation,
                             pending),
    }


class FilterModule:
    """preflight_findings."""

    def filters(self) -> dict[str, Any]:
        return {"preflight_findings": preflight_findings}
