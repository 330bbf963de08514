"""The archive's content in the dump's own snapshot (issue 11 section 3), module_utils/_pg_clients.py: the sidecar's
``content`` record, when it cannot be taken, the exporting transaction (what it runs, in which order, and that every
way out closes it) and the scan that runs on a thread of its own while pg_dump dumps.

The real thing (pg_dump --snapshot, the fingerprint equal to pg_jsonb_integrity's, live writes) runs against
PostgreSQL in tests/integration/backup.
"""
from __future__ import annotations

import threading
import typing as t

import psycopg2
import pytest
from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ledgermind.migrations.plugins.module_utils import _pg_clients as pc
from ansible_collections.ledgermind.migrations.plugins.module_utils._connection import (
    postgres_connection_argument_spec,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._queries import (
    Sums,
    fingerprint,
    integrity_counts_sql,
    integrity_params,
)

URL = 'postgresql://ledgermind:hunter2-secret@db:5432/ledgermind'
TEXT_ARRAY = {'data_type': 'ARRAY', 'udt_name': '_text', 'formatted_type': 'text[]'}
JSONB = {'data_type': 'jsonb', 'udt_name': 'jsonb', 'formatted_type': 'jsonb'}
TARGET = {'schema': 'public', 'table': 'ml_features', 'key': 'txn_id', 'column': 'tokens', 'kind': 'text_array'}


# ------------------------------------------------------------------------------------------ pure helpers


def test_content_record_is_pg_jsonb_integritys_fingerprint_of_the_sums() -> None:
    sums = Sums(20000, -(2 ** 70) + 3, 2 ** 69 + 5)  # beyond 64 bits, as sums of 64-bit hashes are
    record = pc.content_record(sums, '100:105:102', 'tokens', 'txn_id')
    assert record == {
        'fingerprint': fingerprint(20000, (sums.hash1, sums.hash2)),
        'fingerprint_sums': {'total': 20000, 'hash1': str(-(2 ** 70) + 3), 'hash2': str(2 ** 69 + 5)},
        'snapshot': '100:105:102', 'column': 'tokens', 'key': 'txn_id',
    }
    # Exact integers survive JSON as decimal strings, as pg_jsonb_integrity's baseline takes them.
    assert Sums(record['fingerprint_sums']['total'], int(record['fingerprint_sums']['hash1']),
                int(record['fingerprint_sums']['hash2'])) == sums


@pytest.mark.parametrize(
    ('info', 'keys', 'reason'),
    [
        (TEXT_ARRAY, ['txn_id'], None),
        (JSONB, ['txn_id'], None),
        ({'data_type': 'json', 'udt_name': 'json', 'formatted_type': 'json'}, ['id'], None),
        ({'data_type': 'ARRAY', 'udt_name': '_int4', 'formatted_type': 'integer[]'}, ['id'], None),
        (None, ['txn_id'], 'it has no column tokens'),
        ({'data_type': 'text', 'udt_name': 'text', 'formatted_type': 'text'}, ['txn_id'],
         'column tokens is text; the fingerprint reads jsonb, json or array (e.g. text[]) columns'),
        (TEXT_ARRAY, [], 'the table has no primary key; the fingerprint needs a single-column primary key'),
        (TEXT_ARRAY, ['a', 'b'],
         'the table has a multi-column primary key (a, b); the fingerprint needs a single-column primary key'),
    ],
)
def test_content_skip_reason(info, keys, reason) -> None:
    got = pc.content_skip_reason('public', 'ml_features', 'tokens', info, keys)
    assert got == (None if reason is None else 'no content fingerprint recorded for the archive of '
                                                'public.ml_features: ' + reason)


@pytest.mark.parametrize(('seconds', 'setting'), [(5, '5s'), (0, '0'), (None, '0')])
def test_lock_timeout_setting(seconds, setting) -> None:
    assert pc.lock_timeout_setting(seconds) == setting


def test_a_sidecar_whose_content_is_not_an_object_is_refused() -> None:
    assert pc.sidecar_problem({'content': None}) is None
    assert pc.sidecar_problem({'content': {'fingerprint': 'ab'}}) is None
    assert pc.sidecar_problem({'content': 'ab'}) == 'fields of the wrong type: content is str'


# ------------------------------------------------------------------------------- the scan on its thread


class Blocking:
    """A fake psycopg2 connection whose scan blocks until released or cancelled (as the server would answer a
    cancel request: with QueryCanceled)."""

    def __init__(self, row: dict[str, t.Any] | None = None, error: BaseException | None = None,
                 block: bool = False) -> None:
        self.row = row if row is not None else {'total': 3, 'hash1': '-12', 'hash2': '34'}
        self.error = error
        self.release = threading.Event()
        if not block:
            self.release.set()
        self.running = threading.Event()
        self.cancelled = False
        self.closed = False
        self.rolled_back = False
        self.threads: list[str] = []
        self.executed: list[t.Any] = []

    def cursor(self) -> Blocking:
        return self

    def __enter__(self) -> Blocking:
        return self

    def __exit__(self, *exc: t.Any) -> None:
        return None

    def execute(self, query: t.Any, params: t.Any = None) -> None:
        self.threads.append(threading.current_thread().name)
        self.executed.append((query, params))
        self.running.set()
        self.release.wait(10)
        if self.cancelled:
            raise psycopg2.extensions.QueryCanceledError('canceling statement due to user request')
        if self.error is not None:
            raise self.error

    def fetchone(self) -> dict[str, t.Any]:
        return self.row

    def cancel(self) -> None:
        self.cancelled = True
        self.release.set()

    def rollback(self) -> None:
        self.rolled_back = True

    def close(self) -> None:
        self.closed = True


def test_the_scan_runs_the_counting_pass_on_its_own_thread_and_gives_the_content() -> None:
    conn = Blocking(row={'total': 3, 'hash1': -12, 'hash2': 34, 'nulls': 0})
    snapshot = pc.DumpSnapshot(conn, TARGET, '10:12:11', '00000003-0000001B-1')
    snapshot.start_scan()
    assert snapshot.content() == pc.content_record(Sums(3, -12, 34), '10:12:11', 'tokens', 'txn_id')
    assert conn.threads == ['ledgermind-content-scan']
    # pg_jsonb_integrity's own counting pass, with its parameters: the same sums for the same rows.
    assert conn.executed == [(integrity_counts_sql(**TARGET), integrity_params('array', 'string'))]
    snapshot.close()
    snapshot.close()  # the second time does nothing
    assert conn.closed and conn.rolled_back and not conn.cancelled


def test_closing_cancels_a_scan_still_running_and_then_closes() -> None:
    conn = Blocking(block=True)
    snapshot = pc.DumpSnapshot(conn, TARGET, '10:12:11', 'x')
    snapshot.start_scan()
    assert conn.running.wait(5)
    snapshot.close()  # e.g. pg_dump failed: nobody waits for the scan
    assert conn.cancelled and conn.closed
    assert snapshot.scan_error() == ("the archive's content fingerprint could not be computed in the dump's snapshot: "
                                     "the scan of public.ml_features was cancelled: canceling statement due to user "
                                     "request")


def test_a_scan_that_does_not_return_after_the_cancel_is_left_to_the_process_exit(monkeypatch) -> None:
    monkeypatch.setattr(pc, 'CANCEL_WAIT_SECONDS', 0.05)
    conn = Blocking(block=True)
    conn.cancel = lambda: None  # type: ignore[method-assign]  # the server never answers
    snapshot = pc.DumpSnapshot(conn, TARGET, '10:12:11', 'x')
    snapshot.start_scan()
    assert conn.running.wait(5)
    snapshot.close()
    assert not conn.closed  # closing would wait for the scan; the daemon thread dies with the process
    conn.release.set()


@pytest.mark.parametrize(
    ('error', 'says'),
    [
        (psycopg2.extensions.QueryCanceledError('canceling statement due to user request'),
         'the scan of public.ml_features was cancelled: canceling statement due to user request'),
        (psycopg2.OperationalError('server closed the connection unexpectedly'),
         'PostgreSQL error while inspecting public.ml_features: server closed the connection unexpectedly'),
        (MemoryError('out of memory'), 'MemoryError: out of memory'),
    ],
)
def test_a_failed_scan_says_why(error, says) -> None:
    snapshot = pc.DumpSnapshot(Blocking(error=error), TARGET, '10:12:11', 'x')
    assert snapshot.scan_error() is None  # before it ran
    snapshot.start_scan()
    with pytest.raises(pc.ClientError) as caught:
        snapshot.content()
    assert str(caught.value) == ("the archive's content fingerprint could not be computed in the dump's snapshot: "
                                 + says)
    assert snapshot.scan_error() == str(caught.value)
    snapshot.close()


def test_content_before_the_scan_started_is_an_error() -> None:
    with pytest.raises(pc.ClientError, match='never started'):
        pc.DumpSnapshot(Blocking(), TARGET, '10:12:11', 'x').content()


# ------------------------------------------------------------------------------ the exporting transaction


def open_main(**extra: t.Any) -> t.Callable[[], None]:
    """A module main() running open_dump_snapshot and reporting what it got (the transaction left open)."""

    def main() -> None:
        spec = postgres_connection_argument_spec()
        module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
        opened = pc.open_dump_snapshot(module, 'public', 'ml_features', 'tokens', 'ledgermind.migrations.test')
        if isinstance(opened, str):
            module.exit_json(skipped=opened)
        else:
            module.exit_json(target=opened.target, snapshot=opened.snapshot, snapshot_id=opened.snapshot_id,
                             lock_timeout=opened.lock_timeout)

    return main


def script(info: dict[str, t.Any] | None = TEXT_ARRAY, keys: tuple[str, ...] = ('txn_id',),
           lock: t.Any = None) -> list[tuple[str, t.Any]]:
    return [
        ('SET LOCAL', []),
        ('LOCK TABLE', lock if lock is not None else []),
        ('relkind', [{'schema_exists': True, 'relid': 16390, 'relkind': 'r'}]),
        ('formatted_type', [dict(info, column_name='tokens', is_nullable=True)] if info else []),
        ('indisprimary', [{'column_name': k} for k in keys]),
        ('pg_current_snapshot', [{'snapshot': '10:12:11', 'isolation': 'repeatable read'}]),
        ('pg_export_snapshot', [{'snapshot_id': '00000003-0000001B-1'}]),
        ('pg_locks', [{'pid': 4242, 'usename': 'app', 'mode': 'AccessExclusiveLock', 'state': 'idle in transaction',
                       'query': 'ALTER TABLE ml_features ...'}]),
    ]


def test_the_table_is_locked_before_any_snapshot_then_the_snapshot_is_exported(run_module) -> None:
    failed, result, conn = run_module(open_main(), {'database_url': URL, 'lock_timeout': 7}, script=script())
    assert not failed, result
    assert result['target'] == TARGET
    assert (result['snapshot'], result['snapshot_id'], result['lock_timeout']) == ('10:12:11', '00000003-0000001B-1', 7)
    assert conn.session == {'isolation_level': 'REPEATABLE READ', 'readonly': True, 'autocommit': False}
    ran = [q for q, _p in conn.executed]
    # Nothing takes a snapshot before the lock: SET LOCAL (no set_config() SELECT), then LOCK, then the queries.
    assert ran[:4] == ['SET LOCAL statement_timeout = 0', 'SET LOCAL idle_in_transaction_session_timeout = 0',
                       'SET LOCAL lock_timeout = %(lock_timeout)s',
                       'LOCK TABLE "public"."ml_features" IN ACCESS SHARE MODE']
    assert conn.executed[2][1] == {'lock_timeout': '7s'}
    assert not any('set_config' in q for q in ran)
    assert 'pg_export_snapshot' in ran[-1]
    assert not conn.closed  # left open for pg_dump's import and the scan


@pytest.mark.parametrize(
    ('info', 'keys', 'why'),
    [(None, ('txn_id',), 'it has no column tokens'),
     (TEXT_ARRAY, ('a', 'b'), 'the table has a multi-column primary key (a, b)')],
)
def test_no_content_possible_exports_nothing_and_closes(run_module, info, keys, why) -> None:
    failed, result, conn = run_module(open_main(), {'database_url': URL}, script=script(info, keys))
    assert not failed and why in result['skipped']
    assert not conn.ran('pg_export_snapshot') and conn.closed


def test_a_lock_wait_that_times_out_names_the_holder_and_closes(run_module, pg_error) -> None:
    lock = pg_error('canceling statement due to lock timeout', '55P03')
    failed, result, conn = run_module(open_main(), {'database_url': URL, 'lock_timeout': 2},
                                      script=script(lock=lock))
    assert failed
    assert result['msg'].startswith('public.ml_features is locked by another session: pid 4242 (app, '
                                    'AccessExclusiveLock, idle in transaction): ALTER TABLE ml_features ...')
    assert 'lock_timeout=2s' in result['msg'] and 'hunter2-secret' not in result['msg']
    assert conn.closed and not conn.ran('pg_export_snapshot')


def test_a_connection_that_fails_is_a_clear_failure(run_module) -> None:
    failed, result, _conn = run_module(open_main(), {'database_url': URL},
                                       connect_error=psycopg2.OperationalError('could not connect to server'))
    assert failed and result['msg'].startswith('Cannot reach PostgreSQL at ledgermind@db:5432/ledgermind.')
