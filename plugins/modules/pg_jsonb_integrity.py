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
  - While an application keeps writing, compare with O(baseline) (an earlier run's RV(fingerprint_sums) and
    RV(snapshot)) and O(write_log_run_id). RV(proof) then compares content over the rows nobody wrote since the
    baseline, from the write log of M(ledgermind.migrations.pg_write_log) read in this scan's own snapshot. Equal
    means that every row the application did not write kept its content exactly, whatever it wrote meanwhile.
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
  baseline:
    description:
      - "An earlier scan to prove content against. Pass its RV(fingerprint_sums) combined with its RV(snapshot), for
        example C({{ before.fingerprint_sums | combine({'snapshot': before.snapshot}) }})."
      - Adds RV(proof). The module does not fail on a mismatch; the caller judges RV(proof.matches).
      - Without O(write_log_run_id), the whole fingerprints are compared (RV(proof.method) V(full)), which only holds
        when nobody wrote meanwhile.
    type: dict
    suboptions:
      total:
        description: The baseline's row count.
        type: int
        required: true
      hash1:
        description: The baseline's first hash sum, as a decimal string or an integer.
        type: raw
        required: true
      hash2:
        description: The baseline's second hash sum, as a decimal string or an integer.
        type: raw
        required: true
      snapshot:
        description:
          - The baseline scan's RV(snapshot) (C(pg_current_snapshot()) text). Required with O(write_log_run_id).
        type: str
  write_log_run_id:
    description:
      - The run whose write log (M(ledgermind.migrations.pg_write_log)) to read, with O(baseline).
      - The rows with a key logged by a transaction the baseline snapshot did not see are left out of the
        comparison, and the baseline is corrected by the first old hashes logged for those keys.
      - The write log must have been installed before the baseline scan. A write the log missed makes the proof
        fail, never pass.
    type: str
  history_schema:
    description:
      - Schema holding the write log (C(write_log)).
    type: str
    default: ledgermind_migrations
  fail_on_violation:
    description:
      - Fail when RV(invalid_types), RV(element_type_violations) or RV(roundtrip_violations) is not zero.
      - The result, including counts and offending keys, is returned either way.
    type: bool
    default: false
extends_documentation_fragment:
  - ledgermind.migrations.connection
  - ledgermind.migrations.connection.lock_timeout
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

- name: While the application writes - the rows nobody wrote kept their content
  ledgermind.migrations.pg_jsonb_integrity:
    database_url: "{{ lookup('ansible.builtin.env', 'DATABASE_URL') }}"
    table: ml_features
    column: tokens
    baseline: "{{ before.fingerprint_sums | combine({'snapshot': before.snapshot}) }}"
    write_log_run_id: "{{ ledgermind_run_id }}"
  register: proved

- name: Content proven
  ansible.builtin.assert:
    that: proved.proof.matches
    fail_msg: >-
      Content differs on rows nobody wrote ({{ proved.proof.rows_compared }} compared,
      {{ proved.proof.rows_written }} written meanwhile, proof {{ proved.proof.method }}).
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
fingerprint_sums:
  description:
    - The exact parts of RV(fingerprint), to pass as O(baseline) to a later scan. The hash sums are decimal strings,
      because they exceed what JSON numbers hold exactly.
  returned: always
  type: dict
  contains:
    total:
      description: Number of rows.
      type: int
    hash1:
      description: Sum of the first 64-bit hash over all rows' C(key:value) lines.
      type: str
    hash2:
      description: Sum of the second 64-bit hash.
      type: str
  sample: {"total": 10000, "hash1": "-1234567890123456789012", "hash2": "987654321098765432109"}
snapshot:
  description:
    - C(pg_current_snapshot()) of the scan's REPEATABLE READ transaction (C(xmin:xmax:xip,...)). Every figure
      returned comes from this snapshot. Pass it in O(baseline) to a later scan.
  returned: always
  type: str
  sample: "10412:10415:10412"
proof:
  description:
    - The comparison with O(baseline), made in this scan's snapshot.
    - RV(proof.matches) true means that the rows nobody wrote since the baseline have exactly the content they had then.
      With RV(proof.method) V(full), that covers every row.
  returned: when O(baseline) is set
  type: dict
  contains:
    method:
      description:
        - V(full) when no write was logged since the baseline (or no write log was read), so the whole
          fingerprints are compared.
        - V(untouched_rows) when rows were written. The rows with a written key are left out on both sides.
      type: str
      sample: untouched_rows
    rows_written:
      description:
        - Keys written since the baseline, by transactions the baseline did not see that have committed now.
        - Null without O(write_log_run_id).
      type: int
      sample: 37
    rows_compared:
      description: Rows of this scan that were compared (not written since the baseline).
      type: int
      sample: 9970
    matches:
      description: Whether the untouched rows' fingerprints before and after are equal.
      type: bool
      sample: true
    baseline_fingerprint:
      description: The whole fingerprint of O(baseline).
      type: str
    fingerprint_untouched_before:
      description: The fingerprint of the baseline's rows outside the written keys (the baseline minus the first
        logged old hashes).
      type: str
    fingerprint_untouched_after:
      description: The fingerprint of this scan's rows outside the written keys.
      type: str
    write_log_active:
      description:
        - Whether the write-log trigger of O(write_log_run_id) was on the table at this scan. A write log removed
          earlier cannot make the proof pass wrongly, but it can make it fail.
        - Null without O(write_log_run_id).
      type: bool
    written_sample_keys:
      description:
        - The entries of O(sample_keys) whose rows were written since the baseline, in their order. Their values
          in RV(sample_by_key) are the application's, so comparing them with the baseline's says nothing.
        - Empty without O(write_log_run_id).
      type: list
      elements: str
      sample: ["4"]
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

