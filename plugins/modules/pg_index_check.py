#!/usr/bin/python
# Copyright (c) 2025, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: pg_index_check
short_description: Check that a PostgreSQL index exists, is valid, has the expected shape and is used
version_added: 0.1.0
description:
  - Reads an index from the catalog (access method, operator class, columns, C(indisvalid), C(indisready),
    C(pg_get_indexdef), size) and compares it with the expectations given, failing with B(every) mismatch listed.
  - With O(plan_query), runs C(EXPLAIN (FORMAT JSON)) on it (optionally C(ANALYZE)) and walks the plan tree for a node
    whose C(Index Name) is O(name) (C(Index Scan), C(Index Only Scan) or C(Bitmap Index Scan)).
  - With O(expect_exists=false), succeeds only when the index is absent, for rollback verification.
  - Read-only (the C(EXPLAIN ANALYZE) runs inside a READ ONLY transaction); never reports a change.
author:
  - LedgerMind SRE (@ledgermind)
options:
  name:
    description:
      - Name of the index, without schema.
    type: str
    required: true
  table:
    description:
      - Table the index must belong to. Also makes the message for a missing index say whether the table exists.
    type: str
  schema:
    description:
      - Schema of the index (and its table).
    type: str
    default: public
  expected_method:
    description:
      - Access method the index must use, for example V(gin) or V(btree).
    type: str
  expected_opclass:
    description:
      - Operator class every key column of the index must use, for example V(jsonb_ops) or V(jsonb_path_ops).
      - Read from the catalog, so it is checked even when C(pg_get_indexdef) omits a default operator class.
    type: str
  expected_column:
    description:
      - Column the index must cover, alone (the index key must be exactly this one column).
      - Compared with the column's name as the catalog stores it, unquoted and case-sensitive (V(Tok Ens), not
        V("Tok Ens")). An expression key never matches, whatever its text.
    type: str
  require_valid:
    description:
      - Fail when the index is not valid (C(indisvalid), false after a failed C(CREATE INDEX CONCURRENTLY))
        or not ready (C(indisready)).
    type: bool
    default: true
  plan_query:
    description:
      - A single C(SELECT) (or C(WITH)/C(VALUES)/C(TABLE)) statement to C(EXPLAIN), for example
        C(SELECT txn_id FROM ml_features WHERE tokens @> '["test"]'::jsonb).
      - Semicolons are only allowed at the end.
    type: str
  explain_analyze:
    description:
      - Run C(EXPLAIN (ANALYZE, BUFFERS)), which executes O(plan_query) (read-only) and reports actual times.
    type: bool
    default: false
  disable_seqscan:
    description:
      - C(SET LOCAL enable_seqscan = off) before the C(EXPLAIN), so the planner picks the index whenever it can, even on
        a table too small for an index to be cheaper. Proves the index B(can) serve the query.
    type: bool
    default: false
  expect_used:
    description:
      - Fail when the plan of O(plan_query) does not use the index. Requires O(plan_query).
    type: bool
    default: false
  expect_exists:
    description:
      - With V(true), a missing index is a failure.
      - With V(false), the module succeeds only when the index is absent (rollback check) and fails when it exists.
    type: bool
    default: true
extends_documentation_fragment:
  - ledgermind.migrations.connection
  - ledgermind.migrations.connection.lock_timeout
  - ledgermind.migrations.connection.psycopg2
  - ansible.builtin.action_common_attributes
seealso:
  - module: ledgermind.migrations.pg_column_type
  - module: ledgermind.migrations.pg_jsonb_integrity
'''

EXAMPLES = r'''
- name: Post-migration - GIN index present, valid, jsonb_ops on tokens, and used
  ledgermind.migrations.pg_index_check:
    database_url: "{{ lookup('ansible.builtin.env', 'DATABASE_URL') }}"
    name: ix_ml_features_tokens_gin
    table: ml_features
    expected_method: gin
    expected_opclass: jsonb_ops
    expected_column: tokens
    plan_query: >-
      SELECT txn_id FROM ml_features WHERE tokens @> '["test"]'::jsonb
    explain_analyze: true
    disable_seqscan: true
    expect_used: true
  register: gin

