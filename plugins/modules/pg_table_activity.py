#!/usr/bin/python
# Copyright (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: pg_table_activity
short_description: List the sessions holding or awaiting locks on a PostgreSQL table
version_added: 0.1.0
description:
  - Lists the other sessions that hold or wait for a lock on one table, oldest transaction first, with how long
    their transaction has been open.
  - An C(ALTER TABLE) needs an ACCESS EXCLUSIVE lock, which conflicts with every other lock. While any of these
    sessions stays open the migration waits, and every query arriving after it queues behind it. A pre-flight
    uses O(max_transaction_seconds) to refuse before anything changes, naming the sessions.
  - Read-only; never reports a change.
author:
  - LedgerMind SRE (@ledgermind)
options:
  table:
    description: Name of the table, without schema.
    type: str
    required: true
  schema:
    description: Schema of the table.
    type: str
    default: public
  max_transaction_seconds:
    description:
      - Sessions on the table whose transaction has been open longer than this are returned in RV(long_running).
      - With O(fail_on_long_running), the module then fails, naming them.
    type: float
    default: 30
  fail_on_long_running:
    description: Fail when RV(long_running) is not empty.
    type: bool
    default: false
extends_documentation_fragment:
  - ledgermind.migrations.connection
  - ledgermind.migrations.connection.lock_timeout
  - ledgermind.migrations.connection.psycopg2
  - ansible.builtin.action_common_attributes
seealso:
  - module: ledgermind.migrations.alembic_migrate
'''

EXAMPLES = r'''
- name: Refuse to migrate while a long transaction holds ml_features
  ledgermind.migrations.pg_table_activity:
    database_url: "{{ lookup('ansible.builtin.env', 'DATABASE_URL') }}"
    table: ml_features
    max_transaction_seconds: 30
    fail_on_long_running: true
'''

RETURN = r'''
sessions:
  description: Other sessions holding or awaiting a lock on the table (at most 20), oldest transaction first.
  returned: always
  type: list
  elements: dict
  contains:
    pid:
      description: Backend process id (for C(pg_terminate_backend)).
      type: int
    usename:
      description: Database user.
      type: str
    application_name:
      description: The client's application name.
      type: str
    mode:
      description: Lock mode, e.g. C(AccessShareLock).
      type: str
    granted:
      description: Whether the lock is held (true) or awaited (false).
      type: bool
    state:
      description: Session state, e.g. C(idle in transaction).
      type: str
    transaction_seconds:
      description: How long its transaction has been open.
      type: float
    query:
      description: Its current or last query, cut to 200 characters.
      type: str
long_running:
  description: The sessions of RV(sessions) whose transaction is older than O(max_transaction_seconds).
  returned: always
  type: list
  elements: dict
summary:
  description: One line per long-running session, for messages and reports.
  returned: always
  type: list
  elements: str
  sample: ["pid 4242 (app, AccessShareLock, idle in transaction) open 312s: SELECT ..."]
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
    TABLE_LOCK_SESSIONS_SQL,
)


def argument_spec() -> dict[str, t.Any]:
    spec = postgres_connection_argument_spec()
    spec.update(
        table=dict(type='str', required=True),
        schema=dict(type='str', default='public'),
        max_transaction_seconds=dict(type='float', default=30),
        fail_on_long_running=dict(type='bool', default=False),
    )
    return spec


def describe(session: dict[str, t.Any]) -> str:
    query = ' '.join((session.get('query') or '').split())
    return 'pid {} ({}, {}, {}) open {:.0f}s: {}'.format(
        session['pid'], session.get('application_name') or session.get('usename') or '?', session['mode'],
        session.get('state') or '?', session.get('transaction_seconds') or 0, query[:120])


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params

    def inspect(conn: t.Any) -> list[dict[str, t.Any]]:
        with conn.cursor() as cur:
            find_relation(module, cur, p['schema'], p['table'])
            cur.execute(TABLE_LOCK_SESSIONS_SQL, dict(schema=p['schema'], table=p['table']))
            return [dict(row) for row in cur.fetchall()]

    sessions = run_read_only(module, inspect, '{}.{}'.format(p['schema'], p['table']))

    long_running = [s for s in sessions if (s['transaction_seconds'] or 0) > p['max_transaction_seconds']]
    result = dict(changed=False, sessions=sessions, long_running=long_running,
                  summary=[describe(s) for s in long_running])
    if long_running and p['fail_on_long_running']:
        fail(module, '{} session(s) on {}.{} have held a transaction open for more than {:g}s, so the migration '
                     'would wait behind them and block every query queued after it: {}. End them (or wait), then '
                     'run again.'.format(len(long_running), p['schema'], p['table'], p['max_transaction_seconds'],
                                         '; '.join(result['summary'])), **{k: v for k, v in result.items()
                                                                           if k != 'changed'})
    module.exit_json(**result)


if __name__ == '__main__':
    main()
