#!/usr/bin/python
# Copyright (c) 2025, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: pg_column_type
short_description: Report (and optionally assert) the type of a PostgreSQL column
version_added: 0.1.0
description:
  - Reads the type of one column the way the runbook's C(information_schema.columns) query does
    (C(data_type), C(udt_name)) plus the formatted type (C(text[]), C(jsonb)).
  - With O(expected_type), tells whether the column has that type and by default fails when it does not,
    so a pre-flight can assert C(text[]) and a post-migration check can assert C(jsonb).
  - Read-only; never reports a change.
author:
  - LedgerMind SRE (@ledgermind)
options:
  table:
    description:
      - Name of the table (or view) holding the column, without schema.
    type: str
    required: true
  column:
    description:
      - Name of the column.
    type: str
    required: true
  schema:
    description:
      - Schema of the table.
    type: str
    default: public
  expected_type:
    description:
      - The type the column should have. Normalised before comparing, so C(text[]), C(_text) and C(text ARRAY)
        are the same type, as are C(character varying) and C(varchar), or C(bigint) and C(int8).
      - C(ARRAY) (the runbook's C(data_type) for any array) matches any array type.
      - When set, RV(matches) is returned.
    type: str
  fail_on_mismatch:
    description:
      - Fail when O(expected_type) is set and the column does not have it, or does not exist.
      - With V(false) the module reports RV(matches=false) and succeeds.
    type: bool
    default: true
extends_documentation_fragment:
  - ledgermind.migrations.connection
  - ledgermind.migrations.connection.lock_timeout
  - ledgermind.migrations.connection.psycopg2
  - ansible.builtin.action_common_attributes
seealso:
  - module: ledgermind.migrations.pg_jsonb_integrity
  - module: ledgermind.migrations.pg_index_check
  - module: community.postgresql.postgresql_info
'''

EXAMPLES = r'''
- name: Pre-flight - tokens is still text[]
  ledgermind.migrations.pg_column_type:
    database_url: "{{ lookup('ansible.builtin.env', 'DATABASE_URL') }}"
    table: ml_features
    column: tokens
    expected_type: text[]

- name: Post-migration - tokens is jsonb (report only, decide later)
  ledgermind.migrations.pg_column_type:
    login_host: db.internal
    login_user: ledgermind
    login_password: "{{ vault_db_password }}"
    login_db: ledgermind
    table: ml_features
    column: tokens
    expected_type: jsonb
    fail_on_mismatch: false
  register: tokens_type

- name: Show it
  ansible.builtin.debug:
    msg: "tokens is {{ tokens_type.formatted_type }} (matches: {{ tokens_type.matches }})"
'''

RETURN = r'''
exists:
  description: Whether the column exists.
  returned: always
  type: bool
  sample: true
schema:
  description: Schema of the table.
  returned: always
  type: str
  sample: public
table:
  description: Name of the table.
  returned: always
  type: str
  sample: ml_features
column:
  description: Name of the column.
  returned: always
  type: str
  sample: tokens
data_type:
  description: The C(information_schema.columns.data_type) spelling (C(ARRAY) for any array).
  returned: when the column exists
  type: str
  sample: ARRAY
udt_name:
  description: The underlying type name, as in C(pg_type.typname) (C(_text) for C(text[])).
  returned: when the column exists
  type: str
  sample: _text
formatted_type:
  description: The type as PostgreSQL prints it (C(format_type)), with modifiers.
  returned: when the column exists
  type: str
  sample: text[]
is_nullable:
  description: Whether the column accepts NULL.
  returned: when the column exists
  type: bool
  sample: true
expected_type:
  description: O(expected_type) after normalisation (C(array) stands for any array).
  returned: when O(expected_type) is set
  type: str
  sample: _text
matches:
  description: Whether the column exists and has O(expected_type).
  returned: when O(expected_type) is set
  type: bool
  sample: true
'''

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
    display_type,
    normalize_type_name,
    type_matches,
)


def argument_spec() -> dict[str, t.Any]:
    spec = postgres_connection_argument_spec()
    spec.update(
        table=dict(type='str', required=True),
        column=dict(type='str', required=True),
        schema=dict(type='str', default='public'),
        expected_type=dict(type='str'),
        fail_on_mismatch=dict(type='bool', default=True),
    )
    return spec


def read_column(cur: t.Any, schema: str, table: str, relid: int, column: str) -> dict[str, t.Any] | None:
    cur.execute(COLUMN_SQL, dict(schema=schema, table=table, relid=relid, column=column))
    row = cur.fetchone()
    return dict(row) if row else None


def build_result(params: dict[str, t.Any], info: dict[str, t.Any] | None) -> dict[str, t.Any]:
    result: dict[str, t.Any] = dict(changed=False, exists=info is not None, schema=params['schema'],
                                    table=params['table'], column=params['column'])
    if info:
        result.update(data_type=info['data_type'], udt_name=info['udt_name'],
                      formatted_type=info['formatted_type'], is_nullable=bool(info['is_nullable']))
    if params['expected_type'] is not None:
        result['expected_type'] = normalize_type_name(params['expected_type'])
        result['matches'] = info is not None and type_matches(params['expected_type'], info['data_type'],
                                                              info['udt_name'])
    return result


def mismatch_message(params: dict[str, t.Any], result: dict[str, t.Any]) -> str:
    where = '{}.{}.{}'.format(params['schema'], params['table'], params['column'])
    if not result['exists']:
        return 'Column {} does not exist (expected type {}).'.format(where, params['expected_type'])
    return 'Column {} is {} (data_type {}, udt_name {}), expected {}.'.format(
        where, result['formatted_type'] or display_type(result['udt_name']), result['data_type'],
        result['udt_name'], params['expected_type'])


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    if params['expected_type'] is not None:
        try:
            normalize_type_name(params['expected_type'])
        except ValueError:
            fail(module, 'expected_type must not be empty.')

    def inspect(conn: t.Any) -> dict[str, t.Any] | None:
        with conn.cursor() as cur:
            relid = find_relation(module, cur, params['schema'], params['table'], exists=False)
            return read_column(cur, params['schema'], params['table'], relid, params['column'])

    info = run_read_only(module, inspect, '{}.{}'.format(params['schema'], params['table']),
                         (params['schema'], params['table']))

    result = build_result(params, info)
    if result.get('matches') is False and params['fail_on_mismatch']:
        fail(module, mismatch_message(params, result), **{k: v for k, v in result.items() if k != 'changed'})
    module.exit_json(**result)


if __name__ == '__main__':
    main()
