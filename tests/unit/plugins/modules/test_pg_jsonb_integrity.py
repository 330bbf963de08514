"""pg_jsonb_integrity main() with a scripted connection (see conftest.py)."""
from __future__ import annotations

import pytest

from ansible_collections.ledgermind.migrations.plugins.module_utils._queries import fingerprint
from ansible_collections.ledgermind.migrations.plugins.modules import pg_jsonb_integrity

BASE = {'login_host': 'db', 'login_user': 'ledgermind', 'login_password': 'hunter2', 'login_db': 'ledgermind',
        'table': 'ml_features', 'column': 'tokens'}
TABLE = ('pg_namespace AS n ON n.nspname = q.nspname', [{'schema_exists': True, 'relid': 16384, 'relkind': 'r'}])


def column(data_type: str = 'ARRAY', udt: str = '_text', formatted: str = 'text[]') -> tuple[str, list]:
    return ('FROM pg_catalog.pg_attribute AS a', [{'column_name': 'tokens', 'data_type': data_type, 'udt_name': udt,
                                                   'formatted_type': formatted, 'is_nullable': True}])


PK = ('i.indisprimary', [{'column_name': 'txn_id'}])
SNAPSHOT = ('pg_current_snapshot()', [{'snapshot': '700:705:701', 'isolation': 'repeatable read'}])
ZERO = dict(total=5, nulls=1, empty=1, invalid_types=0, element_type_violations=0, null_elements=0,
            roundtrip_violations=0, hash1=123456789012, hash2=-98765)
SAMPLE = ('WHERE s.v IS NOT NULL\nORDER BY', [{'key': 3, 'value': ['coffee', 'shop']},
                                              {'key': 4, 'value': ["it's", None]}])


def counts(**changes: int) -> tuple[str, list]:
    return ('SELECT count(*) AS total', [dict(ZERO, **changes)])


def offenders(rows: list) -> tuple[str, list]:
    return ('SELECT s.k AS key\n', rows)


def test_clean_text_array(run_module) -> None:
    failed, result, conn = run_module(pg_jsonb_integrity.main, BASE, [TABLE, column(), PK, SNAPSHOT, counts(), SAMPLE])
    assert not failed
    assert {k: result[k] for k in ('total', 'nulls', 'empty', 'invalid_types', 'element_type_violations',
                                   'null_elements', 'roundtrip_violations', 'violations')} == dict(
        total=5, nulls=1, empty=1, invalid_types=0, element_type_violations=0, null_elements=0,
        roundtrip_violations=0, violations=0)
    assert result['column_type'] == 'text[]' and result['key_column'] == 'txn_id' and result['changed'] is False
    assert result['fingerprint'] == fingerprint(5, (123456789012, -98765))
    assert result['sample'] == [{'key': 3, 'value': ['coffee', 'shop'], 'length': 2},
                                {'key': 4, 'value': ["it's", None], 'length': 2}]
    assert result['offending_keys'] == dict(invalid_types=[], element_type_violations=[], roundtrip_violations=[],
                                            null_elements=[])
    assert result['sample_by_key'] == [] and result['sample_keys_missing'] == []
    assert isinstance(result['scan_seconds'], float)
    # One counting pass, no offender queries when every count is zero.
    assert len(conn.ran('SELECT count(*) AS total')) == 1 and conn.ran('SELECT s.k AS key\n') == []
    (query, params), = conn.ran('SELECT count(*) AS total')
    assert 'to_jsonb("tokens")' in query and params['expected_type'] == 'array'


def test_offenders_fetched_with_limit_only_for_nonzero_counts(run_module) -> None:
    script = [TABLE, column('jsonb', 'jsonb', 'jsonb'), PK, SNAPSHOT, counts(invalid_types=2, roundtrip_violations=2),
              offenders([{'key': 6}, {'key': 7}]), SAMPLE]
    failed, result, conn = run_module(pg_jsonb_integrity.main, dict(BASE, sample_size=2), script)
    assert not failed  # fail_on_violation defaults to false
    assert result['violations'] == 4
    assert result['offending_keys']['invalid_types'] == [6, 7]
    assert result['offending_keys']['element_type_violations'] == []
    ran = conn.ran('SELECT s.k AS key\n')
    assert len(ran) == 2 and all(p['limit'] == 2 for _, p in ran)


def test_fail_on_violation(run_module) -> None:
    script = [TABLE, column('jsonb', 'jsonb', 'jsonb'), PK, SNAPSHOT,
              counts(invalid_types=1, element_type_violations=3), offenders([{'key': 6}]), SAMPLE]
    failed, result, _ = run_module(pg_jsonb_integrity.main, dict(BASE, fail_on_violation=True), script)
    assert failed
    assert result['msg'] == ('Integrity check failed on public.ml_features: invalid_types=1, '
                             'element_type_violations=3 (of 5 rows).')
    assert result['invalid_types'] == 1 and result['offending_keys']['invalid_types'] == [6]


