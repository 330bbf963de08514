"""pg_backup_restore's lock budget (issue 11 §4): the script's header gets the budget, a lock timeout is told from
other failures, the options are checked, and the words after a failed restore come from what was read back.

The tries themselves run against a real server in tests/integration/backup/test_restore_lock_budget.py.
"""
from __future__ import annotations

import io
import types
import typing as t

import pytest

from ansible_collections.ledgermind.migrations.plugins.modules import pg_backup_restore as m

LOCKED = 'psql:/w/restore.sql:21: ERROR:  55P03: canceling statement due to lock timeout'

HEADER = (b'--\n-- PostgreSQL database dump\n--\n\n\\restrict abc\n\nBEGIN;\n\nSET statement_timeout = 0;\n'
          b'SET lock_timeout = 0;\nSET idle_in_transaction_session_timeout = 0;\n'
          b"SELECT pg_catalog.set_config('search_path', '', false);\n\n")
BODY = (b'DROP TABLE IF EXISTS public.ml_features;\nCREATE TABLE public.ml_features (txn_id bigint);\n'
        b'COPY public.ml_features (txn_id) FROM stdin;\n1\nSET lock_timeout = 0;\n\\.\nCOMMIT;\n')


def fed(script: bytes, ms: int = 500) -> tuple[bytes, bool]:
    sink = io.BytesIO()
    placed = m.feed_script(io.BytesIO(script), sink, m.lock_timeout_line(ms))
    return sink.getvalue(), placed


def test_the_headers_lock_timeout_off_becomes_the_budget_and_the_data_is_untouched() -> None:
    out, placed = fed(HEADER + BODY)
    assert placed
    assert out == (HEADER.replace(b'SET lock_timeout = 0;\n', b"SET lock_timeout = '500ms';\n") + BODY)


def test_a_header_without_the_line_gets_the_budget_before_the_first_statement() -> None:
    out, placed = fed(HEADER.replace(b'SET lock_timeout = 0;\n', b'') + BODY, 1000)
    assert placed
    assert b"SET lock_timeout = '1000ms';\nDROP TABLE IF EXISTS" in out
    assert out.count(b"SET lock_timeout = '1000ms';") == 1 and out.endswith(BODY)


@pytest.mark.parametrize(
    ('stderr', 'lock'),
    [
        ('psql:/w/restore.sql:21: ERROR:  55P03: canceling statement due to lock timeout\nLOCATION:  x', True),
        ('psql:/w/restore.sql:21: ERROR:  canceling statement due to lock timeout', True),
        ('psql:/w/restore.sql:23: ERROR:  2BP01: cannot drop table ml_features because other objects depend on it',
         False),
        ('', False),
    ],
)
def test_a_lock_timeout_is_told_from_other_failures(stderr, lock) -> None:
    assert m.is_lock_timeout(stderr) is lock


def test_the_error_line_is_the_first_error_without_psqls_prefix() -> None:
    stderr = ('psql:/w/restore.sql:21: ERROR:  55P03: canceling statement due to lock timeout\n'
              'LOCATION:  ProcSleep, proc.c:1312')
    assert m.error_line(stderr) == 'ERROR:  55P03: canceling statement due to lock timeout'
    assert m.error_line('') == 'no error output'


@pytest.mark.parametrize(
    ('args', 'words'),
    [
        ((0, 10, 2.0, 30.0), 'lock_timeout_ms and lock_retries must be at least 1 (got 0 and 10)'),
        ((1000, 0, 2.0, 30.0), 'lock_timeout_ms and lock_retries must be at least 1 (got 1000 and 0)'),
        ((1000, 10, -1.0, 30.0), 'retry_delay and max_retry_delay must be 0 or more (got -1 and 30)'),
        ((1000, 10, 2.0, 30.0), None),
    ],
)
def test_the_budget_options_are_checked(args, words) -> None:
    refusal = m.budget_refusal(*args)
    assert (refusal is None) if words is None else (refusal is not None and refusal.startswith(words))