- name: Rollback - the index is gone
  ledgermind.migrations.pg_index_check:
    database_url: "{{ lookup('ansible.builtin.env', 'DATABASE_URL') }}"
    name: ix_ml_features_tokens_gin
    table: ml_features
    expect_exists: false
'''

RETURN = r'''
exists:
  description: Whether the index exists in O(schema).
  returned: always
  type: bool
  sample: true
name:
  description: Name of the index.
  returned: always
  type: str
  sample: ix_ml_features_tokens_gin
schema:
  description: Schema of the index.
  returned: always
  type: str
  sample: public
table:
  description: Table the index belongs to (O(table) when the index does not exist).
  returned: always
  type: str
  sample: ml_features
valid:
  description: C(pg_index.indisvalid).
  returned: when the index exists
  type: bool
  sample: true
ready:
  description: C(pg_index.indisready).
  returned: when the index exists
  type: bool
  sample: true
method:
  description: Access method.
  returned: when the index exists
  type: str
  sample: gin
opclass:
  description: Operator class of the key columns (comma-separated when they differ).
  returned: when the index exists
  type: str
  sample: jsonb_ops
opclasses:
  description: Operator class of each key column.
  returned: when the index exists
  type: list
  elements: str
  sample: [jsonb_ops]
columns:
  description:
    - Key columns of the index, by name (unquoted); an expression key as C(pg_get_indexdef) prints it.
  returned: when the index exists
  type: list
  elements: str
  sample: [tokens]
definition:
  description: C(pg_get_indexdef), the C(CREATE INDEX) statement.
  returned: when the index exists
  type: str
  sample: CREATE INDEX ix_ml_features_tokens_gin ON public.ml_features USING gin (tokens)
size_bytes:
  description: On-disk size of the index.
  returned: when the index exists
  type: int
  sample: 16384
used_in_plan:
  description: Whether the plan of O(plan_query) has a node using the index.
  returned: when O(plan_query) is set and the index exists
  type: bool
  sample: true
plan_indexes:
  description: Every index named in the plan, in tree order.
  returned: when O(plan_query) is set and the index exists
  type: list
  elements: str
  sample: [ix_ml_features_tokens_gin]
plan:
  description: The plan as text lines, rendered from the JSON plan.
  returned: when O(plan_query) is set and the index exists
  type: list
  elements: str
  sample:
    - Bitmap Heap Scan on ml_features  (cost=12.00..16.01 rows=1 width=8)
    - "  Recheck Cond: (tokens @> '[\"test\"]'::jsonb)"
    - "  ->  Bitmap Index Scan on ix_ml_features_tokens_gin  (cost=0.00..12.00 rows=1 width=0)"
mismatches:
  description: Every expectation the index failed (empty on success).
  returned: always
  type: list
  elements: str
  sample: []
