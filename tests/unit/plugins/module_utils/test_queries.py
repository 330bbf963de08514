"""Pure helpers of plugins/module_utils/_queries.py: no database needed."""
from __future__ import annotations

import json

import pytest
from psycopg2 import sql

from ansible_collections.ledgermind.migrations.plugins.module_utils import _queries as q


@pytest.mark.parametrize(('name', 'expected'), [
    ('jsonb', 'jsonb'),
    ('JSONB', 'jsonb'),
    (' jsonb ', 'jsonb'),
    ('text[]', '_text'),
    ('_text', '_text'),
    ('TEXT ARRAY', '_text'),
    ('text[][]', '_text'),
    ('text[3]', '_text'),
    ('pg_catalog.text', 'text'),
    ('"text"[]', '_text'),
    ('ARRAY', 'array'),
    ('array', 'array'),
    ('character varying(20)', 'varchar'),
    ('character varying(20)[]', '_varchar'),
    ('varchar', 'varchar'),
    ('bigint', 'int8'),
    ('integer', 'int4'),
    ('int', 'int4'),
    ('smallint', 'int2'),
    ('boolean', 'bool'),
    ('numeric(10,2)', 'numeric'),
    ('double precision', 'float8'),
    ('timestamp with time zone', 'timestamptz'),
    ('timestamp without time zone', 'timestamp'),
    ('json', 'json'),
])
def test_normalize_type_name(name: str, expected: str) -> None:
    assert q.normalize_type_name(name) == expected


@pytest.mark.parametrize('name', ['', '   '])
def test_normalize_type_name_rejects_empty(name: str) -> None:
    with pytest.raises(ValueError):
        q.normalize_type_name(name)


@pytest.mark.parametrize(('expected', 'data_type', 'udt_name', 'matches'), [
    ('text[]', 'ARRAY', '_text', True),
    ('_text', 'ARRAY', '_text', True),
    ('ARRAY', 'ARRAY', '_text', True),
    ('ARRAY', 'ARRAY', '_int4', True),
    ('ARRAY', 'jsonb', 'jsonb', False),
    ('jsonb', 'jsonb', 'jsonb', True),
    ('jsonb', 'ARRAY', '_text', False),
    ('text[]', 'jsonb', 'jsonb', False),
    ('json', 'jsonb', 'jsonb', False),
    ('varchar[]', 'ARRAY', '_varchar', True),
    ('text[]', 'ARRAY', '_varchar', False),
    ('jsonb', None, None, False),
])
def test_type_matches(expected: str, data_type: str | None, udt_name: str | None, matches: bool) -> None:
    assert q.type_matches(expected, data_type, udt_name) is matches


@pytest.mark.parametrize(('udt', 'shown'), [('_text', 'text[]'), ('jsonb', 'jsonb'), (None, 'unknown')])
def test_display_type(udt: str | None, shown: str) -> None:
    assert q.display_type(udt) == shown


@pytest.mark.parametrize(('data_type', 'udt', 'kind'), [
    ('jsonb', 'jsonb', 'jsonb'),
    ('json', 'json', 'json'),
    ('ARRAY', '_text', 'text_array'),
    ('ARRAY', '_varchar', 'text_array'),
    ('ARRAY', '_int4', 'array'),
    ('text', 'text', None),
    ('bigint', 'int8', None),
])
def test_column_kind(data_type: str, udt: str, kind: str | None) -> None:
    assert q.column_kind(data_type, udt) == kind


# --- fingerprint ------------------------------------------------------------------------------

def test_fingerprint_is_stable_hex() -> None:
    fp = q.fingerprint(5, (123, -456))
    assert fp == q.fingerprint(5, ('123', '-456'))  # numeric sums may arrive as Decimal/str
    assert len(fp) == 32 and int(fp, 16) >= 0


@pytest.mark.parametrize(('a', 'b'), [
    ((5, (1, 2)), (6, (1, 2))),   # a row appeared
    ((5, (1, 2)), (5, (1, 3))),   # a value changed
    ((5, (1, 2)), (5, (2, 1))),   # seeds are not interchangeable
    ((0, (0, 0)), (1, (0, 0))),   # empty table vs one row hashing to 0
])
def test_fingerprint_changes(a: tuple, b: tuple) -> None:
    assert q.fingerprint(*a) != q.fingerprint(*b)


