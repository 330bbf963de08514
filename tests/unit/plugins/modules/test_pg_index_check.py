"""pg_index_check main() with a scripted connection (see conftest.py)."""
from __future__ import annotations

import json

import pytest

from ansible_collections.ledgermind.migrations.plugins.modules import pg_index_check

BASE = {'database_url': 'postgresql://u:hunter2@db/ledgermind', 'name': 'ix_ml_features_tokens_gin'}
INDEX_ROW = {'name': 'ix_ml_features_tokens_gin', 'schema': 'public', 'table': 'ml_features', 'method': 'gin',
             'valid': True, 'ready': True, 'is_unique': False, 'is_primary': False,
             'definition': 'CREATE INDEX ix_ml_features_tokens_gin ON public.ml_features USING gin (tokens)',
             'size_bytes': 24576, 'columns': ['tokens'], 'expressions': [False], 'opclasses': ['jsonb_ops']}
EXPECT = {'table': 'ml_features', 'expected_method': 'gin', 'expected_opclass': 'jsonb_ops',
          'expected_column': 'tokens'}
PLAN_QUERY = "SELECT txn_id FROM ml_features WHERE tokens @> '[\"test\"]'::jsonb"


def index(**changes: object) -> tuple[str, list]:
    return ('pg_catalog.pg_get_indexdef(ci.oid) AS definition', [dict(INDEX_ROW, **changes)])


NO_INDEX = ('pg_catalog.pg_get_indexdef(ci.oid) AS definition', [])


def relation(schema_exists: bool = True, relid: int | None = 16384) -> tuple[str, list]:
    return ('pg_namespace AS n ON n.nspname = q.nspname', [{'schema_exists': schema_exists, 'relid': relid,
                                                            'relkind': 'r' if relid else None}])


def explain(index_name: str | None) -> tuple[str, list]:
    child = {'Node Type': 'Bitmap Index Scan', 'Index Name': index_name} if index_name else None
    node = {'Node Type': 'Bitmap Heap Scan' if child else 'Seq Scan', 'Relation Name': 'ml_features'}
    if child:
        node['Plans'] = [child]
    return ('EXPLAIN (', [{'QUERY PLAN': json.dumps([{'Plan': node}])}])


def test_all_expectations_met(run_module) -> None:
    failed, result, conn = run_module(pg_index_check.main, dict(BASE, **EXPECT), [index()])
    assert not failed
    assert result == dict(changed=False, exists=True, name='ix_ml_features_tokens_gin', schema='public',
                          table='ml_features', valid=True, ready=True, method='gin', opclass='jsonb_ops',
                          opclasses=['jsonb_ops'], columns=['tokens'], definition=INDEX_ROW['definition'],
                          size_bytes=24576, mismatches=[])
    assert conn.ran('EXPLAIN') == []


def test_every_mismatch_listed(run_module) -> None:
    failed, result, _ = run_module(pg_index_check.main, dict(BASE, **EXPECT),
                                   [index(method='btree', opclasses=['jsonb_path_ops'], columns=['merchant'],
                                          valid=False)])
    assert failed and len(result['mismatches']) == 4
    assert result['msg'].startswith('Index public.ix_ml_features_tokens_gin does not meet expectations: '
                                    'access method is btree, expected gin; operator class is jsonb_path_ops')
    assert result['exists'] is True


def test_invalid_index_allowed_when_not_required(run_module) -> None:
    failed, result, _ = run_module(pg_index_check.main, dict(BASE, require_valid=False), [index(valid=False)])
    assert not failed and result['valid'] is False


def test_plan_uses_index(run_module) -> None:
    args = dict(BASE, plan_query=PLAN_QUERY + ';', disable_seqscan=True, expect_used=True, explain_analyze=True)
    failed, result, conn = run_module(pg_index_check.main, args,
                                      [index(), explain('ix_ml_features_tokens_gin')])
    assert not failed and result['used_in_plan'] is True
    assert result['plan_indexes'] == ['ix_ml_features_tokens_gin']
    assert result['plan'][0].startswith('Bitmap Heap Scan on ml_features')
    (_, params), = [r for r in conn.ran('set_config(%s, %s, true)')]
    assert params == ('enable_seqscan', 'off')
    (query, _), = conn.ran('EXPLAIN (')
    assert query == 'EXPLAIN (FORMAT JSON, ANALYZE, BUFFERS) ' + PLAN_QUERY


