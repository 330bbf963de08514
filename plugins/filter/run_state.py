# Copyright: (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a table stands between two revisions, judged from the database's state (not from a tool's exit).

A state is what ``pg_run_record`` and ``alembic_migrate`` read: ``revision`` (Alembic's version table),
``column_type`` (``text[]``, ``jsonb``), ``index_exists`` and ``index_valid``.
"""
from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

STATE_KEYS = ("revision", "column_type", "index_exists", "index_valid")


def describe_state(state: dict[str, Any]) -> str:
    """``column jsonb, index INVALID, Alembic at 20251109_x`` for messages and reports."""
    if not state:
        return "unknown state"
    index = ("missing" if not state.get("index_exists")
             else "valid" if state.get("index_valid") else "present but INVALID")
    return "column {}, index {}, Alembic at {}".format(state.get("column_type") or "missing", index,
                                                       state.get("revision") or "no revision")


def state_change(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Whether the schema changed between two states, and how (``changed``, ``differences``, ``description``)."""
    if not isinstance(before, dict) or not isinstance(after, dict):
        raise AnsibleFilterError("state_change expects two state dicts (revision, column_type, index_exists, ...)")
    differences = [f"{key}: {before.get(key)} -> {after.get(key)}" for key in STATE_KEYS
                   if key in before and key in after and before.get(key) != after.get(key)]
    return {"changed": bool(differences), "differences": differences,
            "description": ("changed: " + "; ".join(differences)) if differences
            else "unchanged (" + describe_state(after) + ")"}


def migration_situation(state: dict[str, Any], revision_before: str, revision_after: str,
                        type_before: str = "text[]", type_after: str = "jsonb") -> dict[str, Any]:
    """Name where the table stands on the way from ``revision_before`` to ``revision_after``.

    ``name`` is one of ``pre_migration`` (nothing applied), ``migrated`` (fully applied, index valid),
    ``half_applied`` (the column converted but Alembic not told, or the index missing or INVALID),
    ``half_rolled_back`` (the column back but Alembic still at the new revision), ``unknown``.
    """
    if not isinstance(state, dict):
        raise AnsibleFilterError("migration_situation expects a state dict (revision, column_type, index_exists, ...)")
    column, revision = state.get("column_type"), state.get("revision")
    index_ok = bool(state.get("index_exists")) and bool(state.get("index_valid"))
    if column == type_before and revision == revision_before:
        name = "pre_migration"
        note = f"nothing of {revision_after} is applied"
    elif column == type_after and revision == revision_after and index_ok:
        name = "migrated"
        note = f"{revision_after} is fully applied"
    elif column == type_after and revision in (revision_before, revision_after):
        name = "half_applied"
        note = (f"the column is already {type_after} but " + (
            f"Alembic is still at {revision_before}" if revision == revision_before else "the index is not valid")
            + f": an upgrade to {revision_after} stopped half-way")
    elif column == type_before and revision == revision_after:
        name = "half_rolled_back"
        note = f"the column is {type_before} again but Alembic is still at {revision_after}"
    else:
        name = "unknown"
        note = (f"neither before ({type_before} at {revision_before}) nor after ({type_after} at {revision_after}) "
                "the migration")
    return {"name": name, "note": note, "description": f"{name.replace('_', '-')}: {note} ({describe_state(state)})",
            "changed_from_before": name != "pre_migration"}


def sample_comparison(before: list[dict[str, Any]], after: list[dict[str, Any]],
                      skip_keys: list[Any] | None = None) -> dict[str, Any]:
    """Compare sample rows (``[{key, value}]``) read before and after, by value, skipping ``skip_keys``.

    ``passed`` needs at least one compared row and every compared row identical; rows written by the
    application meanwhile (``skip_keys``) are left out and counted.
    """
    if not isinstance(before, list) or not isinstance(after, list):
        raise AnsibleFilterError("sample_comparison expects two lists of {key, value} rows")
    skipped = {str(k) for k in (skip_keys or [])}
    after_by_key = {str(row.get("key")): row.get("value") for row in after}
    compared = [row for row in before if str(row.get("key")) not in skipped]
    missing = [row.get("key") for row in compared if str(row.get("key")) not in after_by_key]
    differing = [row.get("key") for row in compared
                 if str(row.get("key")) in after_by_key and after_by_key[str(row.get("key"))] != row.get("value")]
    identical = len(compared) - len(missing) - len(differing)
    text = f"{identical} of {len(compared)} sample rows identical"
    if len(before) != len(compared):
        text += f" ({len(before) - len(compared)} written by the application meanwhile, not compared)"
    if differing:
        text += "; differing keys: " + ", ".join(str(k) for k in differing)
    if missing:
        text += "; missing keys: " + ", ".join(str(k) for k in missing)
    if not compared:
        # Every sample row written by the application: their content is its own; the untouched-rows proof holds.
        text += ("; every sample row was written by the application meanwhile, so the content proof over the rows "
                 "nobody wrote stands for them" if before else "; nothing to compare")
    passed = identical == len(compared) if compared else bool(before)
    return {"passed": passed, "compared": len(compared),
            "identical": identical, "differing_keys": differing, "missing_keys": missing,
            "skipped": len(before) - len(compared), "description": text}


def state_after_failure(now: dict[str, Any], at_start: dict[str, Any], revision_before: str, revision_after: str,
                        type_before: str = "text[]", type_after: str = "jsonb") -> dict[str, Any]:
    """Where a failed run left the table: ``now`` is pg_run_record's result read after the failure (which may
    itself have failed: the database restarted, unreachable), ``at_start`` the state at the run's start.
    Returns ``read`` (bool), ``situation`` (migration_situation, or unknown with why) and ``change``
    (state_change from the start, or unknown)."""
    if not isinstance(now, dict):
        raise AnsibleFilterError("state_after_failure expects pg_run_record's registered result")
    state = now.get("state")
    if not isinstance(state, dict):
        why = now.get("msg") or "?"
        return {"read": False,
                "situation": {"name": "unknown", "note": "its state could not be read", "changed_from_before": None,
                              "description": f"of unknown state (it could not be read: {why}); check the column type,"
                                             " the index and alembic_version before anything else"},
                "change": {"changed": False, "differences": [], "description": "unknown"}}
    return {"read": True,
            "situation": migration_situation(state, revision_before, revision_after, type_before, type_after),
            "change": state_change(at_start or {}, state)}


class FilterModule:
    """state_change, migration_situation, state_after_failure and sample_comparison."""

    def filters(self) -> dict[str, Any]:
        return {"state_change": state_change, "migration_situation": migration_situation,
                "state_after_failure": state_after_failure, "sample_comparison": sample_comparison}
