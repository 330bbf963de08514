# Copyright (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Free space: the room a backup archive or a table rewrite needs, against what the file system has.

Shared by pg_backup_archive (the backup directory against the archive's estimate), pg_rewrite_space (the
database's data directory against an in-place rewrite) and pg_online_convert (its plan). Free space that
cannot be measured is reported with the reason, never taken for "enough" or "too little".
"""

from __future__ import annotations

import math
import os
import struct
import typing as t

from ansible_collections.ledgermind.migrations.plugins.module_utils._queries import (
    DATA_DIRECTORY_SQL,
    LOCK_TIMEOUT_SETTING_SQL,
    SET_LOCAL_SQL,
    SPACE_SAVEPOINT,
    TABLE_SPACE_SQL,
    TABLE_SPACE_STATS_SQL,
)

MIB = 1024 * 1024
# How long the exact size may wait for the table's and its indexes' ACCESS SHARE locks; past it (another session's
# ALTER TABLE or REINDEX holds one), the planner's page counts stand in. Never the module's lock budget: the backup
# and the migration wait for their own locks, and say who holds them.
SIZE_LOCK_WAIT = '200ms'
# lock_not_available: the lock wait ran out.
LOCK_NOT_AVAILABLE = '55P03'

# A pg_dump archive's size per byte of the table's pg_total_relation_size (heap, TOAST and indexes; pg_dump
# writes the rows and only the definitions of the indexes), measured on the demo table (scripts/reset_demo_db.py,
# 10K and 200K rows, tokens text[] and jsonb, custom format): compressed (--compress 1 to 9) 0.16 to 0.18,
# uncompressed 0.54 to 0.68. Rounded up; the caller's margin covers data that compresses worse than the demo's.
ARCHIVE_FACTOR_COMPRESSED = 0.2
ARCHIVE_FACTOR_UNCOMPRESSED = 0.7


def mib(n: float | None) -> str:
    """``12345678`` -> ``11.8 MiB`` (at least 0.1 MiB for anything above zero, so a shortfall never reads 0)."""
    if n is None:
        return 'unknown'
    value = math.ceil(n / MIB * 10) / 10
    return f'{value:.1f} MiB'


def archive_factor(compress_level: int) -> float:
    """The archive's expected size per byte of the table's pg_total_relation_size at this compression level."""
    return ARCHIVE_FACTOR_COMPRESSED if compress_level > 0 else ARCHIVE_FACTOR_UNCOMPRESSED


def estimate_archive_bytes(basis_bytes: int, compress_level: int) -> int:
    """The archive's expected size: the table's (or the database's) size times ``archive_factor``."""
    return int(math.ceil(max(basis_bytes, 0) * archive_factor(compress_level)))


def needed_bytes(estimate: int, margin: float) -> int:
    """The room asked for: the estimate times the margin."""
    return int(math.ceil(max(estimate, 0) * margin))


def verdict(free: int | None, needed: int) -> bool | None:
    """Whether ``free`` covers ``needed``; None when the free space is unknown (never refused on)."""
    return None if free is None else free >= needed


def shortfall(free: int, needed: int) -> int:
    """What must be freed for ``needed`` to fit."""
    return max(needed - free, 0)


def existing_directory(path: str) -> str:
    """``path``, or its nearest existing parent when it does not exist yet (the archive's directory is created
    later, on the file system of that parent)."""
    current = os.path.abspath(path)
    while not os.path.isdir(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current


def directory_free(path: str) -> tuple[int | None, str, str]:
    """Free bytes for an unprivileged writer on the file system of ``path`` (or of its nearest existing parent),
    the directory measured, and why the space is unknown when it is (else '')."""
    where = existing_directory(path)
    try:
        stat = os.statvfs(where)
    except OSError as exc:
        return None, where, f'the file system of {where} could not be read ({exc.strerror or exc})'
    return stat.f_bavail * stat.f_frsize, where, ''


def control_file_identifier(data_directory: str) -> str | None:
    """The system identifier in ``<data_directory>/global/pg_control`` (its first 8 bytes), or None when this
    host cannot read it (the file is the server owner's, mode 0600)."""
    try:
        with open(os.path.join(data_directory, 'global', 'pg_control'), 'rb') as handle:
            head = handle.read(8)
    except OSError:
        return None
    return str(struct.unpack('=Q', head)[0]) if len(head) == 8 else None


def data_directory_free(path: str | None, system_identifier: str | None = None) -> tuple[int | None, str]:
    """Free bytes on the file system of the server's data directory when this host sees it, else None; with what
    was measured or why it could not be.

    ``system_identifier`` (the server's ``pg_control_system()``), when known, must match the data directory's
    control file where this host can read it: another cluster's directory at the same path (a local server with the
    distribution's default layout) is not the server's."""
    if not path:
        return None, 'the role may not read data_directory (pg_read_all_settings)'
    try:
        stat = os.statvfs(path)
    except OSError:
        return None, f'the data directory {path} is not visible from this host'
    found = control_file_identifier(path) if system_identifier else None
    if found is not None and found != str(system_identifier):
        return None, (f"the data directory {path} on this host is another cluster's (system identifier {found}, the "
                      f"server's {system_identifier}); the server's is not visible from this host")
    return stat.f_bavail * stat.f_frsize, f'free on the file system of {path}'


def table_size(cur: t.Any, schema: str, table: str) -> tuple[dict[str, t.Any] | None, str]:
    """The table's ``relid``, ``total_bytes`` (TOAST, indexes and partitions included) and ``own_tablespace``, with
    what the size is (``pg_total_relation_size``, or ``pg_class.relpages`` while another session holds a lock on the
    table or an index for longer than SIZE_LOCK_WAIT); None when there is no such table.

    Runs in a savepoint of the caller's transaction, whose own lock_timeout it leaves as it was."""
    params = dict(schema=schema, table=table)
    cur.execute(SPACE_SAVEPOINT.create)
    try:
        cur.execute(LOCK_TIMEOUT_SETTING_SQL)
        previous = cur.fetchone()['lock_timeout']
        cur.execute(SET_LOCAL_SQL, ('lock_timeout', SIZE_LOCK_WAIT))
        cur.execute(TABLE_SPACE_SQL, params)
        row = cur.fetchone()
        cur.execute(SET_LOCAL_SQL, ('lock_timeout', previous))
        cur.execute(SPACE_SAVEPOINT.release)
        return (dict(row) if row else None), 'pg_total_relation_size'
    except Exception as exc:  # psycopg2.Error; only a lock wait that ran out falls back
        if getattr(exc, 'pgcode', None) != LOCK_NOT_AVAILABLE:
            raise
        cur.execute(SPACE_SAVEPOINT.rollback)  # also restores lock_timeout
    cur.execute(TABLE_SPACE_STATS_SQL, params)
    row = cur.fetchone()
    return (dict(row) if row else None), 'pg_class.relpages'


def free_space(cur: t.Any, table: dict[str, t.Any], system_identifier: str | None = None) -> tuple[int | None, str]:
    """Free bytes where the data directory lives, when this host sees it; else None and why not.

    ``table['own_tablespace']``: the table lives elsewhere than the data directory, whose room then says nothing."""
    if table['own_tablespace']:
        return None, 'the table lives in a tablespace of its own; check its free space by hand'
    cur.execute(DATA_DIRECTORY_SQL)
    return data_directory_free(cur.fetchone()['data_directory'], system_identifier)