@pytest.mark.parametrize(('counts', 'total'), [
    ({}, 0),
    ({'invalid_types': 1}, 1),
    ({'invalid_types': 1, 'element_type_violations': 2, 'roundtrip_violations': 3}, 6),
    ({'null_elements': 7, 'nulls': 3, 'empty': 2}, 0),
])
def test_violation_total(counts: dict, total: int) -> None:
    assert q.violation_total(counts) == total


def test_integrity_summary_names_only_nonzero_counts() -> None:
    msg = q.integrity_summary({'total': 9, 'invalid_types': 2, 'element_type_violations': 0,
                               'roundtrip_violations': 1}, 'public.ml_features')
    assert msg == 'Integrity check failed on public.ml_features: invalid_types=2, roundtrip_violations=1 (of 9 rows).'


@pytest.mark.parametrize(('value', 'shown'), [
    (1, 1), ('a', 'a'), (None, None), (True, True), (1.5, 1.5),
])
def test_jsonable_passthrough(value: object, shown: object) -> None:
    assert q.jsonable(value) == shown


def test_jsonable_stringifies_other_types() -> None:
    import datetime
    import decimal
    import uuid
    assert q.jsonable(decimal.Decimal('1.50')) == '1.50'
    assert q.jsonable(datetime.date(2025, 11, 9)) == '2025-11-09'
    u = uuid.UUID(int=1)
    assert q.jsonable(u) == str(u)


@pytest.mark.parametrize(('rows', 'shaped'), [
    ([{'key': 3, 'value': ['coffee', 'shop']}], [{'key': 3, 'value': ['coffee', 'shop'], 'length': 2}]),
    ([{'key': 2, 'value': []}], [{'key': 2, 'value': [], 'length': 0}]),
    ([{'key': 4, 'value': '["a", null]'}], [{'key': 4, 'value': ['a', None], 'length': 2}]),
    ([{'key': 6, 'value': {'a': 1}}], [{'key': 6, 'value': {'a': 1}, 'length': None}]),
    ([], []),
])
def test_shape_sample_rows(rows: list, shaped: list) -> None:
    assert q.shape_sample_rows(rows) == shaped


@pytest.mark.parametrize(('requested', 'found', 'missing'), [
    (['1', '2', '99'], [{'key': 1}, {'key': 2}], ['99']),
    (['a'], [{'key': 'a'}], []),
    ([], [], []),
])
def test_missing_keys(requested: list, found: list, missing: list) -> None:
    assert q.missing_keys(requested, found) == missing


@pytest.mark.parametrize(('row', 'message'), [
    ({'schema_exists': False, 'relid': None}, 'Schema ml does not exist (looking for table ml.t)'),
    ({'schema_exists': True, 'relid': None}, 'Table ml.t does not exist in this database'),
    ({'schema_exists': True, 'relid': 42}, None),
])
def test_relation_problem(row: dict, message: str | None) -> None:
    problem = q.relation_problem(row, 'ml', 't')
    assert (problem is None) if message is None else problem.startswith(message)


# --- plans ------------------------------------------------------------------------------------

@pytest.mark.parametrize(('query', 'cleaned'), [
    ('SELECT 1', 'SELECT 1'),
    ('  select txn_id from ml_features;  ', 'select txn_id from ml_features'),
    ('WITH x AS (SELECT 1) SELECT * FROM x;', 'WITH x AS (SELECT 1) SELECT * FROM x'),
    ('(SELECT 1)', '(SELECT 1)'),
    ('VALUES (1)', 'VALUES (1)'),
    ('TABLE ml_features', 'TABLE ml_features'),
])
def test_check_plan_query_accepts(query: str, cleaned: str) -> None:
    assert q.check_plan_query(query) == cleaned