def test_plan_without_index_fails_when_expected(run_module) -> None:
    args = dict(BASE, plan_query=PLAN_QUERY, expect_used=True)
    failed, result, conn = run_module(pg_index_check.main, args, [index(), explain(None)])
    assert failed and result['used_in_plan'] is False
    assert 'does not use ix_ml_features_tokens_gin (indexes used: none); on a small table set disable_seqscan' \
        in result['msg']
    assert conn.ran('set_config(%s, %s, true)') == []


def test_plan_reported_without_expectation(run_module) -> None:
    failed, result, _ = run_module(pg_index_check.main, dict(BASE, plan_query=PLAN_QUERY), [index(), explain(None)])
    assert not failed and result['used_in_plan'] is False


def test_missing_index(run_module) -> None:
    failed, result, _ = run_module(pg_index_check.main, dict(BASE, table='ml_features'), [NO_INDEX, relation()])
    assert failed and result['exists'] is False
    assert result['msg'] == ('Index public.ix_ml_features_tokens_gin does not exist on public.ml_features '
                             '(was the migration applied, or did CREATE INDEX fail?).')


@pytest.mark.parametrize(('rel', 'msg'), [
    (relation(relid=None), 'table public.ml_features does not exist either'),
    (relation(schema_exists=False, relid=None), 'schema public does not exist'),
])
def test_missing_index_explains_missing_table(run_module, rel: tuple, msg: str) -> None:
    failed, result, _ = run_module(pg_index_check.main, dict(BASE, table='ml_features'), [NO_INDEX, rel])
    assert failed and msg in result['msg']


def test_absent_index_expected_absent(run_module) -> None:
    failed, result, _ = run_module(pg_index_check.main, dict(BASE, expect_exists=False, table='ml_features'),
                                   [NO_INDEX])
    assert not failed and result['exists'] is False and result['changed'] is False


def test_present_index_expected_absent(run_module) -> None:
    failed, result, _ = run_module(pg_index_check.main, dict(BASE, expect_exists=False), [index()])
    assert failed and 'exists' in result['msg'] and 'expect_exists is false' in result['msg']


def test_expect_used_requires_plan_query(run_module) -> None:
    failed, result, _ = run_module(pg_index_check.main, dict(BASE, expect_used=True))
    assert failed and 'plan_query' in result['msg']


@pytest.mark.parametrize(('query', 'msg'), [
    ('DELETE FROM ml_features', 'plan_query must be a SELECT (or WITH/VALUES/TABLE) statement'),
    ('SELECT 1; DROP TABLE ml_features', 'plan_query must be a single statement (found ";")'),
])
def test_plan_query_rejected_before_connecting(run_module, query: str, msg: str) -> None:
    failed, result, conn = run_module(pg_index_check.main, dict(BASE, plan_query=query))
    assert failed and result['msg'] == msg and conn.executed == []


def test_plan_query_error_is_explained(run_module, pg_error) -> None:
    error = pg_error('column "nosuch" does not exist\nLINE 1: EXPLAIN ...', '42703')
    failed, result, _ = run_module(pg_index_check.main, dict(BASE, plan_query='SELECT nosuch FROM ml_features'),
                                   [index(), ('EXPLAIN (', error)])
    assert failed and result['msg'] == 'plan_query could not be explained: column "nosuch" does not exist LINE 1: ' \
                                       'EXPLAIN ...'


def test_check_mode(run_module) -> None:
    failed, result, _ = run_module(pg_index_check.main, dict(BASE, _ansible_check_mode=True, **EXPECT), [index()])
    assert not failed and result['changed'] is False
