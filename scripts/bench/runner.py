"""The repetitions: per size, per repetition, a fresh reset before each side.

One repetition at one size:
  reset -> count(*)/integrity scans on text[] -> the runbook's migrate steps (probe running)
        -> the runbook's rollback steps (probe running)
  reset -> the probe alone on the idle table -> our migrate playbook, in place (probe running,
        module memory watched) -> scans on jsonb -> our rollback playbook, in place (probe running)
  reset -> the probe alone on the idle table -> our migrate playbook, online (probe running)
        -> the column's catalog state -> our rollback playbook, online (probe running)
        -> the column's catalog state       (online="migrate": not the rollback; "off": none of it)
  reset -> our migrate playbook, in place, with the rehearsal on (its cost; up to rehearsal_max_rows rows)
Our playbooks run with the rehearsal off (explicitly) except in that last run. rehearsal="only" runs, per
repetition, our migrate playbook in place with the rehearsal off and then on, nothing else.
Dumps, backups and reports of a repetition live in ``work/`` and are removed after it, unless kept.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from . import bare, ours, scan
from .env import reset
from .probe import WriterProbe, idle


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _with_probe(url: str, interval: float, fn, *args, **kwargs):
    with WriterProbe(url, interval=interval) as probe:
        result = fn(*args, **kwargs)
    summary = probe.summary()
    if isinstance(result, dict) and "tasks" in result:  # a playbook: which of its tasks the longest block met
        summary["max_blocked_during"] = ours.running_at(result["tasks"], summary.get("max_blocked_wall"),
                                                        (summary.get("max_blocked_ms") or 0) / 1000)
    return result, summary


def rehearsal_run(url: str, db: str, rows: int, work: Path) -> dict:
    """From a fresh seed, our migrate playbook in place with the rehearsal on: the whole run and the rehearsal's own
    figures (its report's steps), for its cost against the run with the rehearsal off."""
    reset(db, rows)
    log(f"{rows} rows: our migrate playbook with the rehearsal, in place")
    mig = ours.run_playbook("migrate", url, work / "rehearsal", memory=False, conversion="in_place", rehearsal=True)
    return {"migrate_wall": mig["wall"], "phases": mig["phases"], "report": mig["rehearsal"],
            "verdict": mig["signoff"].get("verdict")}


def rehearsal_repetition(url: str, db: str, rows: int, work: Path) -> dict:
    """rehearsal="only": our migrate playbook in place with the rehearsal off, then on, each from a fresh seed."""
    reset(db, rows)
    log(f"{rows} rows: our migrate playbook without the rehearsal, in place")
    off = ours.run_playbook("migrate", url, work / "ours", memory=False, conversion="in_place", rehearsal=False)
    return {"rows": rows, "ours": {"migrate_wall": off["wall"], "phases": off["phases"],
                                   "migrate_verdict": off["signoff"].get("verdict")},
            "rehearsal": rehearsal_run(url, db, rows, work)}


def one_repetition(url: str, db: str, rows: int, work: Path, probe_interval: float, *, online: str = "full",
                   idle_seconds: float = 5.0, batch_size: int | None = None, rehearsal: bool = True) -> dict:
    rep: dict = {"rows": rows}
    rep["reset_seconds"] = reset(db, rows)
    rep["scan_text"] = scan.measure(url)

    log(f"{rows} rows: the runbook's bare commands")
    migrate, rep["probe_bare_migrate"] = _with_probe(url, probe_interval, bare.run_steps, bare.MIGRATE_STEPS, url,
                                                     work / "bare")
    rollback, rep["probe_bare_rollback"] = _with_probe(url, probe_interval, bare.run_steps, bare.ROLLBACK_STEPS, url,
                                                       work / "bare")
    rep["bare"] = {"phases": {**migrate["phases"], **rollback["phases"]}, "steps": migrate["steps"] + rollback["steps"],
                   "migrate_wall": sum(migrate["phases"].values()), "rollback_wall": sum(rollback["phases"].values()),
                   "dump_bytes": migrate["dump_bytes"]}

    reset(db, rows)
    rep["probe_idle_ours"] = idle(url, idle_seconds, probe_interval)
    log(f"{rows} rows: our playbooks, in place")
    mig, rep["probe_ours_migrate"] = _with_probe(url, probe_interval, ours.run_playbook, "migrate", url, work / "ours",
                                                 conversion="in_place")
    rep["scan_jsonb"] = scan.measure(url)
    rb, rep["probe_ours_rollback"] = _with_probe(url, probe_interval, ours.run_playbook, "rollback", url, work / "ours",
                                                 conversion="in_place")
    backup = mig["signoff"].get("backup") or {}
    rep["ours"] = {
        "phases": {**mig["phases"], **rb["phases"]},
        "migrate_wall": mig["wall"],
        "rollback_wall": rb["wall"],
        "tasks": mig["tasks"] + rb["tasks"],
        "backup_bytes": _int(backup.get("size_bytes")),
        "backup_module_seconds": _float(backup.get("duration_seconds")),
        "migration_duration_seconds": _float(mig["signoff"].get("migration_duration_seconds")),
        "migrate_verdict": mig["signoff"].get("verdict"),
        "rollback_verdict": rb["signoff"].get("verdict"),
        "lock_waits": mig["signoff"].get("lock_waits") or {},
        "memory": _merge_peaks(mig["memory"], rb["memory"]),
    }
    if online in ("full", "migrate"):
        rep["online"] = online_repetition(rep, url, db, rows, work, probe_interval, idle_seconds, batch_size,
                                          rollback=online == "full")
    if rehearsal:
        rep["rehearsal"] = rehearsal_run(url, db, rows, work)
    return rep


def online_repetition(rep: dict, url: str, db: str, rows: int, work: Path, probe_interval: float,
                      idle_seconds: float, batch_size: int | None, rollback: bool = True) -> dict:
    """Our playbooks with ``ledgermind_conversion=online``, from a fresh seed, the same probe running.
    Without ``rollback`` the table stays migrated (the next repetition or size seeds it afresh)."""
    reset(db, rows)
    rep["probe_idle_online"] = idle(url, idle_seconds, probe_interval)
    log(f"{rows} rows: our playbooks, online")
    kwargs = {"conversion": "online", "batch_size": batch_size}
    mig, rep["probe_online_migrate"] = _with_probe(url, probe_interval, ours.run_playbook, "migrate", url,
                                                   work / "online", **kwargs)
    state_migrated = scan.column_state(url)
    rb: dict = {"phases": {}, "wall": None, "tasks": [], "online": {}, "signoff": {}, "memory": {}}
    if rollback:
        rb, rep["probe_online_rollback"] = _with_probe(url, probe_interval, ours.run_playbook, "rollback", url,
                                                       work / "online", **kwargs)
    return {
        "phases": {**mig["phases"], **rb["phases"]},
        "migrate_wall": mig["wall"],
        "rollback_wall": rb["wall"],
        "tasks": mig["tasks"] + rb["tasks"],
        "batch_size": batch_size,
        "migrate_steps": mig["online"],
        "rollback_steps": rb["online"],
        "migrate_verdict": mig["signoff"].get("verdict"),
        "rollback_verdict": rb["signoff"].get("verdict"),
        "state_after_migrate": state_migrated,
        "state_after_rollback": scan.column_state(url) if rollback else None,
        "memory": _merge_peaks(mig["memory"], rb["memory"]),
    }


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _merge_peaks(*peaks: dict) -> dict:
    merged: dict[str, dict[str, float]] = {"module": {}, "children": {}}
    for peak in peaks:
        for kind in merged:
            for name, mib in peak.get(kind, {}).items():
                merged[kind][name] = max(merged[kind].get(name, 0.0), mib)
    return merged


def run_size(url: str, db: str, rows: int, reps: int, work: Path, probe_interval: float, keep: bool, *,
             online: str = "full", idle_seconds: float = 5.0, batch_size: int | None = None,
             rehearsal: str = "full") -> list[dict]:
    """The repetitions of one size; ``rehearsal``: full (the run with it too), off, or only (nothing else)."""
    results = []
    for i in range(reps):
        log(f"{rows} rows: repetition {i + 1}/{reps}")
        rep_dir = work / f"{rows}-{i + 1}"
        try:
            if rehearsal == "only":
                results.append(rehearsal_repetition(url, db, rows, rep_dir))
                continue
            results.append(one_repetition(url, db, rows, rep_dir, probe_interval, online=online,
                                          idle_seconds=idle_seconds, batch_size=batch_size,
                                          rehearsal=rehearsal == "full"))
        finally:
            if not keep:
                shutil.rmtree(rep_dir, ignore_errors=True)
    return results
