"""Medians, ratios and targets from the repetitions; JSON, Markdown and a PNG chart."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

MIGRATE_PHASES = ["preflight", "backup", "migrate", "validate", "report", "overhead"]
ROLLBACK_PHASES = ["rollback_downgrade", "rollback_validate", "rollback_report", "rollback_overhead"]
PHASES = MIGRATE_PHASES + ROLLBACK_PHASES
DB_PHASES = ["preflight", "backup", "migrate", "validate"]
LABELS = {
    "preflight": "preflight", "backup": "backup", "migrate": "migrate", "validate": "validate",
    "report": "report", "overhead": "ansible overhead", "rollback_downgrade": "rollback: downgrade",
    "rollback_validate": "rollback: verify", "rollback_report": "rollback: report",
    "rollback_overhead": "rollback: ansible overhead",
}
MEMORY_LIMIT_MIB = 100.0
# Issue 10: the online conversion's targets.
ONLINE_BLOCK_LIMIT_MS = 500.0
ONLINE_TIME_RATIO_LIMIT = 3.0
# mode -> (the key of its playbook results in a repetition, the suffix of its probes' keys)
MODES = {"in_place": ("ours", "ours"), "online": ("online", "online")}
MODE_LABELS = {"in_place": "in place", "online": "online"}
ONLINE_STEPS = ["plan", "expand", "backfill", "index", "verify", "swap", "other"]
# Issue 11: the rehearsal's steps, as its report names them, and the whole migrate's target with it.
REHEARSAL_STEPS = ["restore", "migrate", "validate", "rollback", "verify_rollback", "remigrate", "drop"]
REHEARSAL_MIGRATE_LIMIT_S = 20.0


def median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(ours: float | None, bare: float | None) -> float | None:
    return round(ours / bare, 2) if ours is not None and bare else None


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def summarize_rehearsal(reps: list[dict]) -> dict | None:
    """The migrate in place with the rehearsal on against off, and the rehearsal's own seconds and steps (medians);
    None when the rehearsal was not measured."""
    runs = [r["rehearsal"] for r in reps if r.get("rehearsal")]
    if not runs:
        return None
    on = median([run["migrate_wall"] for run in runs])
    off = median([r["ours"]["migrate_wall"] for r in reps if r.get("rehearsal")])
    reports = [run.get("report") or {} for run in runs]
    return {
        "migrate_whole_off": _r(off), "migrate_whole_on": _r(on),
        "added": _r(on - off) if on is not None and off is not None else None, "ratio": ratio(on, off),
        "rehearsal_seconds": _r(median([rep.get("seconds") for rep in reports])),
        "rehearsal_phase": _r(median([run["phases"].get("rehearsal") for run in runs])),
        "steps": {step: _r(median([(rep.get("steps") or {}).get(step) for rep in reports]))
                  for step in REHEARSAL_STEPS},
        "passed": [bool(rep.get("ok")) for rep in reports],
        "verdicts": [run.get("verdict") for run in runs],
    }


def summarize_size(reps: list[dict]) -> dict:
    """Medians over the repetitions of one size (the rehearsal's alone for --rehearsal only)."""
    if reps and "bare" not in reps[0]:
        return {"rehearsal": summarize_rehearsal(reps)}
    phases = {}
    for phase in PHASES:
        b = median([r["bare"]["phases"].get(phase, 0.0) for r in reps])
        o = median([r["ours"]["phases"].get(phase, 0.0) for r in reps])
        phases[phase] = {"bare": _r(b), "ours": _r(o), "ratio": ratio(o, b)}
    db_bare = median([sum(r["bare"]["phases"].get(p, 0.0) for p in DB_PHASES) for r in reps])
    db_ours = median([sum(r["ours"]["phases"].get(p, 0.0) for p in DB_PHASES) for r in reps])
    totals = {
        "db_phases": {"bare": _r(db_bare), "ours": _r(db_ours), "ratio": ratio(db_ours, db_bare)},
        "migrate_whole": _pair(reps, "migrate_wall"),
        "rollback_whole": _pair(reps, "rollback_wall"),
    }
    plain_s = median([r["bare"]["phases"].get("backup") for r in reps])
    verified_s = median([r["ours"]["phases"].get("backup") for r in reps])
    plain_b = median([r["bare"]["dump_bytes"] for r in reps])
    verified_b = median([r["ours"]["backup_bytes"] for r in reps])
    backup = {
        "plain_dump_seconds": _r(plain_s), "plain_dump_bytes": plain_b,
        "verified_seconds": _r(verified_s),
        "verified_module_seconds": _r(median([r["ours"]["backup_module_seconds"] for r in reps])),
        "verified_bytes": verified_b,
        "time_ratio": ratio(verified_s, plain_s),
        "smaller_by": round(plain_b / verified_b, 2) if plain_b and verified_b else None,
    }
    probe = {}
    for key in ("bare_migrate", "ours_migrate", "bare_rollback", "ours_rollback"):
        values = [r[f"probe_{key}"]["max_blocked_ms"] for r in reps]
        probe[key] = {"max_blocked_ms_median": _r(median(values), 1),
                      "max_blocked_ms_worst": max((v for v in values if v is not None), default=None),
                      "updates": sum(r[f"probe_{key}"]["updates"] for r in reps),
                      "errors": sum(r[f"probe_{key}"]["errors"] for r in reps)}
    scans = {}
    for state in ("text", "jsonb"):
        count = median([r[f"scan_{state}"]["count_star_seconds"] for r in reps])
        integ = median([r[f"scan_{state}"]["integrity_seconds"] for r in reps])
        scans[state] = {
            "count_star_seconds": _r(count, 4),
            "runbook_counts_seconds": _r(median([r[f"scan_{state}"]["runbook_counts_seconds"] for r in reps]), 4),
            "integrity_seconds": _r(integ, 4),
            "integrity_module_wall_seconds": _r(median([r[f"scan_{state}"]["integrity_module_wall_seconds"]
                                                        for r in reps])),
            "ratio": ratio(integ, count),
        }
    memory: dict[str, dict[str, float]] = {"module": {}, "children": {}}
    for r in reps:
        for kind in memory:
            for name, mib in r["ours"]["memory"].get(kind, {}).items():
                memory[kind][name] = max(memory[kind].get(name, 0.0), mib)
        for state in ("text", "jsonb"):
            mib = r[f"scan_{state}"]["integrity_peak_mib"]
            if mib is not None:
                memory["module"]["pg_jsonb_integrity"] = max(memory["module"].get("pg_jsonb_integrity", 0.0), mib)
    summary = {"phases": phases, "totals": totals, "backup": backup, "probe": probe, "scan": scans, "memory": memory,
               "migration_duration_seconds": _r(median([r["ours"]["migration_duration_seconds"] for r in reps]))}
    online = summarize_online(reps)
    if online is not None:
        summary["online"] = online
    rehearsal = summarize_rehearsal(reps)
    if rehearsal is not None:
        summary["rehearsal"] = rehearsal
    return summary


def _writer(reps: list[dict], run_key: str, idle_key: str) -> dict:
    """The probe during one run of every repetition: longest block (median and worst), throughput against idle."""
    runs = [r.get(run_key) or {} for r in reps]
    blocked = [p.get("max_blocked_ms") for p in runs]
    ratios = []
    for r, p in zip(reps, runs, strict=True):
        idle = (r.get(idle_key) or {}).get("per_second")
        ratios.append(round(p["per_second"] / idle, 3) if p.get("per_second") is not None and idle else None)
    # (A run left out, e.g. --online migrate's rollback, has no probe: its figures are None.)
    worst = max(runs, key=lambda p: p.get("max_blocked_ms") or -1.0, default={})
    return {"max_blocked_ms_median": _r(median(blocked), 1),
            "worst_during": worst.get("max_blocked_during") or [],
            "max_blocked_ms_worst": max((v for v in blocked if v is not None), default=None),
            "p99_ms_median": _r(median([p.get("p99_ms") for p in runs]), 2),
            "per_second": _r(median([p.get("per_second") for p in runs]), 2),
            "vs_idle": _r(median(ratios), 3),
            "updates": sum(p.get("updates", 0) for p in runs),
            "errors": sum(p.get("errors", 0) for p in runs)}


def summarize_online(reps: list[dict]) -> dict | None:
    """In place against online (our playbooks both), per mode; None when the online runs were left out."""
    if not reps or not all("online" in r for r in reps):
        return None
    modes: dict[str, dict] = {}
    for mode, (key, probe) in MODES.items():
        idle_key = f"probe_idle_{probe}"
        modes[mode] = {
            "migrate_whole": _r(median([r[key]["migrate_wall"] for r in reps])),
            "rollback_whole": _r(median([r[key].get("rollback_wall") for r in reps])),
            "conversion_migrate": _r(median([r[key]["phases"].get("migrate") for r in reps])),
            "conversion_rollback": _r(median([r[key]["phases"].get("rollback_downgrade") for r in reps])),
            "idle_per_second": _r(median([(r.get(idle_key) or {}).get("per_second") for r in reps]), 2),
            "writer_migrate": _writer(reps, f"probe_{probe}_migrate", idle_key),
            "writer_rollback": _writer(reps, f"probe_{probe}_rollback", idle_key),
            "verdicts": [[r[key].get("migrate_verdict"), r[key].get("rollback_verdict")] for r in reps],
        }
    on, ip = modes["online"], modes["in_place"]
    ratios = {name: ratio(on[name], ip[name])
              for name in ("migrate_whole", "rollback_whole", "conversion_migrate", "conversion_rollback")}
    steps = {}
    for run in ("migrate", "rollback"):
        found = [r["online"].get(f"{run}_steps") or {} for r in reps]
        seconds = [f.get("steps") or {} for f in found]
        tries = [(f.get("swap") or {}).get("tries") for f in found]
        steps[run] = {
            "seconds": {step: _r(median([s.get(step) for s in seconds]))
                        for step in ONLINE_STEPS if any(step in s for s in seconds)},
            "swap_tries_max": max((int(t) for t in tries if t is not None), default=None),
            # What the swap's tries that gave way waited for (the sessions holding the table), over the repetitions.
            "swap_waited_for": sorted({w.get("held_by", "") for f in found
                                       for w in (f.get("swap") or {}).get("waited_for") or []}),
            "backfill_slices": median([f.get("backfill_slices") for f in found]),
            "backfill_rate": _r(median([(f.get("progress") or {}).get("rate") for f in found]), 1),
        }
    last = reps[-1]["online"]
    memory: dict[str, float] = {}
    for r in reps:
        for name, mib in r["online"]["memory"].get("module", {}).items():
            memory[name] = max(memory.get(name, 0.0), mib)
    phases = {phase: _r(median([r["online"]["phases"].get(phase, 0.0) for r in reps])) for phase in PHASES}
    return {"modes": modes, "ratio": ratios, "steps": steps, "phases": phases, "batch_size": last.get("batch_size"),
            "state_after_migrate": last.get("state_after_migrate"),
            "state_after_rollback": last.get("state_after_rollback"), "memory": memory}


def _pair(reps: list[dict], key: str) -> dict:
    b = median([r["bare"][key] for r in reps])
    o = median([r["ours"][key] for r in reps])
    return {"bare": _r(b), "ours": _r(o), "ratio": ratio(o, b)}


def targets(sizes: dict[int, dict]) -> list[dict]:
    """The issue's targets, measured (never asserted): each with the size it was judged at."""
    if not sizes:
        return []
    rows = sorted(sizes)
    big = 1_000_000 if 1_000_000 in sizes else rows[-1]
    small = 10_000 if 10_000 in sizes else rows[0]
    out = []

    def add(name: str, at: int, value: float | None, limit: float, unit: str, higher_is_better: bool = False):
        met = None if value is None else (value >= limit if higher_is_better else value <= limit)
        out.append({"target": name, "rows": at, "measured": value, "limit": limit, "unit": unit, "met": met})

    rehearsed = sizes[small].get("rehearsal")
    if rehearsed:
        add("whole migrate playbook, rehearsal included", small, rehearsed["migrate_whole_on"],
            REHEARSAL_MIGRATE_LIMIT_S, "s")
    if "totals" not in sizes[big] or "totals" not in sizes[small]:
        return out  # --rehearsal only: nothing else was measured

    s = sizes[big]
    add("DB phases ours/bare", big, s["totals"]["db_phases"]["ratio"], 1.5, "x")
    add("whole migrate playbook", small, sizes[small]["totals"]["migrate_whole"]["ours"], 20.0, "s")
    worst_scan = max((s["scan"][st]["ratio"] for st in ("text", "jsonb") if s["scan"][st]["ratio"] is not None),
                     default=None)
    add("integrity+fingerprint / count(*)", big, worst_scan, 2.0, "x")
    for at in rows:
        peak = max(sizes[at]["memory"]["module"].values(), default=None)
        add("module peak memory (largest module)", at, peak, MEMORY_LIMIT_MIB, "MiB")
    add("verified backup / plain dump time", big, s["backup"]["time_ratio"], 1.5, "x")
    add("plain dump / verified backup size", big, s["backup"]["smaller_by"], 3.0, "x", higher_is_better=True)
    online = s.get("online")
    if online:
        # The worst repetition: "the longest a writer is blocked" is a bound, not a typical value.
        modes = online["modes"]["online"]
        add("online: writer's longest block, migrating (worst rep)", big,
            modes["writer_migrate"]["max_blocked_ms_worst"], ONLINE_BLOCK_LIMIT_MS, "ms")
        add("online: writer's longest block, rolling back (worst rep)", big,
            modes["writer_rollback"]["max_blocked_ms_worst"], ONLINE_BLOCK_LIMIT_MS, "ms")
        add("online / in place, whole migrate", big, online["ratio"]["migrate_whole"], ONLINE_TIME_RATIO_LIMIT, "x")
        add("online / in place, whole rollback", big, online["ratio"]["rollback_whole"], ONLINE_TIME_RATIO_LIMIT, "x")
    return out


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _mib(n: int | float | None) -> str:
    return "—" if n is None else f"{n / 2**20:.1f} MiB"


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"Bench of {result['finished']}: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}, "
        f"PostgreSQL {m['postgresql']}, ansible-core {m['ansible_core']}; median of {result['reps']} repetition(s); "
        f"load average {', '.join(f'{x:.1f}' for x in m['loadavg_start'])} at the start, "
        f"{', '.join(f'{x:.1f}' for x in m.get('loadavg_end', []))} at the end.",
        "",
    ]
    sizes = result["sizes"]
    full = {rows: s for rows, s in sizes.items() if "phases" in s}
    for rows in sorted(full, key=int):
        s = sizes[rows]
        lines += [f"#### {int(rows):,} rows", "", "| phase | bare runbook (s) | ours (s) | ours/bare |",
                  "|---|---:|---:|---:|"]
        for phase in PHASES:
            p = s["phases"][phase]
            lines.append(f"| {LABELS[phase]} | {_fmt(p['bare'])} | {_fmt(p['ours'])} | {_fmt(p['ratio'])} |")
        t = s["totals"]
        lines += [
            f"| **DB phases** (preflight+backup+migrate+validate) | {_fmt(t['db_phases']['bare'])} | "
            f"{_fmt(t['db_phases']['ours'])} | **{_fmt(t['db_phases']['ratio'])}** |",
            f"| **whole migrate** (wall) | {_fmt(t['migrate_whole']['bare'])} | "
            f"{_fmt(t['migrate_whole']['ours'])} | {_fmt(t['migrate_whole']['ratio'])} |",
            f"| **whole rollback** (wall) | {_fmt(t['rollback_whole']['bare'])} | "
            f"{_fmt(t['rollback_whole']['ours'])} | {_fmt(t['rollback_whole']['ratio'])} |",
            "",
        ]
    lines += ["#### Backup, writer probe, scans, memory", "",
              "| rows | plain dump | verified backup | time ratio | smaller by | writer blocked, migrate: bare / ours "
              "| writer blocked, rollback: bare / ours | count(*) | integrity+fingerprint (text[] / jsonb) "
              "| module peak RSS |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"] if full else []
    for rows in sorted(full, key=int):
        s = sizes[rows]
        b, p, sc = s["backup"], s["probe"], s["scan"]
        peak = max(s["memory"]["module"].items(), key=lambda kv: kv[1], default=("—", None))
        lines.append(
            f"| {int(rows):,} | {_fmt(b['plain_dump_seconds'])} s, {_mib(b['plain_dump_bytes'])} "
            f"| {_fmt(b['verified_seconds'])} s, {_mib(b['verified_bytes'])} | {_fmt(b['time_ratio'])}x "
            f"| {_fmt(b['smaller_by'])}x "
            f"| {_fmt(p['bare_migrate']['max_blocked_ms_median'], 0)} / "
            f"{_fmt(p['ours_migrate']['max_blocked_ms_median'], 0)} ms "
            f"| {_fmt(p['bare_rollback']['max_blocked_ms_median'], 0)} / "
            f"{_fmt(p['ours_rollback']['max_blocked_ms_median'], 0)} ms "
            f"| {_fmt(sc['text']['count_star_seconds'], 3)} / {_fmt(sc['jsonb']['count_star_seconds'], 3)} s "
            f"| {_fmt(sc['text']['integrity_seconds'], 3)} / {_fmt(sc['jsonb']['integrity_seconds'], 3)} s "
            f"({_fmt(sc['text']['ratio'])}x / {_fmt(sc['jsonb']['ratio'])}x) "
            f"| {_fmt(peak[1], 1)} MiB ({peak[0]}) |")
    lines += online_markdown(full)
    lines += rehearsal_markdown(sizes)
    lines += ["", "#### Targets (measured, not asserted)", "", "| target | rows | measured | limit | met |",
              "|---|---:|---:|---:|:---:|"]
    for t in result["targets"]:
        limit = f"{'≥' if t['target'].startswith('plain dump') else '≤'} {t['limit']:g} {t['unit']}"
        met = {True: "yes", False: "**no**", None: "—"}[t["met"]]
        lines.append(f"| {t['target']} | {t['rows']:,} | {_fmt(t['measured'])} {t['unit']} | {limit} | {met} |")
    return "\n".join(lines) + "\n"


