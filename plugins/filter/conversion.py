# Copyright: (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How a run converts the column: in place (the application's own Alembic revision) or online
(``pg_online_convert``), chosen from the operator's setting and the table as ``pg_online_convert`` reads it."""
from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

MODES = ("auto", "in_place", "online")


def conversion_choice(status: dict[str, Any], mode: str = "auto", min_rows: Any = 100000) -> dict[str, Any]:
    """``mode`` (in_place or online), ``rule`` (why, in words), ``remove_leftovers`` (an unfinished conversion's
    shadow column and trigger to take away first) and ``continues`` (an online conversion in progress)."""
    if mode not in MODES:
        raise AnsibleFilterError(f"ledgermind_conversion is {mode!r}; set it to auto, in_place or online")
    try:
        threshold = int(min_rows)
    except (TypeError, ValueError) as e:
        raise AnsibleFilterError(f"ledgermind_online_min_rows is {min_rows!r}; set it to a whole number of rows") from e
    if not isinstance(status, dict) or "state" not in status:
        raise AnsibleFilterError("conversion_choice expects the result of pg_online_convert phase=status")
    state = status["state"]
    rows = int(status.get("rows") or 0)
    target = status.get("target_type") or "the target type"
    choice: dict[str, Any] = {"remove_leftovers": state == "leftover", "continues": False, "rows": rows,
                              "requested": mode, "min_rows": threshold}
    if state == "converted":
        return dict(choice, mode="in_place",
                    rule=f"the column is already {target}: the application's Alembic revision finishes what is left")
    if state == "in_progress":
        if mode == "in_place":
            return dict(choice, mode="in_place", remove_leftovers=True,
                        rule="in_place requested: the unfinished online conversion's shadow column and trigger are "
                             "removed first")
        return dict(choice, mode="online", continues=True,
                    rule="an online conversion is in progress: it continues where it stopped")
    left = " (after removing an unfinished conversion's leftovers)" if state == "leftover" else ""
    if mode != "auto":
        return dict(choice, mode=mode, rule=f"{mode} requested (ledgermind_conversion){left}")
    if rows >= threshold:
        rule = f"auto: {rows} rows >= {threshold} (ledgermind_online_min_rows): online, no table rewrite{left}"
        return dict(choice, mode="online", rule=rule)
    return dict(choice, mode="in_place",
                rule=f"auto: {rows} rows < {threshold} (ledgermind_online_min_rows): in place, a short rewrite{left}")


class FilterModule:
    """conversion_choice."""

    def filters(self) -> dict[str, Any]:
        return {"conversion_choice": conversion_choice}
