"""`make bench` / `python scripts/bench [--sizes 10000,1000000] [--10m] [--reps 3] [--rehearsal full|off|only]`.

Seeds a database of its own (``ledgermind_bench`` on the local stack, or on $DATABASE_URL's
server, loopback only), times the runbook's bare commands and our playbooks' phases at each size,
our playbooks both in place and online (``--online migrate`` leaves out the online rollback,
``--online off`` the online conversion), and the migrate with the rehearsal on against off, with the
rehearsal's own steps, up to ``--rehearsal-max-rows`` (``--rehearsal only``: that alone, ``off``: not),
and writes results/bench.json, results/bench.md and results/bench.png; prints the Markdown.
Numbers are measured, never judged here: the targets table says which are met.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from . import report, runner
from .env import REPO, BenchError, database_url, machine

DEFAULT_SIZES = (10_000, 1_000_000)
ONLINE_CHOICES = ("full", "migrate", "off")
REHEARSAL_CHOICES = ("full", "off", "only")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                        help="comma-separated row counts (default 10000,1000000)")
    parser.add_argument("--10m", dest="ten_million", action="store_true", help="also 10,000,000 rows (long)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per size; the median is reported (default 3)")
    parser.add_argument("--out", type=Path, default=REPO / "results", help="results folder (default results/)")
    parser.add_argument("--db", default="ledgermind_bench", help="database to (re)create (default ledgermind_bench)")
    parser.add_argument("--probe-interval-ms", type=int, default=30,
                        help="pause between the writer probe's UPDATEs (default 30)")
    parser.add_argument("--keep-work", action="store_true", help="keep dumps, backups and reports under OUT/work")
    parser.add_argument("--online", choices=ONLINE_CHOICES, default="full",
                        help="our playbooks with ledgermind_conversion=online too: full (migrate and rollback, the "
                             "default), migrate (the migrate only) or off")
    parser.add_argument("--online-batch-size", type=int, default=None,
                        help="rows per online backfill batch (default: the roles' ledgermind_online_batch_size)")
    parser.add_argument("--rehearsal", choices=REHEARSAL_CHOICES, default="full",
                        help="full (the default): each repetition also runs our migrate playbook in place with the "
                             "rehearsal on, for its cost; only: that and the same run without it, nothing else; off")
    parser.add_argument("--rehearsal-max-rows", type=int, default=1_000_000,
                        help="largest size the rehearsal is measured at (default 1000000: not at 10M)")
    parser.add_argument("--idle-seconds", type=float, default=5.0,
                        help="how long the writer probe runs alone before our playbooks, the throughput baseline "
                             "(default 5)")
    args = parser.parse_args(argv)
    # Absolute: the playbooks get OUT/work/... for their backups and reports, and would read a relative
    # path from the playbook's directory (playbooks/results/...), where the bench never finds the sign-off.
    args.out = args.out.resolve()
    try:
        args.sizes = sorted({int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        parser.error(f"--sizes: whole numbers separated by commas, got {args.sizes!r}")
    if args.ten_million:
        args.sizes = sorted(set(args.sizes) | {10_000_000})
    if not args.sizes or min(args.sizes) < 10:
        parser.error("--sizes: at least one size, each at least 10 rows")
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    if not 5 <= args.probe_interval_ms <= 1000:
        parser.error("--probe-interval-ms must be between 5 and 1000")
    if args.online_batch_size is not None and args.online_batch_size < 1:
        parser.error("--online-batch-size must be at least 1")
    if not 0.2 <= args.idle_seconds <= 600:
        parser.error("--idle-seconds must be between 0.2 and 600")
    return args


def run(args: argparse.Namespace) -> int:
    url = database_url(args.db)
    started = datetime.now(UTC)
    result: dict = {
        "started": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "reps": args.reps,
        "online": args.online,
        "rehearsal": args.rehearsal,
        "online_batch_size": args.online_batch_size,
        "probe_interval_ms": args.probe_interval_ms,
        "idle_seconds": args.idle_seconds,
        "database": args.db,
        "machine": machine(url),
        "sizes": {},
        "raw": {},
    }
    work = args.out / "work"
    clock = time.perf_counter()
    summaries: dict[int, dict] = {}
    for rows in args.sizes:
        if args.rehearsal == "only" and rows > args.rehearsal_max_rows:
            continue
        rehearsal = args.rehearsal if rows <= args.rehearsal_max_rows else "off"
        reps = runner.run_size(url, args.db, rows, args.reps, work, args.probe_interval_ms / 1000, args.keep_work,
                               online=args.online, idle_seconds=args.idle_seconds, batch_size=args.online_batch_size,
                               rehearsal=rehearsal)
        summaries[rows] = report.summarize_size(reps)
        result["sizes"][str(rows)] = summaries[rows]
        result["raw"][str(rows)] = reps
        # A checkpoint: a later size failing still leaves this one's numbers.
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench.partial.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n",
                                                     encoding="utf-8")
    result["finished"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    result["seconds"] = round(time.perf_counter() - clock, 1)
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    result["targets"] = report.targets(summaries)
    paths = report.write(result, args.out)
    (args.out / "bench.partial.json").unlink(missing_ok=True)
    if not args.keep_work:
        with contextlib.suppress(OSError):
            work.rmdir()
    print(report.markdown(result))
    print(f"Written: {', '.join(str(p) for p in paths.values())}")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(parse_args(argv))
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
