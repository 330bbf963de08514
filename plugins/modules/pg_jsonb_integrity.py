#!/usr/bin/python
# Copyright (c) 2025, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: pg_jsonb_integrity
short_description: Count, sample and fingerprint a text[] or jsonb column in one pass
version_added: 0.1.0
description:
  - Runs the runbook's row counts (total, NULLs, empty), its C(jsonb_typeof) integrity check and its sample query
    against a column that is either C(text[]) (before the migration) or C(jsonb) (after it), in one read-only pass.
  - A C(text[]) (or other array) column is read as C(to_jsonb(column)), a C(json) column as C(column::jsonb), so the
    same checks and the same RV(fingerprint) apply before and after the conversion.
  - RV(fingerprint) is a content digest computed in PostgreSQL in constant memory (a sum of two 64-bit hashes of
    C(key:value) per row, plus the row count). Equal fingerprints before and after the migration prove that no value
    changed, moved to another row, appeared or disappeared.
  - Offending keys are only fetched (capped by O(sample_size)) when a count is non-zero; the table is never loaded
    into memory.
  - Read-only; never reports a change.
author:
  - LedgerMind SRE (@ledgermind)
options:
  table:
    description:
      - Name of the table, without schema.
    type: str
    required: true
  column:
    description:
      - Name of the column to check (C(text[]), any other array type, C(json) or C(jsonb)).
    type: str
    required: true
  schema:
    description:
      - Schema of the table.
    type: str
    default: public
  key_column:
    description:
      - Column identifying a row in samples and in the fingerprint.
      - Default is the table's primary key, which must then be a single column.
    type: str
  expected_type:
    description:
      - JSON type every non-null value must have (C(jsonb_typeof)); others count as RV(invalid_types).
    type: str
    default: array
    choices: [ array, object, string, number, boolean ]
  expected_element_type:
    description:
      - JSON type every non-null element of an array value must have; others count as RV(element_type_violations).
      - JSON C(null) elements are counted separately as RV(null_elements) and are not violations.
      - V(any) disables the element check.
    type: str
    default: string
    choices: [ string, number, boolean, object, array, "null", any ]
  sample_size:
    description:
      - How many offending keys to return per count (RV(offending_keys)), at most 100.
    type: int
    default: 10
  sample_rows:
    description:
      - How many non-null rows to return in RV(sample), in key order (the runbook's C(LIMIT 5) sample). C(0) for none.
    type: int
    default: 5
  sample_keys:
    description:
      - Key values whose rows to return in RV(sample_by_key), for example the keys sampled before the migration, to
        compare them after it. At most 1000.
    type: list
    elements: str
    default: []
  fail_on_violation:
    description:
      - Fail when RV(invalid_types), RV(element_type_violations) or RV(roundtrip_violations) is not zero.
      - The result, including counts and offending keys, is returned either way.
    type: bool
    default: false
extends_documentation_fragment:
  - ledgermind.migrations.connection
  - ledgermind.migrations.connection.psycopg2
  - ansible.builtin.action_common_attributes
seealso:
  - module: ledgermind.migrations.pg_column_type
  - module: ledgermind.migrations.pg_index_check
'''

EXAMPLES = r'''
- name: Pre-flight - counts, sample and fingerprint of the text[] column
  ledgermind.migrations.pg_jsonb_integrity:
    database_url: "{{ lookup('ansible.builtin.env', 'DATABASE_URL') }}"
    table: ml_features
    column: tokens
  register: before

- name: Post-migration - every value an array of strings, same content as before
  ledgermind.migrations.pg_jsonb_integrity:
    database_url: "{{ lookup('ansible.builtin.env', 'DATABASE_URL') }}"
    table: ml_features
    column: tokens
    sample_keys: "{{ before.sample | map(attribute='key') | map('string') | list }}"
    fail_on_violation: true
  register: after

- name: Nothing changed
  ansible.builtin.assert:
    that:
      - after.fingerprint == before.fingerprint
      - after.total == before.total
      - after.sample_by_key == before.sample
'''

RETURN = r'''
column_type:
  description: The column's type as PostgreSQL prints it.
  returned: always
  type: str
  sample: jsonb
key_column:
  description: The key column used (detected primary key or O(key_column)).
  returned: always
  type: str
  sample: txn_id
total:
  description: Number of rows.
  returned: always
  type: int
  sample: 10000
nulls:
  description: Rows where the column is NULL.
  returned: always
  type: int
  sample: 12
empty:
  description: Rows holding an empty array (C({}) in C(text[]), C([]) in jsonb) or an empty object.
  returned: always
  type: int
  sample: 3
invalid_types:
  description: Non-null values whose JSON type is not O(expected_type) (the runbook's C(invalid_types)).
  returned: always
  type: int
  sample: 0
element_type_violations:
  description: Non-null array elements, over all rows, whose JSON type is not O(expected_element_type).
  returned: always
  type: int
  sample: 0
null_elements:
  description: JSON C(null) array elements over all rows (C(NULL) elements of a C(text[])).
  returned: always
  type: int
  sample: 1
roundtrip_violations:
  description:
    - Values that could not survive C(text[]) to C(jsonb) and back unchanged.
    - On an array column, arrays with more than one dimension or a lower bound other than 1.
    - On a jsonb column, non-arrays and arrays with elements that are neither strings nor null.
  returned: always
  type: int
  sample: 0
violations:
  description: Sum of RV(invalid_types), RV(element_type_violations) and RV(roundtrip_violations).
  returned: always
  type: int
  sample: 0
fingerprint:
  description:
    - Hex content digest of the C(key:value) pairs, independent of row order and of whether the column is C(text[])
      or C(jsonb).
  returned: always
  type: str
  sample: 3f1c0e9b8f0b4c1e2d9a7c6b5a4f3e2d
offending_keys:
  description: Up to O(sample_size) keys (in key order) for each non-zero count.
  returned: always
  type: dict
  sample: {"invalid_types": [], "element_type_violations": [], "roundtrip_violations": [], "null_elements": [4]}
sample:
  description: Up to O(sample_rows) non-null rows in key order, the value JSON-decoded, with its array length.
  returned: always
  type: list
  elements: dict
  sample: [{"key": 3, "value": ["coffee", "shop"], "length": 2}]
sample_by_key:
  description: The rows for O(sample_keys), in key order, shaped like RV(sample).
  returned: always
  type: list
  elements: dict
  sample: [{"key": 3, "value": ["coffee", "shop"], "length": 2}]
sample_keys_missing:
  description: Entries of O(sample_keys) that matched no row.
  returned: always
  type: list
  elements: str
  sample: []
scan_seconds:
  description: Wall-clock seconds of the counting pass.
  returned: always
  type: float
  sample: 0.042
'''

import time  # noqa: E402
import typing as t  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.ledgermind.migrations.plugins.module_utils._connection import (  # noqa: E402
    fail,
    postgres_connection_argument_spec,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._inspect import (  # noqa: E402
    find_relation,
    run_read_only,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._queries import (  # noqa: E402
    COLUMN_SQL,
    ELEMENT_TYPES,
    JSON_TYPES,
    PRIMARY_KEY_SQL,
    SAMPLED_COUNTS,
    column_kind,
    fingerprint,
    integrity_counts_sql,
    integrity_params,
    integrity_summary,
    jsonable,
    missing_keys,
    offending_keys_sql,
    sample_keys_sql,
    sample_rows_sql,
    shape_sample_rows,
    violation_total,
)

MAX_SAMPLE_SIZE = 100
MAX_SAMPLE_KEYS = 1000
COUNT_NAMES = ('total', 'nulls', 'empty', 'invalid_types', 'element_type_violations', 'null_elements',
               'roundtrip_violations')


def argument_spec() -> dict[str, t.Any]:
    spec = postgres_connection_argument_spec()
    spec.update(
        table=dict(type='str', required=True),
        column=dict(type='str', required=True),
        schema=dict(type='str', default='public'),
        key_column=dict(type='str', no_log=False),
        expected_type=dict(type='str', default='array', choices=list(JSON_TYPES)),
        expected_element_type=dict(type='str', default='string', choices=list(ELEMENT_TYPES)),
        sample_size=dict(type='int', default=10),
        sample_rows=dict(type='int', default=5),
        sample_keys=dict(type='list', elements='str', default=[], no_log=False),
        fail_on_violation=dict(type='bool', default=False),
    )
    return spec


def check_params(module: AnsibleModule) -> None:
    p = module.params
    if not 0 <= p['sample_size'] <= MAX_SAMPLE_SIZE:
        fail(module, f"sample_size must be between 0 and {MAX_SAMPLE_SIZE}, got {p['sample_size']}.")
    if not 0 <= p['sample_rows'] <= MAX_SAMPLE_SIZE:
        fail(module, f"sample_rows must be between 0 and {MAX_SAMPLE_SIZE}, got {p['sample_rows']}.")
    if len(p['sample_keys']) > MAX_SAMPLE_KEYS:
        fail(module, f"sample_keys holds {len(p['sample_keys'])} keys; at most {MAX_SAMPLE_KEYS} are allowed.")


def read_column(module: AnsibleModule, cur: t.Any, schema: str, table: str, relid: int,
                column: str) -> dict[str, t.Any]:
    cur.execute(COLUMN_SQL, dict(schema=schema, table=table, relid=relid, column=column))
    row = cur.fetchone()
    if row is None:
        fail(module, f'Column {schema}.{table}.{column} does not exist.')
    return dict(row)


def find_key_column(module: AnsibleModule, cur: t.Any, schema: str, table: str, relid: int) -> str:
    """The explicit key_column (checked to exist) or the single-column primary key."""
    wanted = module.params['key_column']
    if wanted:
        read_column(module, cur, schema, table, relid, wanted)
        return str(wanted)
    cur.execute(PRIMARY_KEY_SQL, dict(relid=relid))
    keys = [r['column_name'] for r in cur.fetchall()]
    if len(keys) != 1:
        has = 'no primary key' if not keys else f"a multi-column primary key ({', '.join(keys)})"
        fail(module, f'Table {schema}.{table} has {has}; set key_column to a column that identifies each row.')
    return str(keys[0])


def scan(cur: t.Any, target: dict[str, t.Any], params: dict[str, t.Any]) -> tuple[dict[str, t.Any], float]:
    """The single counting pass: counts and fingerprint sums, timed."""
    started = time.monotonic()
    cur.execute(integrity_counts_sql(**target), params)
    row = cur.fetchone()
    return dict(row), round(time.monotonic() - started, 3)


def offending(cur: t.Any, target: dict[str, t.Any], params: dict[str, t.Any], counts: dict[str, t.Any],
              limit: int) -> dict[str, list[t.Any]]:
    """A capped second query per non-zero count; nothing is fetched for zero counts."""
    keys: dict[str, list[t.Any]] = {}
    for name in SAMPLED_COUNTS:
        keys[name] = []
        if counts[name] and limit:
            cur.execute(offending_keys_sql(count_name=name, **target), dict(params, limit=limit))
            keys[name] = [jsonable(r['key']) for r in cur.fetchall()]
    return keys


def samples(cur: t.Any, target: dict[str, t.Any], module: AnsibleModule) -> dict[str, t.Any]:
    p = module.params
    result: dict[str, t.Any] = dict(sample=[], sample_by_key=[], sample_keys_missing=[])
    if p['sample_rows']:
        cur.execute(sample_rows_sql(**target), dict(limit=p['sample_rows']))
        result['sample'] = shape_sample_rows(cur.fetchall())
    if p['sample_keys']:
        cur.execute(sample_keys_sql(**target), dict(key_name=target['key'], keys=[str(k) for k in p['sample_keys']]))
        result['sample_by_key'] = shape_sample_rows(cur.fetchall())
        result['sample_keys_missing'] = missing_keys(p['sample_keys'], result['sample_by_key'])
    return result


def inspect(module: AnsibleModule, conn: t.Any) -> dict[str, t.Any]:
    p = module.params
    schema, table, column = p['schema'], p['table'], p['column']
    with conn.cursor() as cur:
        relid = find_relation(module, cur, schema, table)
        info = read_column(module, cur, schema, table, relid, column)
        kind = column_kind(info['data_type'], info['udt_name'])
        if kind is None:
            fail(module, f"Column {schema}.{table}.{column} is {info['formatted_type']}; "
                 'pg_jsonb_integrity reads jsonb, json or array (e.g. text[]) columns.')
        key = find_key_column(module, cur, schema, table, relid)
        target = dict(schema=schema, table=table, key=key, column=column, kind=kind)
        params = integrity_params(p['expected_type'], p['expected_element_type'])
        row, seconds = scan(cur, target, params)
        counts = {name: int(row[name]) for name in COUNT_NAMES}
        result: dict[str, t.Any] = dict(changed=False, column_type=info['formatted_type'], key_column=key, **counts)
        result.update(violations=violation_total(counts),
                      fingerprint=fingerprint(counts['total'], (row['hash1'], row['hash2'])),
                      offending_keys=offending(cur, target, params, counts, p['sample_size']),
                      scan_seconds=seconds)
        result.update(samples(cur, target, module))
    return result


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    check_params(module)
    p = module.params
    relation = '{}.{}'.format(p['schema'], p['table'])

    result = run_read_only(module, lambda conn: inspect(module, conn), relation, (p['schema'], p['table']))

    if p['fail_on_violation'] and result['violations']:
        fail(module, integrity_summary(result, relation), **{k: v for k, v in result.items() if k != 'changed'})
    module.exit_json(**result)


if __name__ == '__main__':
    main()