def rehearsal_markdown(sizes: dict) -> list[str]:
    """The migrate in place with the rehearsal on and off, and the rehearsal's own steps (its report's seconds)."""
    with_rehearsal = [rows for rows in sorted(sizes, key=int) if sizes[rows].get("rehearsal")]
    if not with_rehearsal:
        return []
    lines = ["", "#### The rehearsal's cost (our migrate playbook in place, rehearsal off / on)", "",
             "| rows | whole migrate, off (s) | whole migrate, on (s) | added (s) | rehearsal (its report, s) | "
             + " | ".join(REHEARSAL_STEPS) + " | passed |",
             "|---:|---:|---:|---:|---:|" + "---:|" * len(REHEARSAL_STEPS) + ":---:|"]
    for rows in with_rehearsal:
        r = sizes[rows]["rehearsal"]
        lines.append(
            f"| {int(rows):,} | {_fmt(r['migrate_whole_off'])} | {_fmt(r['migrate_whole_on'])} | {_fmt(r['added'])} "
            f"| {_fmt(r['rehearsal_seconds'])} | " + " | ".join(_fmt(r["steps"].get(step)) for step in REHEARSAL_STEPS)
            + f" | {'yes' if r['passed'] and all(r['passed']) else '**no**'} |")
    return lines


