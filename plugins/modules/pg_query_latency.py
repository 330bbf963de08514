#!/usr/bin/python
# Copyright (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: pg_query_latency
short_description: Measure the latency of a representative query set on a table (p50, p95)
version_added: 0.1.0
description:
  - Runs each query O(warmup) times unmeasured, then O(runs) times measured, and returns its p50, p95 and
    maximum in milliseconds, as the client sees them (planning, execution and fetching the rows).
  - The built-in set, in the spelling the column's current type needs (C(text[]) or C(jsonb)), is the runbook's
    containment query (C(@>) with a token read from the table), a primary-key lookup and the backend's read of the
    50 newest rows. O(queries) adds or replaces queries by name.
  - With the C(pg_stat_statements) extension installed and readable, also returns its counters for the table's
    statements, so that two readings can be compared.
  - Read-only (a READ ONLY transaction); a query that would write is refused by the server.
author:
  - LedgerMind SRE (@ledgermind)
options:
  table:
    description: The table.
    type: str
    required: true
  schema:
    description: The table's schema.
    type: str
    default: public
  column:
    description: The column whose type decides the queries' spelling.
    type: str
    required: true
  key:
    description: The key column of the lookup and the ordering; default the single-column primary key.
    type: str
  builtin:
    description: Which built-in queries to run.
    type: list
    elements: str
    choices: [containment, key_lookup, recent_rows]
    default: [containment, key_lookup, recent_rows]
  queries:
    description:
      - More queries, each C(name) and C(sql) (read-only; it may use C(%(token\)s) and C(%(key\)s), a token and a key
        read from the table). A name of the built-in set replaces that query.
    type: list
    elements: dict
    default: []
  runs:
    description: Measured runs of each query (p95 is the nearest rank, so 20 runs let one outlier pass).
    type: int
    default: 20
  warmup:
    description: Unmeasured runs of each query first (caches, plans).
    type: int
    default: 3
extends_documentation_fragment:
  - ledgermind.migrations.connection
  - ledgermind.migrations.connection.lock_timeout
  - ledgermind.migrations.connection.psycopg2
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
seealso:
  - module: ledgermind.migrations.pg_index_check
'''

EXAMPLES = r'''
- name: Measure before the migration
  ledgermind.migrations.pg_query_latency:
    database_url: "{{ database_url }}"
    table: ml_features
    column: tokens
  register: latency_before

- name: Compare after it
  ledgermind.migrations.pg_query_latency:
    database_url: "{{ database_url }}"
    table: ml_features
    column: tokens
  register: latency_after

- name: Judge
  ansible.builtin.debug:
    msg: "{{ (latency_before | ledgermind.migrations.latency_comparison(latency_after)).summary }}"
'''

RETURN = r'''
column_type:
  description: The column's type when measured.
  returned: always
  type: str
  sample: jsonb
queries:
  description: Each query's C(name), C(sql), C(runs), C(p50_ms), C(p95_ms), C(max_ms) and C(rows) returned.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "key_lookup", "runs": 20, "p50_ms": 0.21, "p95_ms": 0.34, "max_ms": 0.4, "rows": 1}]
pg_stat_statements:
  description: C(available), C(reason) when not, and C(statements) (C(queryid), C(calls), C(total_ms), C(query)).
  returned: always
  type: dict
