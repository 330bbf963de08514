# Copyright (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the inspection modules share: one connection's life, finding the table and its key column.

``run_read_only`` opens the read-only transaction (``_connection.connect``), hands it to the module's
own inspection and turns any query error into a clear failure (naming the sessions that hold locks
on the relation when a lock wait timed out), then always closes.
"""

from __future__ import annotations

import typing as t

from ansible_collections.ledgermind.migrations.plugins.module_utils._connection import (
    close,
    connect,
    fail,
    fail_on_query_error,
    psycopg2,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._queries import (
    KEY_COLUMN_SQL,
    LOCK_HOLDERS_SQL,
    PRIMARY_KEY_SQL,
    RELATION_SQL,
    lock_holders_params,
    relation_problem,
)

if t.TYPE_CHECKING:
    from ansible.module_utils.basic import AnsibleModule

T = t.TypeVar('T')


def find_relation(module: AnsibleModule, cur: t.Any, schema: str, table: str, **failure: t.Any) -> int:
    """The table's oid, or fail naming what is missing (``failure`` joins the failed result)."""
    cur.execute(RELATION_SQL, dict(schema=schema, table=table))
    row = cur.fetchone()
    problem = relation_problem(row, schema, table)
    if problem:
        fail(module, problem, **failure)
    return int(row['relid'])


def find_key(module: AnsibleModule, cur: t.Any, relid: int, relation: str, key: str | None, by_one_key: str,
             by_it: str, suffix: str = '') -> str:
    """``key``, or the table's single-column primary key, checked to be NOT NULL and alone in a valid unique index.

    The failures say why the caller needs such a key: ``by_one_key`` ("... by one key column") when the table has
    no usable primary key, ``by_it`` ("... by it") when the column does not qualify; ``suffix`` ends each message.
    """
    if not key:
        cur.execute(PRIMARY_KEY_SQL, dict(relid=relid))
        keys = [r['column_name'] for r in cur.fetchall()]
        if len(keys) != 1:
            has = 'no primary key' if not keys else f"a multi-column primary key ({', '.join(keys)})"
            fail(module, f'Table {relation} has {has}: {by_one_key}. Set key to a NOT NULL column with a unique index '
                         f'of its own.{suffix}')
        key = keys[0]
    cur.execute(KEY_COLUMN_SQL, dict(relid=relid, column=key))
    row = cur.fetchone()
    if row is None:
        fail(module, f'Key column {relation}.{key} does not exist.{suffix}')
    problems = [text for ok, text in ((row['not_null'], 'nullable'),
                                      (row['unique_key'], 'not alone in a valid unique index')) if not ok]
    if problems:
        fail(module, f"Key column {relation}.{key} is {' and '.join(problems)}: {by_it}, so it must be NOT NULL and "
                     f'unique on its own.{suffix}')
    return str(key)


def run_read_only(module: AnsibleModule, inspect: t.Callable[[t.Any], T], relation: str,
                  lock_names: t.Sequence[str | None] | None = None) -> T:
    """``inspect(conn)`` inside the read-only transaction; query errors fail the module clearly.

    ``lock_names`` (schema, then table and/or index names) lets a lock timeout name the sessions
    holding locks on them; None names nobody.
    """
    conn = connect(module)
    try:
        result = inspect(conn)
    except psycopg2.Error as e:
        blockers = (LOCK_HOLDERS_SQL, lock_holders_params(*lock_names)) if lock_names else (None, None)
        fail_on_query_error(module, conn, e, relation, *blockers)
        raise  # not reached: fail_on_query_error exits the module
    finally:
        close(conn)
    return result
