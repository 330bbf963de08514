# Copyright (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What pg_scratch_database and pg_scratch_database_info share: one autocommit session on the server, and what it
reads before a scratch database is created (the role's right to, the name, leftovers, the encoding and collation)."""

from __future__ import annotations

import typing as t

from ansible_collections.ledgermind.migrations.plugins.module_utils._connection import (
    SQLSTATE_LOCK_NOT_AVAILABLE,
    SQLSTATE_QUERY_CANCELED,
    close,
    connect,
    connect_writable,
    fail,
    lock_budget,
    query_error_message,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._queries import (
    DATABASE_LOCALE_SQL,
    SCRATCH_SERVER_SQL,
)

if t.TYPE_CHECKING:
    from ansible.module_utils.basic import AnsibleModule

APPLICATION_NAME = 'ledgermind.migrations.scratch_database'


class Server:
    """One session: autocommit to create or drop (CREATE and DROP DATABASE cannot run inside a transaction), else
    the inspection modules' READ ONLY transaction."""

    def __init__(self, module: AnsibleModule, writable: bool) -> None:
        self.module = module
        if writable:
            self.conn = connect_writable(module, APPLICATION_NAME)
            self.conn.autocommit = True
        else:
            self.conn = connect(module)

    def query(self, statement: t.Any, params: dict[str, t.Any] | None = None) -> list[dict[str, t.Any]]:
        with self.conn.cursor() as cur:
            cur.execute(statement, params)
            return [dict(row) for row in cur.fetchall()] if cur.description else []

    def query_error(self, error: Exception, doing: str) -> t.NoReturn:
        """Fail saying what could not be done: timeouts explained, anything else in PostgreSQL's own words."""
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


def read_server(server: Server, name: str, stale_pattern: str = '') -> dict[str, t.Any]:
    """The logged-in role and its right to create databases, whether ``name`` is taken, and the other databases
    ``stale_pattern`` matches."""
    row = server.query(SCRATCH_SERVER_SQL, dict(name=name, pattern=stale_pattern))[0]
    return dict(user=row['user'], may_create=bool(row['createdb'] or row['superuser']),
                superuser=bool(row['superuser']), server_version_num=row['server_version_num'],
                database=row['database'], exists=bool(row['exists']), stale=list(row['stale'] or []))


def read_locale(server: Server) -> dict[str, str]:
    """The connected database's encoding and collation."""
    return dict(server.query(DATABASE_LOCALE_SQL)[0])