'''

import math
import time
import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ledgermind.migrations.plugins.module_utils._connection import (
    fail,
    postgres_connection_argument_spec,
    psycopg2,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._inspect import (
    find_relation,
    run_read_only,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._queries import (
    COLUMN_TYPE_SQL,
    LATENCY_QUERY_NAMES,
    LATENCY_SAVEPOINT,
    PG_STAT_STATEMENTS_PRESENT_SQL,
    PG_STAT_STATEMENTS_SQL,
    PRIMARY_KEY_SQL,
    STATEMENTS_SAVEPOINT,
    latency_query_sql,
    latency_sample_sql,
)


def argument_spec() -> dict[str, t.Any]:
    spec = postgres_connection_argument_spec()
    spec.update(
        table=dict(type='str', required=True),
        schema=dict(type='str', default='public'),
        column=dict(type='str', required=True),
        key=dict(type='str', no_log=False),
        builtin=dict(type='list', elements='str', choices=list(LATENCY_QUERY_NAMES), default=list(LATENCY_QUERY_NAMES)),
        queries=dict(type='list', elements='dict', default=[]),
        runs=dict(type='int', default=20),
        warmup=dict(type='int', default=3),
    )
    return spec


def percentile(values: t.Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (p95 of 15 runs is the 15th fastest, never an interpolation)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError('no values')
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summarize(name: str, statement: str, timings_ms: t.Sequence[float], rows: int) -> dict[str, t.Any]:
    return dict(name=name, sql=statement, runs=len(timings_ms), rows=rows,
                p50_ms=round(percentile(timings_ms, 0.5), 3), p95_ms=round(percentile(timings_ms, 0.95), 3),
                max_ms=round(max(timings_ms), 3))


def check_queries(module: AnsibleModule) -> None:
    for query in module.params['queries']:
        if not isinstance(query, dict) or not query.get('name') or not query.get('sql'):
            fail(module, 'Each entry of queries needs a name and an sql, e.g. {name: by_label, sql: "SELECT ..."}; '
                         f'got {query!r}.')
    if module.params['runs'] < 1 or module.params['warmup'] < 0:
        fail(module, 'runs must be at least 1 and warmup at least 0.')


def measure(cur: t.Any, statement: t.Any, params: dict[str, t.Any], runs: int, warmup: int) -> tuple[list[float], int]:
    rows = 0
    timings = []
    for number in range(warmup + runs):
        started = time.perf_counter()
        cur.execute(statement, params)
        rows = len(cur.fetchall())
        if number >= warmup:
            timings.append((time.perf_counter() - started) * 1000.0)
    return timings, rows


def read_subject(module: AnsibleModule, cur: t.Any) -> tuple[str, str]:
    """The column's type and the key column (O(key), else the single-column primary key)."""
    p = module.params
    relation = '{}.{}'.format(p['schema'], p['table'])
    relid = find_relation(module, cur, p['schema'], p['table'], exists=True)
    cur.execute(COLUMN_TYPE_SQL, dict(schema=p['schema'], table=p['table'], column=p['column']))
    row = cur.fetchone()
    if row is None:
        fail(module, f"Column {relation}.{p['column']} does not exist.")
    key = p['key']
    if not key:
        cur.execute(PRIMARY_KEY_SQL, dict(relid=relid))
        keys = [r['column_name'] for r in cur.fetchall()]
        if len(keys) != 1:
            fail(module, f'Table {relation} has no single-column primary key: set key.')
        key = keys[0]
    return row['column_type'], key


def queries_to_time(module: AnsibleModule, column_type: str, key: str) -> dict[str, t.Any]:
    """The built-in queries for this column type, then the caller's own, by name."""
    p = module.params
    named: dict[str, t.Any] = {}
    for name in p['builtin']:
        try:
            named[name] = latency_query_sql(name, column_type, p['schema'], p['table'], p['column'], key)
        except ValueError as e:
            fail(module, f'{e}; choose other builtin queries or give your own.')
    for query in p['queries']:
        named[query['name']] = query['sql']
    return named


def time_queries(module: AnsibleModule, cur: t.Any, named: dict[str, t.Any], params: dict[str, t.Any]
                 ) -> list[dict[str, t.Any]]:
    """Each query timed (warm-up runs first), in a savepoint of the read-only transaction."""
    p = module.params
    results = []
    for name, statement in named.items():
        try:
            cur.execute(LATENCY_SAVEPOINT.create)
            timings, rows = measure(cur, statement, params, p['runs'], p['warmup'])
            cur.execute(LATENCY_SAVEPOINT.release)
        except psycopg2.Error as e:
            fail(module, 'Query {} failed, so its latency cannot be measured: {}'.format(
                name, ' '.join(str(e).split())))
        text = statement if isinstance(statement, str) else statement.as_string(cur)
        results.append(summarize(name, text, timings, rows))
    return results


def inspect(module: AnsibleModule, conn: t.Any) -> dict[str, t.Any]:
    p = module.params
    with conn.cursor() as cur:
        column_type, key = read_subject(module, cur)
        cur.execute(latency_sample_sql(p['schema'], p['table'], p['column'], key))
        sample = dict(cur.fetchone())
        params = dict(token=sample['token'] or '', key=sample['key'])
        results = time_queries(module, cur, queries_to_time(module, column_type, key), params)
        return dict(column_type=column_type, key_column=key, queries=results,
                    pg_stat_statements=read_statements(cur, p['table']))


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    check_queries(module)
    relation = '{}.{}'.format(p['schema'], p['table'])
    found = run_read_only(module, lambda conn: inspect(module, conn), relation, (p['schema'], p['table']))
    module.exit_json(changed=False, table=relation, column=p['column'], **found)


def read_statements(cur: t.Any, table: str) -> dict[str, t.Any]:
    """pg_stat_statements' counters for the table's statements, or why there are none."""
    cur.execute(PG_STAT_STATEMENTS_PRESENT_SQL)
    if not cur.fetchone()['present']:
        return dict(available=False, reason='the pg_stat_statements extension is not installed in this database')
    try:
        cur.execute(STATEMENTS_SAVEPOINT.create)
        cur.execute(PG_STAT_STATEMENTS_SQL, dict(pattern=f'%{table}%'))
        rows = [dict(r) for r in cur.fetchall()]
        cur.execute(STATEMENTS_SAVEPOINT.release)
    except psycopg2.Error as e:
        cur.execute(STATEMENTS_SAVEPOINT.rollback)
        return dict(available=False, reason='pg_stat_statements cannot be read: ' + ' '.join(str(e).split()))
    return dict(available=True, statements=rows)


if __name__ == '__main__':
    main()
