"""pg_column_type main() with a scripted connection (see conftest.py)."""
from __future__ import annotations

import pytest

from ansible_collections.ledgermind.migrations.plugins.module_utils import _connection
from ansible_collections.ledgermind.migrations.plugins.modules import pg_column_type

URL = 'postgresql://ledgermind:hunter2-secret@db:5432/ledgermind'
BASE = {'database_url': URL, 'table': 'ml_features', 'column': 'tokens'}
TABLE = ('pg_namespace AS n ON n.nspname = q.nspname', [{'schema_exists': True, 'relid': 16384, 'relkind': 'r'}])
TEXT_ARRAY = ('FROM pg_catalog.pg_attribute AS a', [{'column_name': 'tokens', 'data_type': 'ARRAY',
                                                     'udt_name': '_text', 'formatted_type': 'text[]',
                                                     'is_nullable': True}])
JSONB = ('FROM pg_catalog.pg_attribute AS a', [{'column_name': 'tokens', 'data_type': 'jsonb', 'udt_name': 'jsonb',
                                                'formatted_type': 'jsonb', 'is_nullable': True}])
NO_COLUMN = ('FROM pg_catalog.pg_attribute AS a', [])


def test_reports_text_array(run_module) -> None:
    failed, result, conn = run_module(pg_column_type.main, dict(BASE, expected_type='_text'), [TABLE, TEXT_ARRAY])
    assert not failed
    assert result == dict(changed=False, exists=True, schema='public', table='ml_features', column='tokens',
                          data_type='ARRAY', udt_name='_text', formatted_type='text[]', is_nullable=True,
                          expected_type='_text', matches=True)
    assert conn.session['readonly'] is True and conn.closed


@pytest.mark.parametrize('expected', ['jsonb', 'JSONB'])
def test_reports_jsonb(run_module, expected: str) -> None:
    failed, result, _ = run_module(pg_column_type.main, dict(BASE, expected_type=expected), [TABLE, JSONB])
    assert not failed and result['matches'] is True and result['data_type'] == 'jsonb'


def test_no_expected_type_no_matches_key(run_module) -> None:
    failed, result, _ = run_module(pg_column_type.main, BASE, [TABLE, JSONB])
    assert not failed and 'matches' not in result


def test_mismatch_fails_with_both_types(run_module) -> None:
    failed, result, _ = run_module(pg_column_type.main, dict(BASE, expected_type='jsonb'), [TABLE, TEXT_ARRAY])
    assert failed
    assert result['msg'] == ('Column public.ml_features.tokens is text[] (data_type ARRAY, udt_name _text), '
                             'expected jsonb.')
    assert result['matches'] is False and result['changed'] is False


def test_mismatch_reported_when_not_failing(run_module) -> None:
    failed, result, _ = run_module(pg_column_type.main, dict(BASE, expected_type='jsonb', fail_on_mismatch=False),
                                   [TABLE, TEXT_ARRAY])
    assert not failed and result['matches'] is False


def test_missing_column_is_not_an_error(run_module) -> None:
    failed, result, _ = run_module(pg_column_type.main, BASE, [TABLE, NO_COLUMN])
    assert not failed and result['exists'] is False and 'data_type' not in result


def test_missing_column_with_expected_type_fails(run_module) -> None:
    failed, result, _ = run_module(pg_column_type.main, dict(BASE, expected_type='jsonb'), [TABLE, NO_COLUMN])
    assert failed and result['msg'] == 'Column public.ml_features.tokens does not exist (expected type jsonb).'


@pytest.mark.parametrize(('row', 'msg'), [
    ({'schema_exists': True, 'relid': None, 'relkind': None},
     'Table ml.ml_features does not exist in this database; check table, schema and login_db.'),
    ({'schema_exists': False, 'relid': None, 'relkind': None},
     'Schema ml does not exist (looking for table ml.ml_features); check the schema option and login_db.'),
])
def test_missing_table_or_schema(run_module, row: dict, msg: str) -> None:
    failed, result, _ = run_module(pg_column_type.main, dict(BASE, schema='ml'), [(TABLE[0], [row])])
    assert failed and result['msg'] == msg and result['exists'] is False


