#!/usr/bin/python
# Copyright (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: pg_scratch_database
short_description: Create or drop a throw-away PostgreSQL database for a rehearsal
version_added: 0.1.0
description:
  - Manages one scratch database on the server the connection reaches, such as the database a rehearsal restores a
    copy of a table into, migrates, rolls back and drops.
  - M(ledgermind.migrations.pg_scratch_database_info) reads, before anything changes, whether it can be created.
  - O(state=present) creates the database from C(template0) with the connected database's encoding and collation,
    or those given (O(encoding), O(lc_collate), O(lc_ctype)). It refuses a name that is taken, because a scratch
    database is one this caller created and will drop, never somebody else's.
  - O(state=absent) ends this role's own sessions in the database, then drops it, trying again while a session or
    an autovacuum worker is still there. It refuses to drop the database it is connected to.
  - The connection carries the password; no client program and no password file are involved.
author:
  - LedgerMind SRE (@ledgermind)
options:
  name:
    description: Name of the scratch database.
    type: str
    required: true
  state:
    description:
      - V(present) creates the database; V(absent) drops it.
    type: str
    default: present
    choices: [ present, absent ]
  encoding:
    description:
      - The encoding O(state=present) creates the database with, for example C(UTF8).
      - Default (unset) is the connected database's. Give the real database's when the scratch database goes on
        another server (M(ledgermind.migrations.pg_scratch_database_info) reads it).
    type: str
  lc_collate:
    description: C(LC_COLLATE) for O(state=present); default (unset) is the connected database's.
    type: str
  lc_ctype:
    description: C(LC_CTYPE) for O(state=present); default (unset) is the connected database's.
    type: str
  drop_tries:
    description: How many times O(state=absent) tries to drop the database before it fails.
    type: int
    default: 5
  drop_delay:
    description: Seconds between two tries of O(state=absent).
    type: float
    default: 3
extends_documentation_fragment:
  - ledgermind.migrations.connection
  - ledgermind.migrations.connection.lock_timeout
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads, then says what it would do.
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - A database is created and dropped outside a transaction, so O(query_timeout) bounds each statement on its own.
  - Connection errors are reported as a message that says what to check; passwords are never part of the message.
requirements:
  - psycopg2 (C(psycopg2-binary) from PyPI is enough) on the host that runs the module
seealso:
  - module: ledgermind.migrations.pg_scratch_database_info
  - module: ledgermind.migrations.pg_backup_restore
'''

EXAMPLES = r'''
- name: Read whether the scratch database can be created (read-only)
  ledgermind.migrations.pg_scratch_database_info:
    database_url: "{{ ledgermind_db }}"
    name: ledgermind_lm_rehearsal_1a2b3c4d
  register: scratch

- name: Create it with the real database's encoding and collation
  ledgermind.migrations.pg_scratch_database:
    database_url: "{{ ledgermind_db }}"
    name: ledgermind_lm_rehearsal_1a2b3c4d
    state: present
  when: scratch.may_create and not scratch.exists

- name: Drop it, whatever happened before
  ledgermind.migrations.pg_scratch_database:
    database_url: "{{ ledgermind_db }}"
    name: ledgermind_lm_rehearsal_1a2b3c4d
    state: absent
'''

RETURN = r'''
exists:
  description: Whether a database named O(name) existed when the module started.
  returned: always
  type: bool
locale:
  description: The encoding and collation the scratch database is, or would be, created with.
  returned: when O(state=present)
  type: dict
  contains:
    encoding:
      description: Character set encoding, e.g. C(UTF8).
      type: str
    collate:
      description: C(LC_COLLATE).
      type: str
    ctype:
      description: C(LC_CTYPE).
      type: str
created:
  description: Whether this run created the database (never in check mode).
  returned: always
  type: bool
dropped:
  description: Whether this run dropped the database (never in check mode).
  returned: always
  type: bool
sessions_ended:
  description: How many of this role's sessions in the database O(state=absent) ended.
  returned: always
  type: int
tries:
  description: How many times O(state=absent) tried to drop the database.
  returned: always
  type: int
