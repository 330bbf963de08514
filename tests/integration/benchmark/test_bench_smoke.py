"""Smoke test of `make bench` (scripts/bench): a tiny size, one repetition, real PostgreSQL and
real ansible-playbook. Checks that the JSON, Markdown and PNG exist and are well-formed; it
asserts no timing (the targets are measured by the bench, never by tests)."""
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
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "bench"), "--sizes", str(ROWS), "--reps", "1",
                           "--out", str(out), "--db", DB], cwd=REPO, capture_output=True, text=True, timeout=240,
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


def test_bench_json_is_complete(bench_out):
    out, _ = bench_out
    result = json.loads((out / "bench.json").read_text())
    assert result["reps"] == 1
    assert result["machine"]["cores"] >= 1
    size = result["sizes"][str(ROWS)]
    for phase in ("preflight", "backup", "migrate", "validate", "report", "overhead",
                  "rollback_downgrade", "rollback_validate", "rollback_report", "rollback_overhead"):
        assert size["phases"][phase]["ours"] > 0, phase
    for phase in ("preflight", "backup", "migrate", "validate", "rollback_downgrade", "rollback_validate"):
        assert size["phases"][phase]["bare"] > 0, phase
        assert size["phases"][phase]["ratio"] > 0, phase
    assert size["backup"]["plain_dump_bytes"] > 0 and size["backup"]["verified_bytes"] > 0
    for key in ("bare_migrate", "ours_migrate", "bare_rollback", "ours_rollback"):
        assert size["probe"][key]["updates"] > 0, key
        assert size["probe"][key]["errors"] == 0, key
        assert size["probe"][key]["max_blocked_ms_median"] >= 0, key
    for state in ("text", "jsonb"):
        assert size["scan"][state]["count_star_seconds"] > 0
        assert size["scan"][state]["integrity_seconds"] > 0
    assert size["memory"]["module"]["pg_jsonb_integrity"] > 0
    assert {"alembic_migrate", "pg_backup_archive"} <= set(size["memory"]["module"])
    raw = result["raw"][str(ROWS)][0]
    assert raw["ours"]["migrate_verdict"] == "PASSED"
    assert raw["ours"]["rollback_verdict"] == "PASSED"
    assert raw["scan_text"]["column_type"] == "text[]" and raw["scan_jsonb"]["column_type"] == "jsonb"
    names = {t["target"] for t in result["targets"]}
    assert "DB phases ours/bare" in names and "whole migrate playbook" in names
    assert all(t["met"] in (True, False, None) for t in result["targets"])


def test_bench_markdown_and_chart(bench_out):
    out, proc = bench_out
    md = (out / "bench.md").read_text()
    assert md in proc.stdout
    assert md.count("| preflight |") == 1
    png = (out / "bench.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert not (out / "work").exists()  # dumps and backups are removed unless --keep-work