@pytest.mark.parametrize(('query', 'error'), [
    ('', 'empty'),
    (';', 'empty'),
    ('DELETE FROM ml_features', 'must be a SELECT'),
    ('SELECT 1; DROP TABLE ml_features', 'single statement'),
    ('SELECT 1; COMMIT; DROP TABLE x;', 'single statement'),
    ('selectivity', 'must be a SELECT'),
])
def test_check_plan_query_rejects(query: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        q.check_plan_query(query)


BITMAP_PLAN = [{
    'Plan': {
        'Node Type': 'Bitmap Heap Scan', 'Relation Name': 'ml_features', 'Alias': 'ml_features',
        'Startup Cost': 12.0, 'Total Cost': 16.01, 'Plan Rows': 1, 'Plan Width': 8,
        'Recheck Cond': '(tokens @> \'["test"]\'::jsonb)',
        'Plans': [{
            'Node Type': 'Bitmap Index Scan', 'Parent Relationship': 'Outer',
            'Index Name': 'ix_ml_features_tokens_gin', 'Startup Cost': 0.0, 'Total Cost': 12.0,
            'Plan Rows': 1, 'Plan Width': 0, 'Index Cond': '(tokens @> \'["test"]\'::jsonb)',
        }],
    },
    'Planning Time': 0.1,
}]

NESTED_PLAN = {'Plan': {'Node Type': 'Nested Loop', 'Plans': [
    {'Node Type': 'Seq Scan', 'Relation Name': 'a'},
    {'Node Type': 'Aggregate', 'Plans': [
        {'Node Type': 'Index Only Scan', 'Index Name': 'pk_b', 'Relation Name': 'b'},
        {'Node Type': 'Index Scan', 'Index Name': 'ix_c', 'Relation Name': 'c'},
    ]},
]}}


@pytest.mark.parametrize(('plan', 'names'), [
    (BITMAP_PLAN, ['ix_ml_features_tokens_gin']),
    (json.dumps(BITMAP_PLAN), ['ix_ml_features_tokens_gin']),   # EXPLAIN's column is text
    (NESTED_PLAN, ['pk_b', 'ix_c']),
    ([{'Plan': {'Node Type': 'Seq Scan', 'Relation Name': 'ml_features'}}], []),
    ([], []),
])
def test_plan_index_names(plan: object, names: list) -> None:
    assert q.plan_index_names(plan) == names


def test_render_plan_looks_like_explain() -> None:
    lines = q.render_plan(BITMAP_PLAN)
    assert lines[0] == 'Bitmap Heap Scan on ml_features  (cost=12.00..16.01 rows=1 width=8)'
    assert lines[1].strip() == 'Recheck Cond: (tokens @> \'["test"]\'::jsonb)'
    assert lines[2].startswith('  ->  Bitmap Index Scan on ix_ml_features_tokens_gin')
    assert lines[-1] == 'Planning Time: 0.100 ms'


def test_render_plan_index_scan_and_actuals() -> None:
    plan = [{'Plan': {'Node Type': 'Index Scan', 'Index Name': 'pk', 'Relation Name': 't', 'Alias': 'x',
                      'Startup Cost': 0.1, 'Total Cost': 8.2, 'Plan Rows': 1, 'Plan Width': 4,
                      'Actual Startup Time': 0.01, 'Actual Total Time': 0.02, 'Actual Rows': 1, 'Actual Loops': 1}},
             {'Execution Time': 0.5}]
    assert q.render_plan(plan)[0] == ('Index Scan using pk on t x  (cost=0.10..8.20 rows=1 width=4) '
                                      '(actual time=0.010..0.020 rows=1 loops=1)')


GOOD_INDEX = {'name': 'ix', 'table': 'ml_features', 'method': 'gin', 'opclasses': ['jsonb_ops'],
              'columns': ['tokens'], 'valid': True, 'ready': True}
ALL_EXPECTED = {'table': 'ml_features', 'method': 'gin', 'opclass': 'jsonb_ops', 'column': 'tokens',
                'require_valid': True}


@pytest.mark.parametrize(('changes', 'problems'), [
    ({}, []),
    ({'method': 'btree'}, ['access method is btree, expected gin']),
    ({'method': 'GIN'}, []),
    ({'opclasses': ['jsonb_path_ops']}, ['operator class is jsonb_path_ops, expected jsonb_ops']),
    ({'opclasses': []}, ['operator class is none, expected jsonb_ops']),
    ({'columns': ['merchant']}, ['indexed columns are [merchant], expected [tokens]']),
    ({'columns': ['tokens', 'merchant']}, ['indexed columns are [tokens, merchant], expected [tokens]']),
    ({'table': 'other'}, ['index ix is on table other, expected ml_features']),
    ({'valid': False}, ['index is INVALID']),
    ({'ready': False}, ['index is not ready']),
    ({'method': 'btree', 'valid': False, 'columns': ['x']}, ['access method', 'indexed columns', 'index is INVALID']),
])
def test_index_mismatches(changes: dict, problems: list) -> None:
    found = q.index_mismatches(dict(GOOD_INDEX, **changes), ALL_EXPECTED)
    assert len(found) == len(problems)
    for got, want in zip(found, problems, strict=True):
        assert got.startswith(want)


@pytest.mark.parametrize(('columns', 'expressions', 'expected', 'problems'), [
    (['Tok Ens'], [False], 'Tok Ens', []),
    (['Tok Ens'], [False], '"Tok Ens"', ['indexed columns are [Tok Ens], expected ["Tok Ens"]']),
    (['tokens'], [True], 'tokens', ['indexed columns are [expression tokens], expected [tokens]']),
    (['lower(merchant)'], [True], 'lower(merchant)',
     ['indexed columns are [expression lower(merchant)], expected [lower(merchant)]']),
    (['tokens', 'lower(merchant)'], [False, True], 'tokens',
     ['indexed columns are [tokens, expression lower(merchant)], expected [tokens]']),
])
def test_index_mismatches_compare_column_names_and_never_expressions(columns, expressions, expected,
                                                                     problems) -> None:
    info = dict(GOOD_INDEX, columns=columns, expressions=expressions)
    assert q.index_mismatches(info, dict(ALL_EXPECTED, column=expected)) == problems


def test_index_mismatches_ignores_unset_expectations() -> None:
    broken = dict(GOOD_INDEX, method='btree', opclasses=['x'], columns=['y'], valid=False, table='z')
    assert q.index_mismatches(broken, {'require_valid': False}) == []


# --- SQL composition: identifiers only through sql.Identifier ---------------------------------

def _plain_sql(composable: object) -> str:
    """The literal SQL fragments only (identifiers excluded)."""
    if isinstance(composable, sql.Composed):
        return ''.join(_plain_sql(part) for part in composable.seq)
    if isinstance(composable, sql.SQL):
        return composable.string
    return ''


def _identifiers(composable: object) -> list[tuple[str, ...]]:
    if isinstance(composable, sql.Composed):
        return [i for part in composable.seq for i in _identifiers(part)]
    if isinstance(composable, sql.Identifier):
        return [composable.strings]
    return []


EVIL = 'x"; DROP TABLE users; --'


@pytest.mark.parametrize('kind', ['text_array', 'array', 'jsonb', 'json'])
@pytest.mark.parametrize('build', [
    lambda s, t, k, c, kind: q.integrity_counts_sql(s, t, k, c, kind),
    lambda s, t, k, c, kind: q.offending_keys_sql(s, t, k, c, kind, 'invalid_types'),
    lambda s, t, k, c, kind: q.offending_keys_sql(s, t, k, c, kind, 'roundtrip_violations'),
    lambda s, t, k, c, kind: q.sample_rows_sql(s, t, k, c, kind),
    lambda s, t, k, c, kind: q.sample_keys_sql(s, t, k, c, kind),
])
def test_identifiers_never_spliced(build: object, kind: str) -> None:
    composed = build(EVIL, EVIL + 't', EVIL + 'k', EVIL + 'c', kind)  # type: ignore[operator]
    assert 'DROP TABLE' not in _plain_sql(composed)
    assert (EVIL, EVIL + 't') in _identifiers(composed)
    assert (EVIL + 'c',) in _identifiers(composed)


@pytest.mark.parametrize(('kind', 'expr'), [
    ('text_array', 'to_jsonb('), ('array', 'to_jsonb('), ('json', '::jsonb'), ('jsonb', 'AS v'),
])
def test_value_expression_per_kind(kind: str, expr: str) -> None:
    assert expr in _plain_sql(q.integrity_counts_sql('public', 'ml_features', 'txn_id', 'tokens', kind))


def test_counts_are_one_pass_with_filters() -> None:
    text = _plain_sql(q.integrity_counts_sql('public', 'ml_features', 'txn_id', 'tokens', 'array'))
    assert text.count('SELECT count(*) AS total') == 1
    assert 'FILTER (WHERE' in text and 'string_agg' not in text and 'array_agg' not in text
    assert 'hashtextextended' in text and 'array_ndims' in text


@pytest.mark.parametrize(('element_type', 'bound'), [('string', 'string'), ('any', None), ('null', 'null')])
def test_integrity_params(element_type: str, bound: str | None) -> None:
    params = q.integrity_params('array', element_type)
    assert params['element_type'] == bound and params['expected_type'] == 'array'
    assert (params['seed1'], params['seed2']) == q.FINGERPRINT_SEEDS


@pytest.mark.parametrize(('analyze', 'options'), [(False, 'FORMAT JSON'), (True, 'FORMAT JSON, ANALYZE')])
def test_explain_sql(analyze: bool, options: str) -> None:
    text = _plain_sql(q.explain_sql('SELECT 1', analyze))
    assert text.startswith(f'EXPLAIN ({options}') and text.endswith('SELECT 1')
