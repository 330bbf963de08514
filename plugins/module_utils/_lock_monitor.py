# Copyright (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Samples lock waits on a table from a background thread while a migration runs.

The runbook says to watch ``pg_stat_activity`` for lock waits by hand; this does it every few
hundred milliseconds and keeps only a summary, so memory stays flat however long it runs.
"""

from __future__ import annotations

import threading
import time
import typing as t
from collections.abc import Callable
from dataclasses import dataclass, field

from ansible_collections.ledgermind.migrations.plugins.module_utils._queries import LOCK_WAITS_SQL


@dataclass
class LockWaitSummary:
    samples: int = 0
    sample_errors: int = 0
    max_blocked_sessions: int = 0
    longest_wait_seconds: float = 0.0
    migration_longest_wait_seconds: float = 0.0
    blocking_pids: set[int] = field(default_factory=set)
    blocked_queries: list[str] = field(default_factory=list)

    def add(self, rows: list[tuple[t.Any, ...]], migration_app: str, max_queries: int = 5) -> None:
        """Fold one sample: rows of (pid, application_name, wait_seconds, blocking_pids, query)."""
        self.samples += 1
        others = 0
        for _pid, app, wait_seconds, blocking, query in rows:
            wait = float(wait_seconds or 0.0)
            if app == migration_app:
                self.migration_longest_wait_seconds = max(self.migration_longest_wait_seconds, wait)
                self.blocking_pids.update(int(p) for p in blocking or ())
                continue
            others += 1
            self.longest_wait_seconds = max(self.longest_wait_seconds, wait)
            if query and len(self.blocked_queries) < max_queries and query not in self.blocked_queries:
                self.blocked_queries.append(query)
        self.max_blocked_sessions = max(self.max_blocked_sessions, others)

    def as_dict(self) -> dict[str, t.Any]:
        return {
            'samples': self.samples,
            'sample_errors': self.sample_errors,
            'max_blocked_sessions': self.max_blocked_sessions,
            'longest_wait_seconds': round(self.longest_wait_seconds, 3),
            'migration_longest_wait_seconds': round(self.migration_longest_wait_seconds, 3),
            'blocking_pids': sorted(self.blocking_pids),
            'blocked_queries': self.blocked_queries,
        }


class LockMonitor:
    """Context manager: samples lock waits on ``schema.table`` until the block exits."""

    def __init__(self, connect: Callable[[], t.Any], schema: str, table: str, migration_app: str,
                 interval: float = 0.2) -> None:
        self._connect = connect
        self._params = {'schema': schema, 'table': table, 'app': migration_app}
        self._app = migration_app
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='lock-monitor', daemon=True)
        self.summary = LockWaitSummary()

    def __enter__(self) -> LockMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            conn = self._connect()
        except Exception:  # the migration must not fail because monitoring could not start
            self.summary.sample_errors += 1
            return
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                while not self._stop.is_set():
                    started = time.monotonic()
                    try:
                        cur.execute(LOCK_WAITS_SQL, self._params)
                        self.summary.add(cur.fetchall(), self._app)
                    except Exception:
                        self.summary.sample_errors += 1
                    self._stop.wait(max(self._interval - (time.monotonic() - started), 0.0))
        finally:
            conn.close()