def test_null_elements_are_not_violations(run_module) -> None:
    script = [TABLE, column(), PK, SNAPSHOT, counts(null_elements=2), offenders([{'key': 4}]), SAMPLE]
    failed, result, _ = run_module(pg_jsonb_integrity.main, dict(BASE, fail_on_violation=True), script)
    assert not failed and result['violations'] == 0 and result['offending_keys']['null_elements'] == [4]


def test_sample_keys(run_module) -> None:
    by_key = ('jsonb_populate_record', [{'key': 3, 'value': ['coffee', 'shop']}])
    script = [TABLE, column(), PK, SNAPSHOT, counts(), SAMPLE, by_key]
    failed, result, conn = run_module(pg_jsonb_integrity.main, dict(BASE, sample_keys=['3', '99']), script)
    assert not failed
    assert result['sample_by_key'] == [{'key': 3, 'value': ['coffee', 'shop'], 'length': 2}]
    assert result['sample_keys_missing'] == ['99']
    (_, params), = conn.ran('jsonb_populate_record')
    assert params == {'key_name': 'txn_id', 'keys': ['3', '99']}


def test_sample_rows_zero_skips_sample_query(run_module) -> None:
    failed, result, conn = run_module(pg_jsonb_integrity.main, dict(BASE, sample_rows=0),
                                      [TABLE, column(), PK, SNAPSHOT, counts()])
    assert not failed and result['sample'] == [] and conn.ran(SAMPLE[0]) == []


def test_explicit_key_column_is_checked(run_module) -> None:
    def attribute(params: dict) -> list:
        return column()[1] if params['column'] == 'tokens' else []

    failed, result, _ = run_module(pg_jsonb_integrity.main, dict(BASE, key_column='nope'),
                                   [TABLE, ('FROM pg_catalog.pg_attribute AS a', attribute)])
    assert failed and result['msg'] == 'Column public.ml_features.nope does not exist.'


@pytest.mark.parametrize(('pk_rows', 'what'), [
    ([], 'no primary key'),
    ([{'column_name': 'a'}, {'column_name': 'b'}], 'a multi-column primary key (a, b)'),
])
def test_key_column_needed_without_single_pk(run_module, pk_rows: list, what: str) -> None:
    failed, result, _ = run_module(pg_jsonb_integrity.main, BASE, [TABLE, column(), ('i.indisprimary', pk_rows)])
    assert failed
    assert result['msg'] == f'Table public.ml_features has {what}; set key_column to a column that identifies each row.'


def test_unsupported_column_type(run_module) -> None:
    failed, result, _ = run_module(pg_jsonb_integrity.main, BASE, [TABLE, column('text', 'text', 'text')])
    assert failed and result['msg'].startswith('Column public.ml_features.tokens is text; pg_jsonb_integrity reads')


def test_missing_table(run_module) -> None:
    failed, result, _ = run_module(pg_jsonb_integrity.main, BASE,
                                   [(TABLE[0], [{'schema_exists': True, 'relid': None, 'relkind': None}])])
    assert failed and result['msg'].startswith('Table public.ml_features does not exist')


def test_missing_column(run_module) -> None:
    failed, result, _ = run_module(pg_jsonb_integrity.main, BASE, [TABLE, ('FROM pg_catalog.pg_attribute AS a', [])])
    assert failed and result['msg'] == 'Column public.ml_features.tokens does not exist.'


@pytest.mark.parametrize(('args', 'msg'), [
    ({'sample_size': 101}, 'sample_size must be between 0 and 100, got 101.'),
    ({'sample_size': -1}, 'sample_size must be between 0 and 100, got -1.'),
    ({'sample_rows': 500}, 'sample_rows must be between 0 and 100, got 500.'),
    ({'sample_keys': [str(i) for i in range(1001)]}, 'sample_keys holds 1001 keys; at most 1000 are allowed.'),
])
def test_argument_limits(run_module, args: dict, msg: str) -> None:
    failed, result, _ = run_module(pg_jsonb_integrity.main, dict(BASE, **args))
    assert failed and result['msg'] == msg


@pytest.mark.parametrize(('args', 'word'), [
    ({'expected_type': 'list'}, 'expected_type'),
    ({'expected_element_type': 'text'}, 'expected_element_type'),
])
def test_choices(run_module, args: dict, word: str) -> None:
    failed, result, _ = run_module(pg_jsonb_integrity.main, dict(BASE, **args))
    assert failed and word in result['msg']


def test_statement_timeout_message(run_module, pg_error) -> None:
    script = [TABLE, column(), PK, ('SELECT count(*) AS total', pg_error('canceling statement due to statement '
                                                                         'timeout', '57014'))]
    failed, result, conn = run_module(pg_jsonb_integrity.main, dict(BASE, query_timeout=1), script)
    assert failed and conn.closed
    assert result['msg'].startswith('The query on public.ml_features was cancelled after query_timeout=1s')
    assert 'hunter2' not in str(result)


def test_check_mode(run_module) -> None:
    failed, result, _ = run_module(pg_jsonb_integrity.main, dict(BASE, _ansible_check_mode=True),
                                   [TABLE, column(), PK, SNAPSHOT, counts(), SAMPLE])
    assert not failed and result['changed'] is False and result['total'] == 5
