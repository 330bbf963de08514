"""Helpers the playbook tests share: the application writing on its own connection while a run is at work,
the table's content by key, and the run's verdict."""
from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from typing import Any

import psycopg2
import psycopg2.errors

DELETED = "<deleted>"


def assert_ok(run) -> None:
    assert run.rc == 0, run.describe()
    assert run.report is not None, "no sign-off report written\n" + run.describe()
    assert run.report["verdict"] == "PASSED", run.report


def assert_failed(run) -> None:
    assert run.rc != 0, run.describe()
    assert run.report is not None, "no sign-off report written\n" + run.describe()
    assert run.report["verdict"] == "FAILED", run.report


def content(db) -> dict[int, Any]:
    """Every row's tokens as a JSON value (text[] and jsonb read alike), by key."""
    return dict(db.query("SELECT txn_id, to_jsonb(tokens) FROM ml_features"))


def assert_content(db, expected: dict[int, Any]) -> None:
    actual = content(db)
    if actual != expected:
        missing = sorted(set(expected) - set(actual))[:10]
        extra = sorted(set(actual) - set(expected))[:10]
        differing = [(k, expected[k], actual[k]) for k in sorted(set(expected) & set(actual))
                     if expected[k] != actual[k]][:10]
        raise AssertionError(f"content differs: missing keys {missing}, unexpected keys {extra}, "
                             f"differing (key, expected, actual) {differing}")


def wait_for(what: str, probe, timeout: float = 240, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Writer(threading.Thread):
    """The application writing on its own connection while a run is at work: short autocommit INSERTs, UPDATEs
    (values and NULL) and DELETEs, in whatever type the column has at that moment (text[] or jsonb). Each write
    is logged once committed: ``committed`` holds the last value committed per key (DELETED when deleted)."""

    def __init__(self, db, new_keys: range, update_keys: range, delete_keys: range, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.conn = psycopg2.connect(db.url, application_name="lm_test_pb_writer")
        self.conn.autocommit = True
        with self.conn.cursor() as cur:
            cur.execute("SET statement_timeout = '60s'")
        self.new_keys, self.update_keys, self.delete_keys = iter(new_keys), list(update_keys), iter(delete_keys)
        self.interval = interval
        self.jsonb = False  # the column's type as last seen
        self.inserted: list[int] = []
        self.committed: dict[int, Any] = {}
        self.counts: Counter[str] = Counter()
        self.errors: list[str] = []
        self.stop_event = threading.Event()

    def _set(self, statement: str, key: int, value: Any) -> int:
        """``statement`` with the value as text[] or jsonb, whichever the column is now."""
        for _ in range(2):
            param = json.dumps(value) if self.jsonb and value is not None else value
            try:
                with self.conn.cursor() as cur:
                    cur.execute(statement.format(type="jsonb" if self.jsonb else "text[]"), (param, key))
                    return cur.rowcount
            except psycopg2.errors.DatatypeMismatch:
                self.jsonb = not self.jsonb  # the column was converted meanwhile: nothing was committed
        raise AssertionError("neither text[] nor jsonb was accepted")

    def step(self, i: int) -> None:
        op = i % 4
        if op == 0:
            key = next(self.new_keys)
            value = ["live", f"w{i}"]
            rows = self._set("INSERT INTO ml_features (tokens, txn_id) VALUES (%s::{type}, %s)", key, value)
            self.inserted.append(key)
        elif op == 1:
            key = self.update_keys[(7 * i) % len(self.update_keys)]
            value = None if i % 8 == 1 else ["upd", f"w{i}", "é"]
            rows = self._set("UPDATE ml_features SET tokens = %s::{type} WHERE txn_id = %s", key, value)
        elif op == 2:
            key = next(self.delete_keys, None)
            if key is None:
                return
            with self.conn.cursor() as cur:
                cur.execute("DELETE FROM ml_features WHERE txn_id = %s", (key,))
                rows = cur.rowcount
            value = DELETED
        else:
            if not self.inserted:
                return
            key = self.inserted[-1]
            value = ["again", f"w{i}"]
            rows = self._set("UPDATE ml_features SET tokens = %s::{type} WHERE txn_id = %s", key, value)
        assert rows == 1, (op, key, rows)
        self.committed[key] = value
        self.counts[("insert", "update", "delete", "update")[op]] += 1

    def run(self) -> None:
        i = 0
        while not self.stop_event.is_set():
            try:
                self.step(i)
            except Exception as exc:  # noqa: BLE001 - kept for the test's assertion
                self.errors.append(f"write {i}: {exc}")
            i += 1
            self.stop_event.wait(self.interval)

    def finish(self) -> None:
        self.stop_event.set()
        self.join(timeout=60)
        self.conn.close()

    def expected(self, before: dict[int, Any]) -> dict[int, Any]:
        """``before`` with every write this writer committed."""
        after = dict(before)
        for key, value in self.committed.items():
            if value == DELETED:
                after.pop(key, None)
            else:
                after[key] = value
        return after


@contextlib.contextmanager
def writing(db, **keys):
    writer = Writer(db, **keys)
    writer.start()
    try:
        yield writer
    finally:
        writer.finish()
    assert not writer.errors, writer.errors[:5]
