"""pg_rewrite_space: the room an in-place rewrite needs, judged against the data directory's free space; unknown
free space is a warning, never a refusal."""
from __future__ import annotations

import typing as t

import pytest
from ansible.module_utils import basic

from ansible_collections.ledgermind.migrations.plugins.modules import pg_rewrite_space as m

URL = 'postgresql://ledgermind:hunter2-secret@db:5432/ledgermind'
MIB = 1024 * 1024


@pytest.mark.parametrize(('column_type', 'target', 'pending'), [
    ('text[]', 'jsonb', True),
    ('jsonb', 'jsonb', False),
    ('jsonb', 'JSONB', False),
    ('text[]', '_text', False),
    (None, 'jsonb', True),  # nothing says what it is: checked
    ('text[]', None, True),
])
def test_is_pending(column_type: str | None, target: str | None, pending: bool) -> None:
    assert m.is_pending(column_type, target) is pending


def test_judge_refuses_with_the_numbers() -> None:
    out = m.judge('public.ml_features', True, 100 * MIB, 1.5, 120 * MIB, 'free on the file system of /pg/data')
    assert (out['checked'], out['enough'], out['needed_bytes']) == (True, False, 150 * MIB)
    assert out['problem'] == (
        'Not enough free space for the in-place rewrite of public.ml_features: ALTER TABLE ... TYPE writes a new '
        'copy of the table and its indexes (pg_total_relation_size 100.0 MiB) before dropping the old one, x1.5 '
        'margin = 150.0 MiB needed, and there is 120.0 MiB free on the file system of /pg/data. Free 30.0 MiB on '
        'that file system')
    assert out['summary'] == ('Free space for the in-place rewrite of public.ml_features: 120.0 MiB free on the file '
                              'system of /pg/data, 150.0 MiB needed (100.0 MiB x1.5)')


def test_judge_passes_with_room() -> None:
    out = m.judge('public.t', True, 100 * MIB, 1.5, 150 * MIB, 'free on the file system of /pg/data')
    assert (out['checked'], out['enough'], out['problem']) == (True, True, None)


@pytest.mark.parametrize(('pending', 'margin', 'free', 'words'), [
    (False, 1.5, 0, 'not checked, the column already has its target type'),
    (True, 0, 0, 'not checked (free_space_margin 0)'),
    (True, 1.5, None, 'could not be checked (the role may not read data_directory'),
])
def test_judge_never_refuses_what_it_did_not_check(pending: bool, margin: float, free: int | None,
                                                    words: str) -> None:
    out = m.judge('public.t', pending, 100 * MIB, margin, free,
                  'the role may not read data_directory (pg_read_all_settings)')
    assert (out['checked'], out['enough'], out['problem']) == (False, None, None)
    assert words in out['summary']


