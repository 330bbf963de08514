"""A concurrent writer: one small UPDATE every few tens of ms on its own connection.

It updates ``amount`` (not ``tokens``), so the content fingerprint the playbooks compare does not
change, yet each UPDATE needs the ROW EXCLUSIVE table lock that the migration's ALTER TABLE
(ACCESS EXCLUSIVE) blocks. The longest UPDATE is the longest time a writer was blocked.
Its throughput (UPDATEs per second over the time it ran) compared with the same probe on an idle
table (``idle``) says how much of the writer's work the run cost: a paced writer, so 1.0 is
"as if nothing ran" and every blocked or slowed UPDATE lowers it.
Bounded in count and time, loopback only (the URL comes from ``env.database_url``).
"""

from __future__ import annotations

import threading
import time

import psycopg2

UPDATE_SQL = "UPDATE ml_features SET amount = amount WHERE txn_id = %s"


class WriterProbe:
    def __init__(self, url: str, interval: float = 0.03, max_seconds: float = 1800.0, max_updates: int = 200_000):
        self.url = url
        self.interval = interval
        self.max_seconds = max_seconds
        self.max_updates = max_updates
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self._worst_at = 0.0
        self._worst_wall = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self._ended = 0.0

    def __enter__(self) -> WriterProbe:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        conn = psycopg2.connect(self.url, application_name="ledgermind-bench-probe", connect_timeout=10)
        conn.autocommit = True
        with conn.cursor() as cur:
            # A safety bound, never reached in a healthy run: the probe waits as long as a writer would.
            cur.execute("SET statement_timeout = %s", (int(self.max_seconds * 1000),))
            cur.execute("SELECT min(txn_id), max(txn_id) FROM ml_features")
            low, high = cur.fetchone()
        self._keys = (low or 0, high or 0)
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._loop, args=(conn,), name="writer-probe", daemon=True)
        self._thread.start()

    def _loop(self, conn: psycopg2.extensions.connection) -> None:
        low, high = self._keys
        key = low
        try:
            with conn.cursor() as cur:
                # The first UPDATE runs whatever happens meanwhile: however fast the measured commands
                # finish, the probe reports at least one write, never an empty (and meaningless) summary.
                while not self.latencies or (
                        not self._stop.is_set() and len(self.latencies) < self.max_updates
                        and time.perf_counter() - self._started < self.max_seconds):
                    began, began_wall = time.perf_counter(), time.time()
                    try:
                        cur.execute(UPDATE_SQL, (key,))
                    except psycopg2.Error as exc:
                        self.errors.append(" ".join(str(exc).split())[:200])
                        if conn.closed:
                            return
                    took = time.perf_counter() - began
                    if not self.latencies or took > max(self.latencies):
                        self._worst_at = began - self._started
                        self._worst_wall = began_wall
                    self.latencies.append(took)
                    key = low if key >= high else key + 1
                    self._stop.wait(max(0.0, self.interval))
        finally:
            self._ended = time.perf_counter()
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.max_seconds + 10)

    def summary(self) -> dict:
        lat = sorted(self.latencies)
        elapsed = max(0.0, (self._ended or time.perf_counter()) - self._started) if self._started else 0.0
        return {
            "updates": len(lat),
            "errors": len(self.errors),
            "first_error": self.errors[0] if self.errors else None,
            "max_blocked_ms": round(lat[-1] * 1000, 1) if lat else None,
            "max_blocked_at_s": round(self._worst_at, 2),
            # Wall clock (epoch) of the longest UPDATE's start: matched with the playbook's task times.
            "max_blocked_wall": round(self._worst_wall, 3) if lat else None,
            "p50_ms": round(lat[len(lat) // 2] * 1000, 2) if lat else None,
            "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 2) if lat else None,
            "elapsed_s": round(elapsed, 3),
            "per_second": round(len(lat) / elapsed, 2) if lat and elapsed > 0 else None,
            "over_100ms": sum(1 for x in lat if x > 0.1),
            "interval_ms": round(self.interval * 1000),
        }


def idle(url: str, seconds: float, interval: float = 0.03) -> dict:
    """The probe alone for ``seconds`` on a table nothing else works on: the throughput a run is compared with."""
    with WriterProbe(url, interval=interval) as probe:
        time.sleep(max(0.0, seconds))
    return probe.summary()