'''

import time
import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ledgermind.migrations.plugins.module_utils._connection import (
    SQLSTATE_LOCK_NOT_AVAILABLE,
    SQLSTATE_QUERY_CANCELED,
    close,
    connect_writable,
    fail,
    lock_budget,
    postgres_connection_argument_spec,
    psycopg2,
    query_error_message,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._queries import (
    END_OWN_SESSIONS_SQL,
    create_database_sql,
    drop_database_sql,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._scratch import (
    read_locale,
    read_server,
)

APPLICATION_NAME = 'ledgermind.migrations.pg_scratch_database'


def argument_spec() -> dict[str, t.Any]:
    spec = postgres_connection_argument_spec()
    spec.update(
        name=dict(type='str', required=True),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        encoding=dict(type='str'),
        lc_collate=dict(type='str'),
        lc_ctype=dict(type='str'),
        drop_tries=dict(type='int', default=5),
        drop_delay=dict(type='float', default=3),
    )
    return spec


def check_params(module: AnsibleModule) -> None:
    p = module.params
    problems = []
    if not (p['name'] or '').strip():
        problems.append('name must not be empty')
    if p['drop_tries'] < 1:
        problems.append(f"drop_tries must be at least 1, not {p['drop_tries']}")
    if p['drop_delay'] < 0:
        problems.append(f"drop_delay must not be negative, not {p['drop_delay']:g}")
    if problems:
        fail(module, 'pg_scratch_database: ' + '; '.join(problems) + '. Nothing was changed.')


class Server:
    """One autocommit session: CREATE and DROP DATABASE cannot run inside a transaction."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.conn = connect_writable(module, APPLICATION_NAME)
        self.conn.autocommit = True

    def run(self, statement: t.Any, params: dict[str, t.Any] | None = None) -> list[dict[str, t.Any]]:
        with self.conn.cursor() as cur:
            cur.execute(statement, params)
            return [dict(row) for row in cur.fetchall()] if cur.description else []

    def query_error(self, error: Exception, doing: str) -> t.NoReturn:
        """Fail saying what could not be done: timeouts explained (``query_error_message``, whose other wordings are
        the inspection modules'), anything else in PostgreSQL's own words."""
        p = self.module.params
        sqlstate = getattr(error, 'pgcode', None)
        if sqlstate in (SQLSTATE_QUERY_CANCELED, SQLSTATE_LOCK_NOT_AVAILABLE):
            message = query_error_message(sqlstate, str(error), lock_budget(p), p.get('query_timeout'))
        else:
            message = 'PostgreSQL said: ' + ' '.join(str(error).split())
        fail(self.module, f'Could not {doing}. {message}')
        raise AssertionError('unreachable')

    def close(self) -> None:
        close(self.conn)


def create(module: AnsibleModule, server: Server, facts: dict[str, t.Any], result: dict[str, t.Any]) -> None:
    name = module.params['name']
    if facts['exists']:
        fail(module, f"A database named {name} already exists on the server; a scratch database is one this caller "
                     f"creates and drops, never an existing one. Drop it if it is a leftover (DROP DATABASE {name};) "
                     f"or choose another name. Nothing was changed.", **result)
    if not facts['may_create']:
        fail(module, f"Role {facts['user']} may not create databases on this server (no CREATEDB), so the scratch "
                     f"database {name} cannot be made. Grant it, as a superuser: ALTER ROLE \"{facts['user']}\" "
                     f"CREATEDB; or use a server where it may. Nothing was changed.", **result)
    result['changed'] = True
    if module.check_mode:
        return
    locale = result['locale']
    try:
        server.run(create_database_sql(name, locale['encoding'], locale['collate'], locale['ctype']))
    except psycopg2.Error as e:
        server.query_error(e, f'create the scratch database {name}')
    result['created'] = True


def drop(module: AnsibleModule, server: Server, facts: dict[str, t.Any], result: dict[str, t.Any]) -> None:
    p = module.params
    name = p['name']
    if name == facts['database']:
        fail(module, f"pg_scratch_database will not drop {name}: it is the database the connection is on, so the "
                     f"real one, not a scratch database. Connect to another database of the server. "
                     f"Nothing was changed.", **result)
    if not facts['exists']:
        return
    result['changed'] = True
    if module.check_mode:
        return
    last_error = ''
    for attempt in range(1, p['drop_tries'] + 1):
        result['tries'] = attempt
        try:
            result['sessions_ended'] += server.run(END_OWN_SESSIONS_SQL, dict(name=name))[0]['ended']
            server.run(drop_database_sql(name))
        except psycopg2.Error as e:
            last_error = ' '.join(str(e).split())
        if not read_server(server.conn, name)['exists']:
            result['dropped'] = True
            return
        if attempt < p['drop_tries']:
            time.sleep(p['drop_delay'])
    fail(module, f"Could not drop the scratch database {name} after {p['drop_tries']} tries "
                 f"({last_error or 'it is still there'}); it holds a copy of the data: drop it by hand "
                 f"(DROP DATABASE {name} WITH (FORCE);).", **result)


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    check_params(module)
    p = module.params
    server = Server(module)
    given = dict(encoding=p['encoding'], collate=p['lc_collate'], ctype=p['lc_ctype'])
    try:
        try:
            facts = read_server(server.conn, p['name'])
            # The connected database's for what is not given (the rehearsal gives all three).
            locale = read_locale(server.conn) if p['state'] == 'present' and not all(given.values()) else {}
        except psycopg2.Error as e:
            server.query_error(e, "read the server's databases and the role's right to create one")
        result: dict[str, t.Any] = dict(changed=False, exists=facts['exists'], created=False, dropped=False,
                                        sessions_ended=0, tries=0)
        if p['state'] == 'present':
            result['locale'] = dict(locale, **{k: v for k, v in given.items() if v})
            create(module, server, facts, result)
        else:
            drop(module, server, facts, result)
    finally:
        server.close()
    module.exit_json(**result)


if __name__ == '__main__':
    main()
