"""Smoke test of `make bench` (scripts/bench): a tiny size, one repetition, real PostgreSQL and
real ansible-playbook. Checks that the JSON, Markdown and PNG exist and are well-formed; it
asserts no timing (the targets are measured by the bench, never by tests): a duration is only
checked to be a number, never to be above zero, because at this size a fast machine rounds a
phase or a scan to 0.0. That a phase ran is judged by its tasks and steps instead.

The online conversion runs too, its migrate only (``--online migrate``: the online rollback would
add another 15-25 s, and its code in the bench is the migrate's with another phase name, covered
by the unit tests); the probe's idle baseline is cut to half a second."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from stackdb import drop_database, reachable_server_url

REPO = Path(__file__).resolve().parents[3]
DB = "lm_test_bench"
ROWS = 200


@pytest.fixture(scope="module")
def bench_out(tmp_path_factory: pytest.TempPathFactory):
    url = reachable_server_url()
    out = tmp_path_factory.mktemp("bench")
    # A guard against a hang, not a speed bound: about 130 s on a loaded 2-core machine (30-40 s of it online).
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "bench"), "--sizes", str(ROWS), "--reps", "1",
                           "--out", str(out), "--db", DB, "--online", "migrate", "--idle-seconds", "0.5"],
                          cwd=REPO, capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "DATABASE_URL": url}, check=False)
    try:
        yield out, proc
    finally:
        drop_database(url, DB)


def test_bench_runs_and_prints_the_table(bench_out):
    out, proc = bench_out
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"#### {ROWS:,} rows" in proc.stdout
    assert "| **DB phases**" in proc.stdout
    assert "#### Targets (measured, not asserted)" in proc.stdout
    assert "#### Online conversion against in place" in proc.stdout


def measured(value) -> bool:
    """A duration or ratio as the bench reports it: a number, never negative; how small is the machine's business."""
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def test_bench_json_is_complete(bench_out):
    out, _ = bench_out
    result = json.loads((out / "bench.json").read_text())
    assert result["reps"] == 1
    assert result["machine"]["cores"] >= 1
    size = result["sizes"][str(ROWS)]
    raw = result["raw"][str(ROWS)][0]
    for phase in ("preflight", "backup", "migrate", "validate", "report", "overhead",
                  "rollback_downgrade", "rollback_validate", "rollback_report", "rollback_overhead"):
        assert measured(size["phases"][phase]["ours"]), (phase, size["phases"][phase])
    # The tasks keep the phase task_phases gave them (a rollback's unattributed tasks say "overhead").
    ran = {t["phase"] for t in raw["ours"]["tasks"]}
    assert {"preflight", "backup", "migrate", "validate", "report", "overhead",
            "rollback_downgrade", "rollback_validate", "rollback_report"} <= ran, ran
    for phase in ("preflight", "backup", "migrate", "validate", "rollback_downgrade", "rollback_validate"):
        assert measured(size["phases"][phase]["bare"]), (phase, size["phases"][phase])
        assert measured(size["phases"][phase]["ratio"]), (phase, size["phases"][phase])
    steps = {s["phase"] for s in raw["bare"]["steps"]}
    assert {"preflight", "backup", "migrate", "validate", "rollback_downgrade", "rollback_validate"} <= steps, steps
    assert size["backup"]["plain_dump_bytes"] > 0 and size["backup"]["verified_bytes"] > 0
    for key in ("bare_migrate", "ours_migrate", "bare_rollback", "ours_rollback"):
        assert size["probe"][key]["updates"] > 0, key  # the probe's first UPDATE always runs
        assert size["probe"][key]["errors"] == 0, key
        assert measured(size["probe"][key]["max_blocked_ms_median"]), key
    for state in ("text", "jsonb"):
        assert measured(size["scan"][state]["count_star_seconds"]), size["scan"][state]
        assert measured(size["scan"][state]["integrity_seconds"]), size["scan"][state]
    assert raw["scan_text"]["column_type"] == "text[]" and raw["scan_jsonb"]["column_type"] == "jsonb"
    # Peak RSS of a process that ran is never zero, however fast; the module is polled while it runs.
    assert size["memory"]["module"]["pg_jsonb_integrity"] > 0
    assert {"alembic_migrate", "pg_backup_archive"} <= set(size["memory"]["module"])
    assert raw["ours"]["migrate_verdict"] == "PASSED"
    assert raw["ours"]["rollback_verdict"] == "PASSED"
    names = {t["target"] for t in result["targets"]}
    assert "DB phases ours/bare" in names and "whole migrate playbook" in names
    assert all(t["met"] in (True, False, None) for t in result["targets"])