def script(column_type: str | None = 'text[]', data_directory: str | None = None, own_tablespace: bool = False,
           total: int = 100 * MIB, size: t.Any = None) -> list[tuple[str, t.Any]]:
    if size is None:
        size = [{'relid': 16390, 'total_bytes': total, 'own_tablespace': own_tablespace}]
    return [
        ('schema_exists', [{'schema_exists': True, 'relid': 16390, 'relkind': 'r'}]),
        ('SAVEPOINT', []),
        ('pg_control_system', [{'system_identifier': '7301234567890123456'}]),
        ('to_regclass', [{'present': False}]),
        ('AS database_oid', [{'database': 'ledgermind', 'database_oid': 16384, 'server_version_num': 150018,
                              'table_oid': 16390, 'column_type': column_type}]),
        ("current_setting('lock_timeout')", [{'lock_timeout': '5s'}]),
        ('pg_total_relation_size', size),
        ('relpages', [{'relid': 16390, 'total_bytes': total // 2, 'own_tablespace': own_tablespace}]),
        ('data_directory', [{'data_directory': data_directory}]),
    ]


ARGS = {'database_url': URL, 'table': 'ml_features', 'column': 'tokens', 'target_type': 'jsonb'}


@pytest.fixture
def warnings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    said: list[str] = []
    monkeypatch.setattr(basic.AnsibleModule, 'warn', lambda self, text: said.append(text))
    return said


def test_unknown_free_space_warns_and_succeeds(run_module, warnings) -> None:
    """The demo role may not read data_directory: said in a warning and the result, whatever the margin."""
    failed, result, conn = run_module(m.main, dict(ARGS, free_space_margin=1e9), script=script())
    assert not failed and result['changed'] is False
    assert (result['pending'], result['checked'], result['enough'], result['free_bytes']) == (True, False, None, None)
    assert result['free_space_source'] == 'the role may not read data_directory (pg_read_all_settings)'
    assert warnings == [
        'The free space for the in-place rewrite of public.ml_features could not be checked: the role may not read '
        'data_directory (pg_read_all_settings). It needs about 100000000000.0 MiB on the database server\'s data '
        'directory; check it there.']
    assert conn.session['readonly'] is True and conn.closed


def test_refuses_when_the_data_directory_lacks_room(run_module, tmp_path) -> None:
    failed, result, _conn = run_module(m.main, dict(ARGS, free_space_margin=1e9),
                                       script=script(data_directory=str(tmp_path)))
    assert failed and result['enough'] is False and result['checked'] is True
    assert result['msg'].startswith('Not enough free space for the in-place rewrite of public.ml_features')
    assert result['msg'].endswith('or lower free_space_margin (1e+09) if the estimate is too cautious. '
                                  'Nothing was changed.')
    assert result['needed_bytes'] == 100 * MIB * 10 ** 9 and result['free_bytes'] < result['needed_bytes']
    assert 'hunter2-secret' not in str(result)


def test_reports_without_failing_when_asked(run_module, tmp_path) -> None:
    failed, result, _conn = run_module(m.main, dict(ARGS, free_space_margin=1e9, fail_on_insufficient=False),
                                       script=script(data_directory=str(tmp_path)))
    assert not failed and result['enough'] is False and result['problem'].startswith('Not enough free space')


def test_passes_with_room(run_module, tmp_path) -> None:
    failed, result, _conn = run_module(m.main, dict(ARGS), script=script(data_directory=str(tmp_path), total=1))
    assert not failed and (result['checked'], result['enough'], result['needed_bytes']) == (True, True, 2)
    assert result['free_space_source'] == f'free on the file system of {tmp_path}'


def test_a_converted_column_needs_no_room(run_module, tmp_path, warnings) -> None:
    failed, result, _conn = run_module(m.main, dict(ARGS, free_space_margin=1e9),
                                       script=script(column_type='jsonb', data_directory=str(tmp_path)))
    assert not failed and (result['pending'], result['checked'], result['enough']) == (False, False, None)
    assert warnings == []


def test_a_table_in_its_own_tablespace_is_not_judged_by_the_data_directory(run_module, tmp_path) -> None:
    failed, result, conn = run_module(m.main, dict(ARGS, free_space_margin=1e9),
                                      script=script(data_directory=str(tmp_path), own_tablespace=True))
    assert not failed and result['free_bytes'] is None and 'tablespace of its own' in result['free_space_source']
    assert conn.ran('data_directory') == []


def test_a_locked_table_is_sized_from_the_page_counts(run_module, pg_error, tmp_path) -> None:
    """pg_total_relation_size would wait for an ALTER TABLE's or a REINDEX's lock: the planner's page counts stand in,
    after a short wait that leaves the transaction's own lock_timeout as it was."""
    locked = pg_error('canceling statement due to lock timeout', '55P03')
    failed, result, conn = run_module(m.main, dict(ARGS), script=script(data_directory=str(tmp_path), size=locked))
    assert not failed and (result['table_bytes'], result['table_size_source']) == (50 * MIB, 'pg_class.relpages')
    assert [p for _q, p in conn.ran('set_config')][-1:] == [('lock_timeout', '200ms')]
    assert conn.ran('ROLLBACK TO SAVEPOINT ledgermind_space') and result['checked'] is True


def test_the_exact_size_restores_the_lock_timeout(run_module, tmp_path) -> None:
    failed, result, conn = run_module(m.main, dict(ARGS), script=script(data_directory=str(tmp_path)))
    assert not failed and result['table_size_source'] == 'pg_total_relation_size'
    assert [p for _q, p in conn.ran('set_config') if p and p[0] == 'lock_timeout'] == [('lock_timeout', '200ms'),
                                                                                  ('lock_timeout', '5s')]
    assert conn.ran('RELEASE SAVEPOINT ledgermind_space') and not conn.ran('relpages')


def test_missing_column_fails_by_name(run_module) -> None:
    failed, result, _conn = run_module(m.main, dict(ARGS, column='nope'), script=script(column_type=None))
    assert failed and result['msg'] == 'Table public.ml_features has no column nope; check column, table and login_db.'


def test_negative_margin_is_refused(run_module) -> None:
    failed, result, conn = run_module(m.main, dict(ARGS, free_space_margin=-1), script=script())
    assert failed and 'free_space_margin must be 0 (no check) or more' in result['msg'] and conn.executed == []
