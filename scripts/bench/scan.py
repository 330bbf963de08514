"""The integrity + fingerprint scan against a bare ``count(*)`` scan, and the module's peak memory.

``count(*)`` and the runbook's row-count query are timed in-process on one connection (server
time plus a loopback round trip, median of ``tries`` after a warm-up, so all read a warm cache).
The module runs as an operator would run it, ``ansible localhost -m
ledgermind.migrations.pg_jsonb_integrity``; its ``scan_seconds`` is the same kind of number
(its one counting query), and its process is watched for peak memory.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time

import psycopg2

from .bare import COUNTS_SQL
from .env import REPO, VENV_BIN, BenchError, base_env
from .memory import ModuleMemory

COUNT_SQL = "SELECT count(*) FROM ml_features"
MODULE = "ledgermind.migrations.pg_jsonb_integrity"


def time_query(url: str, query: str, tries: int = 3) -> float:
    conn = psycopg2.connect(url, application_name="ledgermind-bench-scan")
    try:
        with conn.cursor() as cur:
            cur.execute(query)  # warm-up
            cur.fetchall()
            times = []
            for _ in range(tries):
                began = time.perf_counter()
                cur.execute(query)
                cur.fetchall()
                times.append(time.perf_counter() - began)
        conn.rollback()
    finally:
        conn.close()
    return statistics.median(times)


def run_module(url: str) -> dict:
    env = base_env(url)
    env["ANSIBLE_LOAD_CALLBACK_PLUGINS"] = "1"
    env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
    args = ("table=ml_features column=tokens sample_rows=5"
            " database_url={{ lookup('ansible.builtin.env', 'DATABASE_URL') }}")
    argv = [str(VENV_BIN / "ansible"), "localhost", "-i", str(REPO / "inventories" / "local"), "-m", MODULE, "-a", args]
    began = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with ModuleMemory(proc.pid, interval=0.01) as mem:
        out, err = proc.communicate()
    wall = time.perf_counter() - began
    try:
        result = json.loads(out)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError):
        raise BenchError(f"{MODULE}: unexpected output (rc={proc.returncode}): {(err or out).strip()[-400:]}") from None
    if result.get("failed"):
        raise BenchError(f"{MODULE} failed: {result.get('msg')}")
    peaks = mem.peaks_mib()
    return {
        "scan_seconds": float(result["scan_seconds"]),
        "wall_seconds": wall,
        "total": result["total"],
        "column_type": result["column_type"],
        "peak_mib": peaks["module"].get("pg_jsonb_integrity"),
    }


def measure(url: str) -> dict:
    count_star = time_query(url, COUNT_SQL)  # also warms the cache for the module
    module = run_module(url)
    return {
        "column_type": module["column_type"],
        "count_star_seconds": count_star,
        "runbook_counts_seconds": time_query(url, COUNTS_SQL),
        "integrity_seconds": module["scan_seconds"],
        "integrity_module_wall_seconds": module["wall_seconds"],
        "integrity_peak_mib": module["peak_mib"],
    }


COLUMN_STATE_SQL = """SELECT
    (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
      WHERE a.attrelid = 'ml_features'::regclass AND a.attname = 'tokens' AND NOT a.attisdropped),
    (SELECT a.attnum = max(b.attnum) FROM pg_attribute a JOIN pg_attribute b ON b.attrelid = a.attrelid
      AND b.attnum > 0 AND NOT b.attisdropped
      WHERE a.attrelid = 'ml_features'::regclass AND a.attname = 'tokens' AND NOT a.attisdropped GROUP BY a.attnum),
    (SELECT count(*) FROM pg_indexes WHERE tablename = 'ml_features' AND indexname = 'ix_ml_features_tokens_gin'),
    (SELECT array_agg(attname::text ORDER BY attname) FROM pg_attribute
      WHERE attrelid = 'ml_features'::regclass AND attnum > 0 AND NOT attisdropped AND attname LIKE 'tokens\\_\\_%'),
    (SELECT array_agg(tgname::text ORDER BY tgname) FROM pg_trigger
      WHERE tgrelid = 'ml_features'::regclass AND NOT tgisinternal),
    (SELECT string_agg(version_num, ',') FROM alembic_version)"""


def column_state(url: str) -> dict:
    """The column after a run, from the catalog only: type, last or not, the GIN index, leftovers, revision."""
    conn = psycopg2.connect(url, application_name="ledgermind-bench-scan")
    try:
        with conn.cursor() as cur:
            cur.execute(COLUMN_STATE_SQL)
            column_type, last, index, shadows, triggers, revision = cur.fetchone()
        conn.rollback()
    finally:
        conn.close()
    return {"column_type": column_type, "column_is_last": bool(last), "gin_index": bool(index),
            "shadow_columns": list(shadows or []), "triggers": list(triggers or []), "revision": revision}
