#!/usr/bin/python
# Copyright (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: pg_scratch_database_info
short_description: Read whether a scratch PostgreSQL database can be created, before anything changes
version_added: 0.1.0
description:
  - Reads what creating a scratch database with M(ledgermind.migrations.pg_scratch_database) needs to know, so that
    a caller can refuse before anything changes.
  - Whether the role logged in as may create databases (C(CREATEDB) is a role attribute, never inherited from a
    granted role), whether the name is taken, other databases an interrupted run left behind (O(stale_pattern)),
    and the connected database's encoding and collation.
  - Read-only; never reports a change.
author:
  - LedgerMind SRE (@ledgermind)
options:
  name:
    description: Name of the scratch database.
    type: str
    required: true
  stale_pattern:
    description:
      - A POSIX regular expression. Other databases whose name matches it are returned in RV(stale).
      - Empty matches none.
    type: str
    default: ''
extends_documentation_fragment:
  - ledgermind.migrations.connection
  - ledgermind.migrations.connection.lock_timeout
  - ledgermind.migrations.connection.psycopg2
  - ansible.builtin.action_common_attributes
seealso:
  - module: ledgermind.migrations.pg_scratch_database
'''

EXAMPLES = r'''
- name: Read whether the rehearsal's scratch database can be created, and earlier rehearsals' leftovers
  ledgermind.migrations.pg_scratch_database_info:
    database_url: "{{ ledgermind_db }}"
    name: ledgermind_lm_rehearsal_1a2b3c4d
    stale_pattern: '^ledgermind_lm_rehearsal_[0-9a-f]{8}$'
  register: scratch
'''

RETURN = r'''
user:
  description: The role logged in as.
  returned: always
  type: str
may_create:
  description: Whether that role may create databases (C(CREATEDB) or superuser).
  returned: always
  type: bool
superuser:
  description: Whether that role is a superuser.
  returned: always
  type: bool
server_version_num:
  description: The server's C(server_version_num).
  returned: always
  type: int
database:
  description: The database the connection is on.
  returned: always
  type: str
exists:
  description: Whether a database named O(name) exists.
  returned: always
  type: bool
stale:
  description: Other databases whose name matches O(stale_pattern), sorted.
  returned: always
  type: list
  elements: str
locale:
  description: The connected database's encoding and collation.
  returned: always
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
'''

import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ledgermind.migrations.plugins.module_utils._connection import (
    postgres_connection_argument_spec,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._inspect import (
    run_read_only,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._scratch import (
    read_locale,
    read_server,
)


def argument_spec() -> dict[str, t.Any]:
    spec = postgres_connection_argument_spec()
    spec.update(
        name=dict(type='str', required=True),
        stale_pattern=dict(type='str', default=''),
    )
    return spec


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params

    def inspect(conn: t.Any) -> dict[str, t.Any]:
        return dict(read_server(conn, p['name'], p['stale_pattern']), locale=read_locale(conn))

    result = run_read_only(module, inspect, "the server's databases and the role's right to create one")
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