def test_bench_online_migrate_ran_and_is_measured(bench_out):
    out, _ = bench_out
    result = json.loads((out / "bench.json").read_text())
    assert result["online"] == "migrate"
    raw = result["raw"][str(ROWS)][0]
    online = raw["online"]
    assert online["migrate_verdict"] == "PASSED"
    # The online path, not the in-place one (which auto would pick at this size): the converted column comes
    # last, with its index, the revision recorded, no shadow column or sync trigger left over.
    state = online["state_after_migrate"]
    assert state["column_type"] == "jsonb" and state["gin_index"] and state["revision"] == "502d44cd70ab", state
    assert state["column_is_last"] is True, state
    assert state["shadow_columns"] == [] and not any("online" in t for t in state["triggers"]), state
    steps = online["migrate_steps"]
    assert {"plan", "expand", "backfill", "index", "verify", "swap"} <= set(steps["steps"]), steps
    assert isinstance(steps["swap"]["tries"], int) and steps["swap"]["tries"] >= 1, steps["swap"]
    assert steps["progress"]["done"] is True and steps["backfill_slices"] >= 1, steps
    # The conversion's own tasks count in the migrate phase, as alembic_migrate's do in place.
    assert any(t["phase"] == "migrate" and "online_conversion : Swap" in t["task"] for t in online["tasks"])
    assert measured(online["phases"]["migrate"]) and online["phases"]["migrate"] > 0
    # Only the migrate ran: no rollback figures.
    assert online["rollback_wall"] is None and "probe_online_rollback" not in raw
    # The writer probe: its idle baseline, and its longest block and throughput during the online migrate.
    for key in ("probe_idle_ours", "probe_idle_online", "probe_online_migrate"):
        assert raw[key]["updates"] > 0 and raw[key]["errors"] == 0, (key, raw[key])
        assert measured(raw[key]["per_second"]) and raw[key]["per_second"] > 0, (key, raw[key])
    summary = result["sizes"][str(ROWS)]["online"]
    for mode in ("in_place", "online"):
        writer = summary["modes"][mode]["writer_migrate"]
        assert measured(writer["max_blocked_ms_median"]) and measured(writer["vs_idle"]), (mode, writer)
        assert writer["errors"] == 0, (mode, writer)
        assert measured(summary["modes"][mode]["migrate_whole"]), summary["modes"][mode]
    assert summary["modes"]["online"]["writer_rollback"]["max_blocked_ms_median"] is None
    assert measured(summary["ratio"]["migrate_whole"]) and summary["ratio"]["rollback_whole"] is None
    assert summary["modes"]["online"]["verdicts"] == [["PASSED", None]]
    targets = {t["target"]: t for t in result["targets"]}
    block = targets["online: writer's longest block, migrating (worst rep)"]
    assert measured(block["measured"]) and block["met"] in (True, False), block
    assert targets["online: writer's longest block, rolling back (worst rep)"]["met"] is None


def test_bench_markdown_and_chart(bench_out):
    out, proc = bench_out
    md = (out / "bench.md").read_text()
    assert md in proc.stdout
    assert md.count("| preflight |") == 1
    png = (out / "bench.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert not (out / "work").exists()  # dumps and backups are removed unless --keep-work


def test_bench_rehearsal_cost_is_measured(bench_out):
    """The bench's default also runs the migrate with the rehearsal on, and reads the rehearsal's own report."""
    out, proc = bench_out
    result = json.loads((out / "bench.json").read_text())
    rehearsal = result["sizes"][str(ROWS)]["rehearsal"]
    assert rehearsal["passed"] == [True] and rehearsal["verdicts"] == ["PASSED"], rehearsal
    assert {"restore", "migrate", "validate", "rollback", "verify_rollback", "remigrate", "drop"} <= set(
        rehearsal["steps"]), rehearsal
    for key in ("migrate_whole_off", "migrate_whole_on", "rehearsal_seconds"):
        assert measured(rehearsal[key]), (key, rehearsal)
    assert "#### The rehearsal's cost" in proc.stdout
    names = {t["target"] for t in result["targets"]}
    assert "whole migrate playbook, rehearsal included" in names, names
