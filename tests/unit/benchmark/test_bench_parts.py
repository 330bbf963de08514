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
from bench.probe import WriterProbe  # noqa: E402


def _task(name: str, start: float, end: float, path: str | None = None, hosts: dict | None = None) -> dict:
    def iso(x: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(1_700_000_000 + int(x))) + f".{int(x % 1 * 1e6):06d}Z"

    task = {"name": name, "duration": {"start": iso(start), "end": iso(end)}}
    if path is not None:
        task["path"] = path
    return {"task": task, "hosts": hosts or {}}


ROLES = "/c/ansible_collections/ledgermind/migrations/roles"


def _plays(entries: list[dict]) -> dict:
    return {"plays": [{"tasks": entries}]}
OC = "ledgermind.migrations.online_conversion : "


def _convert(phase: str, **result) -> dict:
    return {"localhost": {"action": "ledgermind.migrations.pg_online_convert",
                          "invocation": {"module_args": {"phase": phase}}, **result}}


def _online_callback(includer: str, start: float = 0.0) -> list[dict]:
    """What the json callback shows of an online conversion included from ``includer``'s tasks/online.yml, the
    choice (tasks/choose.yml) included before it from the same role."""
    at = start
    entries = []

    def add(name: str, seconds: float, path: str, hosts: dict | None = None) -> None:
        nonlocal at
        entries.append(_task(name, at, at + seconds, path, hosts))
        at += seconds

    add("Choose the in-place or the online downgrade", 0.25, f"{ROLES}/{includer}/tasks/main.yml:16")
    add(OC + "Validating arguments against arg spec 'choose'", 0.25, f"{ROLES}/{includer}/tasks/main.yml:16")
    add(OC + "Read where an online conversion stands (read-only)", 1.0, f"{ROLES}/online_conversion/tasks/choose.yml:3",
        _convert("status"))
    add(OC + "Say which conversion runs, and why", 0.25, f"{ROLES}/online_conversion/tasks/choose.yml:20")
    add(OC + "Validating arguments against arg spec 'main'", 0.25, f"{ROLES}/{includer}/tasks/online.yml:2")
    main = f"{ROLES}/online_conversion/tasks/main.yml"
    add(OC + "Plan the online conversion (read-only)", 0.5, f"{main}:26", _convert("plan"))
    add(OC + "Show the plan", 0.25, f"{main}:33")
    add(OC + "Expand - add the shadow column", 1.0, f"{main}:48", _convert("expand"))
    for rows in (400, 1000):
        add(OC + "Backfill the next slice", 2.0, f"{ROLES}/online_conversion/tasks/backfill.yml:3",
            _convert("backfill", progress={"rows_done": rows, "rate": 200.0, "done": rows == 1000}))
        add(OC + "Show the backfill's progress", 0.25, f"{ROLES}/online_conversion/tasks/backfill.yml:10")
    add(OC + "Index the shadow column CONCURRENTLY", 1.5, f"{main}:60", _convert("index"))
    add(OC + "Verify every row without a lock", 1.25, f"{main}:66", _convert("verify", verify={"differing": 0}))
    add(OC + "Swap in one short transaction under the lock budget", 0.5, f"{main}:72",
        _convert("swap", swap={"tries": 2, "revision": "r"}))
    return entries


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


def test_task_phases_online_conversion_counts_with_its_phase_and_the_choice_with_its_includer():
    # The pre-flight includes the choice (include_role: named without its role, found by its file).
    preflight = [_task("ledgermind.migrations.migration_preflight : Inspect the column type", 0, 1),
                 _task("Say how the column will be converted", 1, 1.25,
                       f"{ROLES}/migration_preflight/tasks/main.yml:9"),
                 _task(OC + "Read where an online conversion stands (read-only)", 1.25, 2.25,
                       f"{ROLES}/online_conversion/tasks/choose.yml:3", _convert("status"))]
    migrate = [_task("ledgermind.migrations.db_migration : Read the state before", 2.25, 2.5)]
    callback = _plays(preflight + migrate + _online_callback("db_migration", 2.5))
    phases, tasks = ours.task_phases(callback, ours.MIGRATE_ROLES, conversion="migrate")
    assert phases == {"preflight": 2.25, "migrate": 11.75}
    # Without a conversion phase (as before the online mode), a helper role's tasks count with their includer.
    same, _ = ours.task_phases(callback, ours.MIGRATE_ROLES)
    assert same == phases
    # The rollback: the choice is the rollback role's (verify), the conversion is the downgrade.
    rb, rb_tasks = ours.task_phases(_plays(_online_callback("migration_rollback")), ours.ROLLBACK_ROLES,
                                    ours.ROLLBACK_ACTIONS, conversion="rollback_downgrade")
    assert rb == {"rollback_validate": 2.0, "rollback_downgrade": 9.5}
    assert {t["phase"] for t in rb_tasks if "Swap" in t["task"] or "Backfill" in t["task"]} == {"rollback_downgrade"}


