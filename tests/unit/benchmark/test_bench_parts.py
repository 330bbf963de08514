"""Unit tests for scripts/bench's pure parts: phase attribution, summaries, targets, memory walk."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "scripts"))

from bench import cli, ours, report  # noqa: E402
from bench.memory import ModuleMemory  # noqa: E402


def _task(name: str, start: float, end: float) -> dict:
    def iso(x: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(1_700_000_000 + int(x))) + f".{int(x % 1 * 1e6):06d}Z"

    return {"task": {"name": name, "duration": {"start": iso(start), "end": iso(end)}}, "hosts": {}}


def test_task_phases_by_role():
    callback = {"plays": [{"tasks": [
        _task("Check that a database is configured", 0, 0.5),
        _task("ledgermind.migrations.migration_preflight : Inspect the column type", 1, 2.5),
        _task("ledgermind.migrations.pg_backup : Write, verify and checksum the backup archive", 3, 5),
        _task("ledgermind.migrations.db_migration : Move the schema", 5, 9),
        _task("ledgermind.migrations.migration_validate : Scan integrity", 9, 10),
        _task("ledgermind.migrations.signoff_report : Write the report files", 10, 10.25),
        _task("ledgermind.migrations.compose_redeploy : Deploy", 11, 12),
    ]}]}
    phases, tasks = ours.task_phases(callback, ours.MIGRATE_ROLES)
    assert phases == {"overhead": 1.5, "preflight": 1.5, "backup": 2.0, "migrate": 4.0, "validate": 1.0,
                      "report": 0.25}
    assert len(tasks) == 7
    rb, _ = ours.task_phases({"plays": [{"tasks": [
        _task("ledgermind.migrations.db_migration : Move the schema", 0, 2),
        _task("ledgermind.migrations.migration_rollback : Judge", 2, 3),
        {**_task("ledgermind.migrations.migration_rollback : Downgrade", 3, 7),
         "hosts": {"localhost": {"action": "ledgermind.migrations.alembic_migrate"}}}]}]},
        ours.ROLLBACK_ROLES, ours.ROLLBACK_ACTIONS)
    assert rb == {"rollback_downgrade": 6.0, "rollback_validate": 1.0}


def _rep(scale: float) -> dict:
    phases = {p: scale for p in report.PHASES}
    probe = {"updates": 10, "errors": 0, "max_blocked_ms": 50.0 * scale}
    scan = {"count_star_seconds": 0.1 * scale, "runbook_counts_seconds": 0.2 * scale,
            "integrity_seconds": 0.3 * scale, "integrity_module_wall_seconds": 1.0, "integrity_peak_mib": 40.0}
    return {
        "bare": {"phases": {p: scale / 2 for p in report.DB_PHASES + ["rollback_downgrade"]}, "migrate_wall": 2 * scale,
                 "rollback_wall": scale, "dump_bytes": 1000},
        "ours": {"phases": phases, "migrate_wall": 6 * scale, "rollback_wall": 4 * scale, "backup_bytes": 250,
                 "backup_module_seconds": scale, "migration_duration_seconds": scale,
                 "memory": {"module": {"alembic_migrate": 30.0 * scale}, "children": {}}},
        "probe_bare_migrate": probe, "probe_ours_migrate": probe, "probe_bare_rollback": probe,
        "probe_ours_rollback": probe, "scan_text": scan, "scan_jsonb": scan,
    }


def test_summary_medians_ratios_and_targets():
    summary = report.summarize_size([_rep(1.0), _rep(3.0), _rep(2.0)])
    assert summary["phases"]["migrate"] == {"bare": 1.0, "ours": 2.0, "ratio": 2.0}
    assert summary["phases"]["report"]["bare"] == 0.0 and summary["phases"]["report"]["ratio"] is None
    assert summary["totals"]["db_phases"]["ratio"] == 2.0
    assert summary["backup"]["smaller_by"] == 4.0
    assert summary["scan"]["text"]["ratio"] == 3.0
    assert summary["memory"]["module"] == {"alembic_migrate": 90.0, "pg_jsonb_integrity": 40.0}
    assert summary["probe"]["ours_migrate"]["max_blocked_ms_worst"] == 150.0
    targets = {(t["target"], t["rows"]): t for t in report.targets({10_000: summary, 1_000_000: summary})}
    assert targets[("DB phases ours/bare", 1_000_000)]["met"] is False
    assert targets[("whole migrate playbook", 10_000)]["measured"] == 12.0
    assert targets[("whole migrate playbook", 10_000)]["met"] is True
    assert targets[("plain dump / verified backup size", 1_000_000)]["met"] is True
    assert targets[("integrity+fingerprint / count(*)", 1_000_000)]["met"] is False


def test_markdown_shape():
    summary = report.summarize_size([_rep(1.0)])
    result = {"finished": "2026-01-01T00:00:00Z", "reps": 1, "sizes": {"10000": summary},
              "targets": report.targets({10_000: summary}),
              "machine": {"cpu": "cpu", "cores": 2, "memory_gib": 24, "os": "Debian", "postgresql": "15",
                          "ansible_core": "2.19", "loadavg_start": [1.0, 1.0, 1.0], "loadavg_end": [2.0, 2.0, 2.0]}}
    md = report.markdown(result)
    assert "#### 10,000 rows" in md and "| migrate | 0.50 | 1.00 | 2.00 |" in md
    rows = [line for line in md.splitlines() if line.startswith("|")]
    assert all(line.endswith("|") for line in rows)


def test_cli_sizes():
    args = cli.parse_args(["--sizes", "10_000,1000", "--10m"])
    assert args.sizes == [1000, 10_000, 10_000_000]


def test_memory_walks_descendants_only():
    # The fake module touches 32 MiB (so its peak RSS holds it), says so, then waits for stdin to close: the
    # samples are taken while it is certainly alive and at its peak, however slow the machine.
    child = "import sys; x = b'\\x01' * (32 << 20); print('ready', flush=True); sys.stdin.read()"
    module = subprocess.Popen([sys.executable, "-c", child, "AnsiballZ_fake_mod.py"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    stranger = subprocess.Popen(["sleep", "600"])  # not an ancestor of the fake module
    try:
        assert module.stdout.readline() == "ready\n"
        with ModuleMemory(os.getpid()) as mine, ModuleMemory(stranger.pid) as other:
            mine.sample()  # one sample of our own besides the poller's: taken now, while the module is at its peak
            other.sample()
    finally:
        module.communicate(timeout=60)
        stranger.kill()
        stranger.wait()
    assert mine.peaks_mib()["module"].get("fake_mod", 0) >= 32, mine.peaks_mib()
    assert other.peaks_mib() == {"module": {}, "children": {}}