def test_check_mode_runs_the_same(run_module) -> None:
    failed, result, _ = run_module(pg_column_type.main, dict(BASE, expected_type='text[]', _ansible_check_mode=True),
                                   [TABLE, TEXT_ARRAY])
    assert not failed and result['matches'] is True and result['changed'] is False


def test_required_arguments(run_module) -> None:
    failed, result, _ = run_module(pg_column_type.main, {'table': 'ml_features'})
    assert failed and 'missing required arguments: column' in result['msg']


def test_invalid_ssl_mode(run_module) -> None:
    failed, result, _ = run_module(pg_column_type.main, dict(BASE, ssl_mode='sometimes'))
    assert failed and 'ssl_mode' in result['msg']


def test_empty_expected_type(run_module) -> None:
    failed, result, _ = run_module(pg_column_type.main, dict(BASE, expected_type=' '))
    assert failed and result['msg'] == 'expected_type must not be empty.'


def test_psycopg2_missing(run_module, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_connection, 'HAS_PSYCOPG2', False)
    failed, result, _ = run_module(pg_column_type.main, BASE)
    assert failed and 'psycopg2' in result['msg'] and 'Failed to import the required Python library' in result['msg']


def test_bad_password_is_explained_and_never_shown(run_module, pg_error) -> None:
    error = pg_error('connection to server at "db" (10.0.0.5), port 5432 failed: FATAL:  password authentication '
                    'failed for user "ledgermind"')
    failed, result, _ = run_module(pg_column_type.main, BASE, connect_error=error)
    assert failed
    assert result['msg'].startswith('Cannot log in to PostgreSQL as ledgermind@db:5432/ledgermind: '
                                    'authentication failed. Check login_user and login_password')
    assert 'hunter2' not in str(result)


def test_connect_error_echoing_the_url_is_redacted(run_module, pg_error) -> None:
    failed, result, _ = run_module(pg_column_type.main, BASE, connect_error=pg_error(f'invalid dsn: {URL}'))
    assert failed and 'hunter2' not in result['msg'] and 'The connection parameters are invalid' in result['msg']


def test_unreachable(run_module, pg_error) -> None:
    error = pg_error('connection to server at "db", port 5432 failed: Connection refused')
    failed, result, _ = run_module(pg_column_type.main, BASE, connect_error=error)
    assert failed and result['msg'].startswith('Cannot reach PostgreSQL at ledgermind@db:5432/ledgermind.')


def test_lock_timeout_names_the_holder(run_module, pg_error) -> None:
    holder = ('pg_locks AS l', [{'pid': 4242, 'usename': 'migrator', 'mode': 'AccessExclusiveLock', 'state': 'active',
                                 'query': 'ALTER TABLE ml_features ALTER COLUMN tokens TYPE jsonb'}])
    lock = (TABLE[0], pg_error('canceling statement due to lock timeout', '55P03'))
    failed, result, conn = run_module(pg_column_type.main, BASE, [lock, holder])
    assert failed
    assert result['msg'].startswith('public.ml_features is locked by another session: pid 4242 (migrator, '
                                    'AccessExclusiveLock, active): ALTER TABLE ml_features')
    assert 'lock_timeout=5s' in result['msg'] and conn.closed


def test_timeouts_are_set_locally(run_module) -> None:
    _, _, conn = run_module(pg_column_type.main, dict(BASE, query_timeout=60, lock_timeout=0), [TABLE, JSONB])
    (query, params), = conn.ran('set_config')
    assert "set_config('statement_timeout', %s, true)" in query and params == ('60s', '0')
    assert conn.session == dict(conn.session, isolation_level='REPEATABLE READ', readonly=True, autocommit=False)