import time
import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ledgermind.migrations.plugins.module_utils._connection import (
    fail,
    postgres_connection_argument_spec,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._inspect import (
    find_relation,
    run_read_only,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._queries import (
    COLUMN_SQL,
    ELEMENT_TYPES,
    FINGERPRINT_SEEDS,
    HISTORY_SCHEMA,
    JSON_TYPES,
    PRIMARY_KEY_SQL,
    SAMPLED_COUNTS,
    SNAPSHOT_SQL,
    WRITE_LOG_PRESENT_SQL,
    WRITE_LOG_TRIGGER,
    WRITE_LOG_TRIGGER_SQL,
    Sums,
    column_kind,
    fingerprint,
    integrity_counts_sql,
    integrity_params,
    integrity_summary,
    jsonable,
    missing_keys,
    offending_keys_sql,
    parse_baseline,
    sample_keys_sql,
    sample_rows_sql,
    shape_sample_rows,
    trigger_args,
    untouched_proof,
    violation_total,
    written_rows_sql,
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
        baseline=dict(type='dict', options=dict(
            total=dict(type='int', required=True),
            hash1=dict(type='raw', required=True),
            hash2=dict(type='raw', required=True),
            snapshot=dict(type='str'),
        )),
        write_log_run_id=dict(type='str'),
        history_schema=dict(type='str', default=HISTORY_SCHEMA),
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
    if p['baseline'] is not None:
        try:
            parse_baseline(p['baseline'], need_snapshot=bool(p['write_log_run_id']))
        except ValueError as e:
            fail(module, str(e) + '.')


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


def scan_snapshot(module: AnsibleModule, cur: t.Any) -> str:
    """The transaction's snapshot; REPEATABLE READ, so the one every query of this module read."""
    cur.execute(SNAPSHOT_SQL)
    row = cur.fetchone()
    if row['isolation'] != 'repeatable read':
        fail(module, f"The scan ran at isolation level {row['isolation']}, not repeatable read: its sums and snapshot "
                     'would not agree. Is default_transaction_isolation forced on the server?')
    return str(row['snapshot'])


def prove(module: AnsibleModule, cur: t.Any, target: dict[str, t.Any], relid: int, current: Sums) -> dict[str, t.Any]:
    """RV(proof): O(baseline) against this scan, over the rows the write log says nobody wrote (same snapshot)."""
    p = module.params
    baseline, snapshot = parse_baseline(p['baseline'], need_snapshot=bool(p['write_log_run_id']))
    run_id, hs = p['write_log_run_id'], p['history_schema']
    if not run_id:
        return dict(untouched_proof(baseline, current, None), write_log_active=None, written_sample_keys=[])
    cur.execute(WRITE_LOG_PRESENT_SQL, dict(hs=hs))
    if not cur.fetchone()['present']:
        fail(module, f'There is no write log ({hs}.write_log) to read for run {run_id}: install it with '
                     'ledgermind.migrations.pg_write_log before the baseline scan, or check history_schema.')
    cur.execute(WRITE_LOG_TRIGGER_SQL, dict(relid=relid, trigger=WRITE_LOG_TRIGGER))
    trigger = cur.fetchone()
    active = trigger is not None and trigger['enabled'] != 'D' and trigger_args(trigger['args'])[:1] == [run_id]
    cur.execute(written_rows_sql(hs, **target), dict(
        run_id=run_id, baseline_snapshot=snapshot, key_name=target['key'],
        sample_keys=[str(k) for k in p['sample_keys']], seed1=FINGERPRINT_SEEDS[0], seed2=FINGERPRINT_SEEDS[1]))
    written = dict(cur.fetchone())
    return dict(untouched_proof(baseline, current, written), write_log_active=active,
                written_sample_keys=list(written['written_sample_keys'] or []))


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
        sums = Sums(counts['total'], int(row['hash1']), int(row['hash2']))
        result: dict[str, t.Any] = dict(changed=False, column_type=info['formatted_type'], key_column=key, **counts)
        result.update(violations=violation_total(counts),
                      fingerprint=fingerprint(counts['total'], (row['hash1'], row['hash2'])),
                      fingerprint_sums=sums.as_json(), snapshot=scan_snapshot(module, cur),
                      offending_keys=offending(cur, target, params, counts, p['sample_size']),
                      scan_seconds=seconds)
        if p['baseline'] is not None:
            result['proof'] = prove(module, cur, target, relid, sums)
        result.update(samples(cur, target, module))
    return result


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_by=dict(write_log_run_id=('baseline',)))
    check_params(module)
    p = module.params
    relation = '{}.{}'.format(p['schema'], p['table'])

    result = run_read_only(module, lambda conn: inspect(module, conn), relation, (p['schema'], p['table']))

    if p['fail_on_violation'] and result['violations']:
        fail(module, integrity_summary(result, relation), **{k: v for k, v in result.items() if k != 'changed'})
    module.exit_json(**result)


if __name__ == '__main__':
    main()