def test_running_at_names_the_tasks_a_block_met():
    _, tasks = ours.task_phases(_plays(_online_callback("db_migration")), ours.MIGRATE_ROLES, conversion="migrate")
    swap = next(t for t in tasks if "Swap" in t["task"])
    verify = next(t for t in tasks if "Verify" in t["task"])
    assert ours.running_at(tasks, swap["start"] + 0.1, 0.2) == ["migrate: " + swap["task"]]
    # A block from the end of verify into the swap met both.
    both = ["migrate: " + verify["task"], "migrate: " + swap["task"]]
    assert ours.running_at(tasks, verify["start"] + 1.0, 0.5) == both
    assert ours.running_at(tasks, None, 1.0) == [] and ours.running_at(tasks, swap["start"] + 100, 0.1) == []


def test_online_steps():
    found = ours.online_steps(_plays(_online_callback("db_migration")))
    # A debug task counts with the step before it; the choice and the argument checks are no step.
    assert found["steps"] == {"plan": 0.75, "expand": 1.0, "backfill": 4.5, "index": 1.5, "verify": 1.25, "swap": 0.5}
    assert found["backfill_slices"] == 2 and found["progress"]["done"] is True
    assert found["swap"] == {"tries": 2, "revision": "r"} and found["verify"] == {"differing": 0}
    assert ours.online_steps(_plays([_task("Name the run", 0, 1)]))["steps"] == {}


def test_run_playbook_refuses_auto():
    try:
        ours.run_playbook("migrate", "postgresql://127.0.0.1/x", Path("/nonexistent"), conversion="auto")
    except ours.BenchError as exc:
        assert "in_place, online" in str(exc)
    else:
        raise AssertionError("auto accepted")


def test_probe_summary_throughput():
    probe = WriterProbe("postgresql://127.0.0.1/unused", interval=0.03)
    probe.latencies = [0.001] * 98 + [0.2, 0.4]
    probe._started, probe._ended = 100.0, 104.0
    summary = probe.summary()
    assert summary["updates"] == 100 and summary["per_second"] == 25.0 and summary["elapsed_s"] == 4.0
    assert summary["max_blocked_ms"] == 400.0 and summary["p99_ms"] == 400.0 and summary["over_100ms"] == 2


def _rep(scale: float) -> dict:
    phases = {p: scale for p in report.PHASES}
    probe = {"updates": 10, "errors": 0, "max_blocked_ms": 50.0 * scale, "per_second": 30.0, "p99_ms": 5.0}
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


def _online_rep(scale: float, rollback: bool = True) -> dict:
    rep = _rep(scale)
    steps = {"steps": {"plan": 0.5, "expand": 1.0, "backfill": 10.0 * scale, "swap": 0.5}, "backfill_slices": 2,
             "progress": {"rate": 1000.0 / scale, "done": True}, "swap": {"tries": int(scale)}, "verify": {}}
    rep["probe_idle_ours"] = {"updates": 100, "errors": 0, "max_blocked_ms": 1.0, "per_second": 32.0}
    rep["probe_idle_online"] = {"updates": 100, "errors": 0, "max_blocked_ms": 1.0, "per_second": 32.0}
    rep["probe_online_migrate"] = {"updates": 50, "errors": 0, "max_blocked_ms": 100.0 * scale, "per_second": 16.0,
                                   "p99_ms": 9.0}
    rep["online"] = {"phases": {p: 2 * scale for p in report.PHASES}, "migrate_wall": 15 * scale,
                     "rollback_wall": None, "migrate_steps": steps, "rollback_steps": {},
                     "migrate_verdict": "PASSED", "rollback_verdict": None, "batch_size": None,
                     "state_after_migrate": {"column_type": "jsonb"}, "state_after_rollback": None,
                     "memory": {"module": {"pg_online_convert": 40.0}, "children": {}}}
    if rollback:
        rep["probe_online_rollback"] = {"updates": 50, "errors": 0, "max_blocked_ms": 600.0, "per_second": 8.0,
                                        "p99_ms": 9.0}
        rep["online"].update(rollback_wall=8 * scale, rollback_steps=steps, rollback_verdict="PASSED")
    return rep


