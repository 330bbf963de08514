#!/usr/bin/python
# Copyright (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: pg_rewrite_space
short_description: Tell whether the database has room to rewrite a PostgreSQL table
version_added: 0.1.0
description:
  - An in-place C(ALTER TABLE ... ALTER COLUMN ... TYPE) writes a new copy of the table with its TOAST and indexes
    before it drops the old one, so it needs about the table's size again (C(pg_total_relation_size)), and fails
    half-way when the disk fills up. The module compares that size, times O(free_space_margin), with the free space
    of the file system holding the server's data directory, before anything runs.
  - The data directory is read as C(current_setting('data_directory')), which only superusers and members of
    C(pg_read_all_settings) may read, and measured with C(statvfs) where the host running the module sees it (the
    database host itself). When the module runs elsewhere, when the role may not read it, when the directory at that
    path on this host is another cluster's (its control file names another system identifier), or when the table
    lives in a tablespace of its own, the free space is unknown. The module then warns and says why in
    RV(free_space_source); it never refuses on unknown space.
  - With O(column) and O(target_type), the rewrite is pending only while the column's type is not O(target_type); a
    column already converted needs no room and nothing is checked (RV(pending) false).
  - Read-only; never reports a change.
author:
  - LedgerMind SRE (@ledgermind)
options:
  table:
    description: Name of the table to be rewritten, without schema.
    type: str
    required: true
  schema:
    description: Schema of the table.
    type: str
    default: public
  column:
    description:
      - The column whose type change rewrites the table. With O(target_type), tells whether the rewrite is pending.
    type: str
  target_type:
    description:
      - The column's type after the rewrite, e.g. C(jsonb). A column that already has it needs no rewrite.
    type: str
  free_space_margin:
    description:
      - The room asked for is the table's C(pg_total_relation_size) times this factor. Above 1 for what the size
        leaves out, such as the index the migration adds and the WAL the rewrite writes until checkpoints
        recycle it (in C(pg_wal), usually on the same file system; up to C(max_wal_size), more behind a replication
        slot or a failing C(archive_command)).
      - C(0) checks nothing.
    type: float
    default: 1.5
  fail_on_insufficient:
    description:
      - Fail, naming the numbers, when the free space is known and smaller than RV(needed_bytes).
      - With V(false), RV(enough) is false and RV(problem) says why; the module succeeds.
    type: bool
    default: true
extends_documentation_fragment:
  - ledgermind.migrations.connection
  - ledgermind.migrations.connection.lock_timeout
  - ledgermind.migrations.connection.psycopg2
  - ansible.builtin.action_common_attributes
notes:
  - The estimate is the table's size as it is now. A column whose new type takes more room than the old one needs
    more; raise O(free_space_margin) for such a conversion (text[] to jsonb took less room on the demo data).
seealso:
  - module: ledgermind.migrations.alembic_migrate
  - module: ledgermind.migrations.pg_online_convert
'''

EXAMPLES = r'''
- name: Refuse the in-place rewrite of ml_features when its file system lacks room
  ledgermind.migrations.pg_rewrite_space:
    database_url: "{{ lookup('ansible.builtin.env', 'DATABASE_URL') }}"
    table: ml_features
    column: tokens
    target_type: jsonb
    free_space_margin: 1.5

- name: Only report it
  ledgermind.migrations.pg_rewrite_space:
    database_url: "{{ lookup('ansible.builtin.env', 'DATABASE_URL') }}"
    table: ml_features
    fail_on_insufficient: false
  register: room
'''

RETURN = r'''
pending:
  description: Whether the rewrite is still to come (always true without O(column) and O(target_type)).
  returned: always
  type: bool
  sample: true
column_type:
  description: The type of O(column) now; null without O(column).
  returned: always
  type: str
  sample: text[]
table_bytes:
  description:
    - C(pg_total_relation_size) of the table (summed over its partitions), TOAST and indexes included.
    - While another session holds a lock on the table or one of its indexes (an C(ALTER TABLE), a C(REINDEX)), which
      C(pg_total_relation_size) would wait for, the planner's page counts instead (RV(table_size_source)).
  returned: always
  type: int
  sample: 36175872
table_size_source:
  description: C(pg_total_relation_size), or C(pg_class.relpages) when RV(table_bytes) comes from the page counts.
  returned: always
  type: str
  sample: pg_total_relation_size
needed_bytes:
  description: RV(table_bytes) times O(free_space_margin).
  returned: always
  type: int
  sample: 54263808
free_space_margin:
  description: O(free_space_margin).
  returned: always
  type: float
  sample: 1.5
free_bytes:
  description: Free bytes on the file system of the data directory; null when unknown (RV(free_space_source) says why).
  returned: always
  type: int
  sample: 10737418240
free_space_source:
  description: What RV(free_bytes) measured, or why the free space could not be checked.
  returned: always
  type: str
  sample: the role may not read data_directory (pg_read_all_settings)
checked:
  description:
    - Whether the free space was compared with RV(needed_bytes); false when not pending, unknown, or with
      O(free_space_margin=0).
  returned: always
  type: bool
  sample: true