def _ms(value) -> str:
    return "—" if value is None else f"{value:.0f}"


def online_markdown(sizes: dict) -> list[str]:
    """The in-place and online runs of our playbooks side by side, and the online conversion's steps."""
    with_online = [rows for rows in sorted(sizes, key=int) if sizes[rows].get("online")]
    if not with_online:
        return []
    lines = ["", "#### Online conversion against in place (our playbooks, same writer probe)", "",
             "| rows | mode | migrate total (s) | rollback total (s) | writer longest block, migrating (ms) "
             "| writer longest block, rolling back (ms) | writer throughput vs idle, migrating / rolling back "
             "| online / in place, migrate / rollback |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for rows in with_online:
        o = sizes[rows]["online"]
        for mode, m in o["modes"].items():
            wm, wr = m["writer_migrate"], m["writer_rollback"]
            vs = (f"{_fmt(o['ratio']['migrate_whole'])}x / {_fmt(o['ratio']['rollback_whole'])}x"
                  if mode == "online" else "1 / 1")
            lines.append(
                f"| {int(rows):,} | {MODE_LABELS[mode]} | {_fmt(m['migrate_whole'])} | {_fmt(m['rollback_whole'])} "
                f"| {_ms(wm['max_blocked_ms_median'])} (worst {_ms(wm['max_blocked_ms_worst'])}) "
                f"| {_ms(wr['max_blocked_ms_median'])} (worst {_ms(wr['max_blocked_ms_worst'])}) "
                f"| {_fmt(wm['vs_idle'])} / {_fmt(wr['vs_idle'])} (idle {_fmt(m['idle_per_second'], 1)}/s) "
                f"| {vs} |")
    lines += ["", "Where the writer's longest block (worst repetition) fell, by the playbook's tasks running then:", ""]
    for rows in with_online:
        for mode, m in sizes[rows]["online"]["modes"].items():
            for run in ("migrate", "rollback"):
                w = m[f"writer_{run}"]
                if w["max_blocked_ms_worst"] is not None:
                    during = "; ".join(w.get("worst_during") or []) or "no task (between tasks)"
                    lines.append(f"- {int(rows):,} rows, {MODE_LABELS[mode]} {run}: "
                                 f"{_ms(w['max_blocked_ms_worst'])} ms during {during}")
    lines += ["", "Online conversion steps (s, median; the conversion phase of the table above):", "",
              "| rows | run | conversion phase (s) | in place (s) | " + " | ".join(ONLINE_STEPS)
              + " | swap tries (max) | backfill rows/s |",
              "|---:|---|---:|---:|" + "---:|" * len(ONLINE_STEPS) + "---:|---:|"]
    for rows in with_online:
        o = sizes[rows]["online"]
        for run in ("migrate", "rollback"):
            st = o["steps"][run]
            lines.append(
                f"| {int(rows):,} | {run} | {_fmt(o['modes']['online'][f'conversion_{run}'])} "
                f"| {_fmt(o['modes']['in_place'][f'conversion_{run}'])} | "
                + " | ".join(_fmt(st["seconds"].get(step)) for step in ONLINE_STEPS)
                + f" | {_fmt(st['swap_tries_max'])} | {_fmt(st['backfill_rate'], 0)} |")
    waits = [(rows, run, held) for rows in with_online for run in ("migrate", "rollback")
             for held in sizes[rows]["online"]["steps"][run].get("swap_waited_for") or []]
    if waits:
        lines += ["", "What the swap's tries that gave way waited for (the sessions holding the table then):", ""]
        lines += [f"- {int(rows):,} rows, {run}: {held}" for rows, run, held in waits]
    return lines


def chart(result: dict, path: Path) -> bool:
    """The per-phase chart; False (nothing drawn) when no size has phases (--rehearsal only)."""
    sizes = sorted((rows for rows in result["sizes"] if "phases" in result["sizes"][rows]), key=int)
    if not sizes:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sizes), figsize=(6.5 * len(sizes), 4.8), squeeze=False)
    for ax, rows in zip(axes[0], sizes, strict=True):
        s = result["sizes"][rows]["phases"]
        xs = range(len(PHASES))
        bare = [s[p]["bare"] or 0.0 for p in PHASES]
        ours = [s[p]["ours"] or 0.0 for p in PHASES]
        online = (result["sizes"][rows].get("online") or {}).get("phases")
        if online:
            width = 0.27
            ax.bar([x - width for x in xs], bare, width=width, label="bare runbook", color="#9aa5b1")
            ax.bar(list(xs), ours, width=width, label="ours, in place", color="#2b6cb0")
            ax.bar([x + width for x in xs], [online.get(p) or 0.0 for p in PHASES], width=width,
                   label="ours, online", color="#dd6b20")
        else:
            ax.bar([x - 0.2 for x in xs], bare, width=0.4, label="bare runbook", color="#9aa5b1")
            ax.bar([x + 0.2 for x in xs], ours, width=0.4, label="ledgermind.migrations", color="#2b6cb0")
        ax.set_xticks(list(xs))
        ax.set_xticklabels([LABELS[p].replace("rollback: ", "rb: ").replace("ansible ", "") for p in PHASES],
                           rotation=40, ha="right", fontsize=8)
        ax.set_ylabel("seconds (median)")
        ax.set_title(f"{int(rows):,} rows")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"make bench: per phase, ours vs the runbook's bare commands ({result['finished']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write(result: dict, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "bench.json", "md": out / "bench.md", "png": out / "bench.png"}
    paths["json"].write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    paths["md"].write_text(markdown(result), encoding="utf-8")
    if not chart(result, paths["png"]):
        del paths["png"]
    return paths