'''

import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ledgermind.migrations.plugins.module_utils._connection import (
    fail,
    postgres_connection_argument_spec,
    psycopg2,
    set_local,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._inspect import (
    run_read_only,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._queries import (
    INDEX_SQL,
    RELATION_SQL,
    check_plan_query,
    explain_sql,
    index_mismatches,
    plan_index_names,
    render_plan,
)


def argument_spec() -> dict[str, t.Any]:
    spec = postgres_connection_argument_spec()
    spec.update(
        name=dict(type='str', required=True),
        table=dict(type='str'),
        schema=dict(type='str', default='public'),
        expected_method=dict(type='str'),
        expected_opclass=dict(type='str'),
        expected_column=dict(type='str'),
        require_valid=dict(type='bool', default=True),
        plan_query=dict(type='str'),
        explain_analyze=dict(type='bool', default=False),
        disable_seqscan=dict(type='bool', default=False),
        expect_used=dict(type='bool', default=False),
        expect_exists=dict(type='bool', default=True),
    )
    return spec


def read_index(cur: t.Any, schema: str, name: str) -> dict[str, t.Any] | None:
    cur.execute(INDEX_SQL, dict(schema=schema, name=name))
    row = cur.fetchone()
    return dict(row) if row else None


def missing_message(module: AnsibleModule, cur: t.Any) -> str:
    """Why the index is missing: no schema, no table, or just no such index."""
    p = module.params
    where = '{}.{}'.format(p['schema'], p['name'])
    cur.execute(RELATION_SQL, dict(schema=p['schema'], table=p['table'] or ''))
    row = cur.fetchone()
    if not row['schema_exists']:
        return f"Index {where} does not exist: schema {p['schema']} does not exist; check schema and login_db."
    if p['table'] and row['relid'] is None:
        return 'Index {} does not exist: table {}.{} does not exist either; check table, schema and login_db.'.format(
            where, p['schema'], p['table'])
    on = ' on {}.{}'.format(p['schema'], p['table']) if p['table'] else ''
    return f'Index {where} does not exist{on} (was the migration applied, or did CREATE INDEX fail?).'


def shape_index(info: dict[str, t.Any]) -> dict[str, t.Any]:
    opclasses = list(info['opclasses'] or [])
    return dict(exists=True, name=info['name'], schema=info['schema'], table=info['table'], valid=info['valid'],
                ready=info['ready'], method=info['method'], opclasses=opclasses,
                opclass=', '.join(sorted(set(opclasses))), columns=list(info['columns'] or []),
                definition=info['definition'], size_bytes=int(info['size_bytes']))


def explain(module: AnsibleModule, conn: t.Any, plan_query: str) -> dict[str, t.Any]:
    """EXPLAIN the query (JSON), report whether the index is used and the plan as text lines."""
    p = module.params
    if p['disable_seqscan']:
        set_local(conn, 'enable_seqscan', 'off')
    with conn.cursor() as cur:
        try:
            cur.execute(explain_sql(plan_query, p['explain_analyze']))
        except psycopg2.Error as e:
            if e.pgcode and e.pgcode[:2] in ('42', '22'):  # syntax, undefined object, bad data in the query itself
                fail(module, 'plan_query could not be explained: {}'.format(' '.join(str(e).split())))
            raise
        doc = list(cur.fetchone().values())[0]
    names = plan_index_names(doc)
    return dict(used_in_plan=p['name'] in names, plan_indexes=names, plan=render_plan(doc))


def inspect(module: AnsibleModule, conn: t.Any, plan_query: str | None) -> dict[str, t.Any]:
    p = module.params
    with conn.cursor() as cur:
        info = read_index(cur, p['schema'], p['name'])
        if info is None:
            result = dict(changed=False, exists=False, name=p['name'], schema=p['schema'], table=p['table'],
                          mismatches=[])
            if p['expect_exists']:
                msg = missing_message(module, cur)
                result['mismatches'] = [msg]
                fail(module, msg, **{k: v for k, v in result.items() if k != 'changed'})
            return result
    result = dict(changed=False, mismatches=[], **shape_index(info))
    if not p['expect_exists']:
        result['mismatches'] = ['index {}.{} exists ({}) but expect_exists is false; the rollback should have '
                                'dropped it'.format(p['schema'], p['name'], info['definition'])]
        return result
    result['mismatches'] = index_mismatches(info, dict(
        table=p['table'], method=p['expected_method'], opclass=p['expected_opclass'], column=p['expected_column'],
        require_valid=p['require_valid']))
    if plan_query:
        result.update(explain(module, conn, plan_query))
        if p['expect_used'] and not result['used_in_plan']:
            result['mismatches'].append('the plan of plan_query does not use {} (indexes used: {}){}'.format(
                p['name'], ', '.join(result['plan_indexes']) or 'none',
                '' if p['disable_seqscan'] else '; on a small table set disable_seqscan: true'))
    return result


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_if=[('expect_used', True, ['plan_query'])])
    p = module.params
    plan_query = None
    if p['plan_query'] is not None:
        try:
            plan_query = check_plan_query(p['plan_query'])
        except ValueError as e:
            fail(module, str(e))

    result = run_read_only(module, lambda conn: inspect(module, conn, plan_query),
                           '{}.{}'.format(p['schema'], p['table'] or p['name']), (p['schema'], p['table'], p['name']))

    if result['mismatches']:
        problems = '; '.join(result['mismatches'])
        fail(module, f"Index {p['schema']}.{p['name']} does not meet expectations: {problems}.",
             **{k: v for k, v in result.items() if k != 'changed'})
    module.exit_json(**result)


if __name__ == '__main__':
    main()