enough:
  description: Whether the free space covers RV(needed_bytes); null when it was not checked.
  returned: always
  type: bool
  sample: true
problem:
  description: Why the rewrite does not fit, with the numbers; null when it fits or was not checked.
  returned: always
  type: str
summary:
  description: One line saying what was found, for the run's output.
  returned: always
  type: str
  sample: >-
    Free space for the in-place rewrite of public.ml_features: 10240.0 MiB free on the file system of
    /var/lib/postgresql/15/main, 51.8 MiB needed (34.5 MiB x1.5)
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
    database_identity,
    normalize_type_name,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._space import (
    free_space,
    mib,
    needed_bytes,
    shortfall,
    table_size,
    verdict,
)


def argument_spec() -> dict[str, t.Any]:
    spec = postgres_connection_argument_spec()
    spec.update(
        table=dict(type='str', required=True),
        schema=dict(type='str', default='public'),
        column=dict(type='str'),
        target_type=dict(type='str'),
        free_space_margin=dict(type='float', default=1.5),
        fail_on_insufficient=dict(type='bool', default=True),
    )
    return spec


def is_pending(column_type: str | None, target_type: str | None) -> bool:
    """The rewrite is to come unless the column already has the target type (or nothing says what it is)."""
    if not column_type or not target_type:
        return True
    return normalize_type_name(column_type) != normalize_type_name(target_type)


def judge(relation: str, pending: bool, table_bytes: int, margin: float, free: int | None,
          source: str, measure: str = 'pg_total_relation_size') -> dict[str, t.Any]:
    """``needed_bytes``, ``checked``, ``enough``, ``problem`` and ``summary`` from what was read."""
    needed = needed_bytes(table_bytes, margin)
    out: dict[str, t.Any] = dict(needed_bytes=needed, checked=False, enough=None, problem=None)
    head = f'Free space for the in-place rewrite of {relation}'
    if not pending:
        out['summary'] = f'{head}: not checked, the column already has its target type (nothing to rewrite)'
    elif margin <= 0:
        out['summary'] = f'{head}: not checked (free_space_margin 0)'
    elif free is None:
        out['summary'] = (f'{head}: could not be checked ({source}); it needs about {mib(needed)} '
                          f'({mib(table_bytes)} x{margin:g}) on the database server')
    else:
        out.update(checked=True, enough=verdict(free, needed))
        out['summary'] = (f'{head}: {mib(free)} {source}, {mib(needed)} needed '
                          f'({mib(table_bytes)} x{margin:g})')
        if not out['enough']:
            out['problem'] = (
                f'Not enough free space for the in-place rewrite of {relation}: ALTER TABLE ... TYPE writes a new '
                f'copy of the table and its indexes ({measure} {mib(table_bytes)}) before dropping the '
                f'old one, x{margin:g} margin = {mib(needed)} needed, and there is {mib(free)} {source}. Free '
                f'{mib(shortfall(free, needed))} on that file system')
    return out


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    relation = '{}.{}'.format(p['schema'], p['table'])
    margin = float(p['free_space_margin'])
    if margin < 0:
        fail(module, f'free_space_margin must be 0 (no check) or more, got {margin:g}.')

    def inspect(conn: t.Any) -> dict[str, t.Any]:
        with conn.cursor() as cur:
            find_relation(module, cur, p['schema'], p['table'])
            identity = database_identity(cur, p['schema'], p['table'], p['column'])
            if p['column'] and identity['column_type'] is None:
                fail(module, f"Table {relation} has no column {p['column']}; check column, table and login_db.")
            table, measure = table_size(cur, p['schema'], p['table'])
            if table is None:
                fail(module, f'{relation} is not a table (a view or a foreign table has nothing to rewrite).')
            free, source = free_space(cur, table, identity['system_identifier'])
            return dict(column_type=identity['column_type'], table_bytes=int(table['total_bytes']), free=free,
                        source=source, measure=measure)

    found = run_read_only(module, inspect, relation, [p['schema'], p['table']])
    pending = is_pending(found['column_type'], p['target_type'] if p['column'] else None)
    free, source = found['free'], found['source']
    result: dict[str, t.Any] = dict(changed=False, pending=pending, column_type=found['column_type'],
                                    table_bytes=found['table_bytes'], table_size_source=found['measure'],
                                    free_space_margin=margin, free_bytes=free, free_space_source=source)
    result.update(judge(relation, pending, found['table_bytes'], margin, free, source, found['measure']))
    if pending and margin > 0 and free is None:
        module.warn(f"The free space for the in-place rewrite of {relation} could not be checked: {source}. It needs "
                    f"about {mib(result['needed_bytes'])} on the database server's data directory; check it there.")
    if result['problem'] and p['fail_on_insufficient']:
        advice = f', or lower free_space_margin ({margin:g}) if the estimate is too cautious. Nothing was changed.'
        fail(module, result['problem'] + advice, **{k: v for k, v in result.items() if k != 'changed'})
    module.exit_json(**result)


if __name__ == '__main__':
    main()