def test_a_table_read_back_as_before_is_said_unchanged_and_otherwise_not() -> None:
    before = {'table_oid': 16502, 'column_type': 'jsonb'}
    same, words = m.unchanged_evidence('public.ml_features', 'tokens', before, dict(before))
    assert same and words.startswith('Nothing was changed: read back from the database, public.ml_features is as it '
                                     'was before the restore (table oid 16502, column tokens jsonb)')
    same, words = m.unchanged_evidence('public.ml_features', 'tokens', before, {'table_oid': None})
    assert not same and 'NOT as it was' in words and 'no such table' in words


def test_a_holder_is_described_by_pid_application_state_and_query() -> None:
    row = {'pid': 4242, 'usename': 'app', 'application_name': 'backend', 'mode': 'AccessShareLock',
           'state': 'idle in transaction', 'transaction_seconds': 12.34, 'query': 'SELECT *\n  FROM ml_features'}
    assert m.describe_holder(row) == ("pid 4242 (application_name 'backend', user app, state idle in transaction, "
                                      'transaction open 12.3 s, holding AccessShareLock, last query: SELECT * FROM '
                                      'ml_features)')


def test_the_clients_command_lines_carry_no_connection_settings() -> None:
    assert m.restore_argv('/usr/bin/pg_restore', '/w/l', '/w/raw.sql', '/b/a.dump', scratch=True) == [
        '/usr/bin/pg_restore', '--single-transaction', '--clean', '--if-exists', '--no-owner', '--no-privileges',
        '--use-list=/w/l', '--file=/w/raw.sql', '/b/a.dump']
    assert m.psql_argv('/usr/bin/psql', '/w/restore.sql', 'app') == [
        '/usr/bin/psql', '--no-psqlrc', '--quiet', '--no-password', '--set=ON_ERROR_STOP=1', '--set=VERBOSITY=verbose',
        '--file=/w/restore.sql', "--dbname=application_name='app'"]


def restore_tries(monkeypatch: pytest.MonkeyPatch, outcomes: list[tuple[int, str, bool]],
                  retries: int) -> tuple[m.Try, dict[str, t.Any], list[int]]:
    """run_restore over fake tries (rc, stderr, lock timeout), with no back-off; the holders read after each lock
    timeout are numbered by the try that read them."""
    ran: list[int] = []

    def run_try(_module: t.Any, number: int, _env: t.Any, _argv: t.Any) -> m.Try:
        ran.append(number)
        rc, stderr, lock = outcomes[number - 1]
        return m.Try(number, rc, stderr, 0.3, lock)

    monkeypatch.setattr(m, 'run_try', run_try)
    monkeypatch.setattr(m, 'read_lock_holders', lambda _module, _schema, _table: [{'pid': len(ran)}])
    module = types.SimpleNamespace(params={'lock_retries': retries, 'retry_delay': 0.0, 'max_retry_delay': 0.0})
    result: dict[str, t.Any] = {'psql_command': ['psql']}
    last = m.run_restore(t.cast(t.Any, module), {}, 'public', 'ml_features', result)
    return last, result, ran


def test_the_restore_tries_until_the_lock_budget_is_spent_and_returns_the_last_try(monkeypatch) -> None:
    last, result, ran = restore_tries(monkeypatch, [(3, LOCKED, True)] * 3, 3)
    assert ran == [1, 2, 3] and (last.number, last.rc, last.lock_timeout) == (3, 3, True)
    assert [a['lock_timeout'] for a in result['attempts']] == [True, True, True]
    assert result['lock_holders'] == [{'pid': 3}]


def test_a_try_after_the_holder_left_ends_the_restore(monkeypatch) -> None:
    last, result, ran = restore_tries(monkeypatch, [(3, LOCKED, True), (0, '', False), (0, '', False)], 3)
    assert ran == [1, 2] and last.rc == 0 and result['attempts'][-1] == {
        'try': 2, 'seconds': 0.3, 'lock_timeout': False, 'error': ''}


def test_a_failure_other_than_a_lock_timeout_is_not_retried(monkeypatch) -> None:
    failed = 'psql:/w/restore.sql:23: ERROR:  2BP01: cannot drop table ml_features because other objects depend on it'
    last, result, ran = restore_tries(monkeypatch, [(3, failed, False), (0, '', False)], 3)
    assert ran == [1] and last.rc == 3 and 'lock_holders' not in result
