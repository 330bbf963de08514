# Copyright (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What pg_scratch_database and pg_scratch_database_info both read before a scratch database is created: the role's
right to create one, whether the name is taken, leftovers, and the encoding and collation. Each takes a connection
whose cursors yield dicts (``_connection.connect`` or ``connect_writable``)."""

from __future__ import annotations

import typing as t

from ansible_collections.ledgermind.migrations.plugins.module_utils._queries import (
    DATABASE_LOCALE_SQL,
    SCRATCH_SERVER_SQL,
)


def read_server(conn: t.Any, name: str, stale_pattern: str = '') -> dict[str, t.Any]:
    """The logged-in role and its right to create databases, whether ``name`` is taken, and the other databases
    ``stale_pattern`` matches."""
    with conn.cursor() as cur:
        cur.execute(SCRATCH_SERVER_SQL, dict(name=name, pattern=stale_pattern))
        row = cur.fetchone()
    return dict(user=row['user'], may_create=bool(row['createdb'] or row['superuser']),
                superuser=bool(row['superuser']), server_version_num=row['server_version_num'],
                database=row['database'], exists=bool(row['exists']), stale=list(row['stale'] or []))


def read_locale(conn: t.Any) -> dict[str, str]:
    """The connected database's encoding and collation."""
    with conn.cursor() as cur:
        cur.execute(DATABASE_LOCALE_SQL)
        return dict(cur.fetchone())