def test_online_summary_against_in_place_and_targets():
    summary = report.summarize_size([_online_rep(1.0), _online_rep(3.0), _online_rep(2.0)])
    online = summary["online"]
    ip, on = online["modes"]["in_place"], online["modes"]["online"]
    assert ip["migrate_whole"] == 12.0 and on["migrate_whole"] == 30.0 and on["rollback_whole"] == 16.0
    assert online["ratio"]["migrate_whole"] == 2.5 and online["ratio"]["rollback_whole"] == 2.0
    assert online["ratio"]["conversion_migrate"] == 2.0  # the migrate phase alone: 4 s against 2 s
    assert on["writer_migrate"]["max_blocked_ms_median"] == 200.0
    assert on["writer_migrate"]["max_blocked_ms_worst"] == 300.0
    assert on["writer_migrate"]["vs_idle"] == 0.5 and on["writer_rollback"]["vs_idle"] == 0.25
    assert ip["writer_migrate"]["vs_idle"] == round(30 / 32, 3) and on["idle_per_second"] == 32.0
    assert online["steps"]["migrate"]["seconds"]["backfill"] == 20.0
    assert online["steps"]["migrate"]["swap_tries_max"] == 3
    assert on["verdicts"] == [["PASSED", "PASSED"]] * 3
    targets = {t["target"]: t for t in report.targets({1_000_000: summary})}
    assert targets["online: writer's longest block, migrating (worst rep)"]["measured"] == 300.0
    assert targets["online: writer's longest block, migrating (worst rep)"]["met"] is True
    assert targets["online: writer's longest block, rolling back (worst rep)"]["met"] is False  # 600 ms
    assert targets["online / in place, whole migrate"]["met"] is True
    # Without the online runs: no online summary, no online targets (the in-place figures as before).
    plain = report.summarize_size([_rep(1.0)])
    assert "online" not in plain and not any(t["target"].startswith("online") for t in report.targets({10: plain}))


def test_online_summary_migrate_only():
    summary = report.summarize_size([_online_rep(1.0, rollback=False)])
    on = summary["online"]["modes"]["online"]
    assert on["rollback_whole"] is None and on["writer_rollback"]["max_blocked_ms_median"] is None
    assert summary["online"]["ratio"]["rollback_whole"] is None
    assert summary["online"]["steps"]["rollback"]["seconds"] == {}
    targets = {t["target"]: t for t in report.targets({200: summary})}
    assert targets["online: writer's longest block, rolling back (worst rep)"]["met"] is None
    md = report.markdown(_result(summary))
    assert "| 200 | online | 15.00 | — |" in md


def _result(summary: dict, rows: int = 200) -> dict:
    return {"finished": "2026-01-01T00:00:00Z", "reps": 1, "sizes": {str(rows): summary},
            "targets": report.targets({rows: summary}),
            "machine": {"cpu": "cpu", "cores": 2, "memory_gib": 24, "os": "Debian", "postgresql": "15",
                        "ansible_core": "2.19", "loadavg_start": [1.0, 1.0, 1.0], "loadavg_end": [2.0, 2.0, 2.0]}}


def test_online_markdown_and_chart(tmp_path):
    summary = report.summarize_size([_online_rep(1.0)])
    md = report.markdown(_result(summary, 1_000_000))
    assert "#### Online conversion against in place" in md
    assert ("| 1,000,000 | in place | 6.00 | 4.00 | 50 (worst 50) | 50 (worst 50) | 0.94 / 0.94 (idle 32.0/s) "
            "| 1 / 1 |") in md
    assert "| 1,000,000 | online | 15.00 | 8.00 | 100 (worst 100) | 600 (worst 600) | 0.50 / 0.25" in md
    assert "| 2.50x / 2.00x |" in md
    rows = [line for line in md.splitlines() if line.startswith("|")]
    assert all(line.endswith("|") for line in rows)
    report.chart(_result(summary, 1_000_000), tmp_path / "bench.png")
    assert (tmp_path / "bench.png").read_bytes().startswith(b"\x89PNG")


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
    assert args.online == "full" and args.online_batch_size is None and args.idle_seconds == 5.0


def test_cli_out_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.parse_args(["--out", "results"]).out == tmp_path / "results"


def test_cli_online_options():
    args = cli.parse_args(["--online", "migrate", "--online-batch-size", "20000", "--idle-seconds", "0.5"])
    assert (args.online, args.online_batch_size, args.idle_seconds) == ("migrate", 20000, 0.5)
    for bad in (["--online", "auto"], ["--online-batch-size", "0"], ["--idle-seconds", "0"]):
        try:
            cli.parse_args(bad)
        except SystemExit as exc:
            assert exc.code == 2
        else:
            raise AssertionError(f"accepted {bad}")


def test_memory_walks_descendants_only():
    # The fake module touches 32 MiB (so its peak RSS holds it), says so, then waits for stdin to close: the
    # samples are taken while it is certainly alive and at its peak, however slow the machine.
    child = "import sys; x = b'\\x01' * (32 << 20); print('ready', flush=True); sys.stdin.read()"
    module = subprocess.Popen([sys.executable, "-c", child, "AnsiballZ_fake_mod.py"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    stranger = subprocess.Popen(["sleep", "600"])  # not an ancestor of the fake module
    try:
        assert module.stdout is not None and module.stdout.readline() == "ready\n"
        with ModuleMemory(os.getpid()) as mine, ModuleMemory(stranger.pid) as other:
            mine.sample()  # one sample of our own besides the poller's: taken now, while the module is at its peak
            other.sample()
    finally:
        module.communicate(timeout=60)
        stranger.kill()
        stranger.wait()
    assert mine.peaks_mib()["module"].get("fake_mod", 0) >= 32, mine.peaks_mib()
    assert other.peaks_mib() == {"module": {}, "children": {}}
