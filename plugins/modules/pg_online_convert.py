#!/usr/bin/python
# Copyright (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: pg_online_convert
short_description: Convert a column between text[] and jsonb while the application keeps reading and writing
version_added: 0.1.0
description:
  - Changes the type of O(schema).O(table).O(column) to O(target_type) without the table rewrite that
    C(ALTER TABLE ... TYPE) does under an ACCESS EXCLUSIVE lock (expand, backfill, contract, as pgroll and pg-osc do).
    Each O(phase) is one call, safe to repeat, and decides what to do from the database's state.
  - V(status) reads only where the conversion stands (RV(state), RV(rows), RV(progress)), cheaply.
  - V(plan) reads only the table's state, what would be refused, the batches and an estimated duration, and the
    space the conversion needs. With O(scan) (the default) it also scans the table once for values the target cannot
    hold (text[] only), as V(expand) does before it changes anything.
  - V(expand) adds a nullable shadow column of O(target_type) and a C(BEFORE INSERT OR UPDATE) row trigger that keeps
    it equal to the conversion of the column (C(to_jsonb) for jsonb; for text[] exactly the revision's downgrade).
    Short DDL under the lock budget. Refuses what the swap would break or lose (views, other indexes, constraints,
    statistics or policies on the column, a default, NOT NULL, column privileges, publications, rows the target
    cannot hold) and names it.
  - V(backfill) fills the shadow in key-ordered batches, each its own short transaction that also records how far
    it got, so a re-run continues where an interrupted one stopped and rewrites only rows whose shadow differs.
    Throttled while a replica's replay lag passes O(max_replica_lag). O(max_seconds) ends the call after a slice
    (its progress says C(done=false)), so a playbook can print progress (rows done, rate, ETA) between calls.
  - V(index) builds O(index_name) on the shadow C(CONCURRENTLY) (an INVALID leftover is dropped and rebuilt).
  - V(verify) proves, without a lock, that every row's shadow equals the conversion of the column, in one pass in SQL
    (a cheap comparison per row; the conversion itself only for a row that fails it), and records the catalog it
    proved it under (the trigger, the column and the shadow). Differences send the next backfill over the whole table
    again.
  - V(swap) checks everything it can before it takes its lock (verified, trigger, refusals, index, Alembic's
    revision), then runs in one transaction under the lock budget (O(lock_timeout_ms) per try, O(retries) tries with
    back-off). Under its ACCESS EXCLUSIVE lock it only re-checks, in one catalog query, that the trigger, column and
    shadow are those the verify proved (so every write since the verify fired the trigger) and that nothing it
    checked changed while it waited; a change gives the lock back and tries again. The trigger is dropped, the old
    column dropped (with the index on it), the shadow renamed to O(column), the column's comment kept, Alembic's
    version moved to O(revision). All or nothing. Only a verified conversion is swapped.
  - V(remove) takes away what an unfinished conversion left (trigger, function, shadow columns of either
    direction, progress); the column itself is never touched.
  - Supports check mode for every phase; it reports what the phase would do.
author:
  - LedgerMind SRE (@ledgermind)
options:
  phase:
    description:
      - The step to run; see the description.
    type: str
    required: true
    choices: [status, plan, expand, backfill, index, verify, swap, remove]
  table:
    description:
      - The table, without schema.
    type: str
    required: true
  schema:
    description:
      - The table's schema.
    type: str
    default: public
  column:
    description:
      - The column to convert.
    type: str
    required: true
  target_type:
    description:
      - The type the column gets. Required except for O(phase=remove).
    type: str
    choices: ['jsonb', 'text[]']
  key:
    description:
      - A NOT NULL column with a unique index of its own, ordering the batches. Default the single-column primary key.
    type: str
  history_schema:
    description:
      - Schema holding the progress table C(online_conversion) and the trigger's function (the run history's).
    type: str
    default: ledgermind_migrations
  run_id:
    description:
      - The run the conversion belongs to, recorded with its progress.
    type: str
  index_name:
    description:
      - With O(target_type=jsonb), the index O(phase=index) builds on the shadow (it carries the column after the
        swap). With O(target_type=text[]), the index on the column that the swap drops with it (allowed to depend
        on the column).
    type: str
  index_method:
    description:
      - Access method of O(index_name).
    type: str
    default: gin
  index_opclass:
    description:
      - Operator class of O(index_name); empty for the method's default.
    type: str
    default: jsonb_ops
  batch_size:
    description:
      - Rows per backfill batch (one transaction each, holding its rows' locks until it commits). The largest batch
        when O(batch_target_seconds) adapts it.
    type: int
    default: 1000
  batch_target_seconds:
    description:
      - A batch that takes longer than this halves the next one (not below 100 rows), so a writer waiting for a
        batch's row locks waits about this long at most; one that takes less than half of it doubles the next, up
        to O(batch_size). Each call starts with 250 rows (or O(batch_size) if smaller). 0 keeps every batch at
        O(batch_size).
    type: float
    default: 0.2
  scan:
    description:
      - With O(phase=plan) and O(phase=expand), scan the table for values O(target_type) cannot hold (only text[] can
        refuse a value). A run scans once, in its pre-flight plan; its later plan and expand can skip it. Without
        the scan, the trigger refuses such a write from V(expand) on, and V(backfill) stops at such a row and names
        it.
    type: bool
    default: true
  batch_pause:
    description:
      - Seconds to wait between batches.
    type: float
    default: 0.0
  max_seconds:
    description:
      - O(phase=backfill) returns after this many seconds with C(done=false) in RV(progress); 0 runs to the end.
    type: float
    default: 0
  max_replica_lag:
    description:
      - Pause the backfill while a replica's replay lag (C(pg_stat_replication)) exceeds this many seconds; 0 never
        pauses.
    type: float
    default: 10
  lock_timeout_ms:
    description:
      - How long one try of V(expand), V(swap) or V(remove) (and a batch, for its row locks) waits for its lock. No
        query queues behind the conversion for longer (400 ms, below pgroll's 500, so that a queued query's whole
        wait, the try plus its wake-up, stays within half a second).
      - When all O(retries) tries gave up, the failure names the sessions holding the lock.
    type: int
    default: 400
  # retries, retry_delay, max_retry_delay: ledgermind.migrations.lock_budget documents them; their defaults here.
  retries:
    default: 20
  retry_delay:
    default: 0.5
  max_retry_delay:
    default: 3
  version_table:
    description:
      - Alembic's version table; V(swap) moves its row to O(revision) in the swap's own transaction.
    type: str
    default: alembic_version
  revision:
    description:
      - The revision V(swap) records. Without it the version table is left alone.
    type: str
  allowed_revisions:
    description:
      - The revisions the version table may hold before the swap (besides O(revision)); anything else is refused.
    type: list
    elements: str
    default: []
  free_space_margin:
    description:
      - V(expand) refuses when the file system holding the data directory, where this host sees it, has less free
        space than the estimate times this factor. Unknown free space is reported, not refused.
    type: float
    default: 1.2
extends_documentation_fragment:
  - ledgermind.migrations.connection
  - ledgermind.migrations.connection.lock_timeout
  - ledgermind.migrations.lock_budget
  - ledgermind.migrations.lock_budget.retries
  - ledgermind.migrations.connection.psycopg2
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
seealso:
  - module: ledgermind.migrations.alembic_migrate
  - module: ledgermind.migrations.pg_jsonb_integrity
notes:
  - The converted column is the table's last column; everything else in the catalog is what
    C(ALTER TABLE ... TYPE) leaves.
  - The backfill writes a new version of every row; autovacuum reuses that space afterwards. The dropped column's
    bytes stay in each row until the row is next updated or the table rewritten.
  - Sessions with C(session_replication_role = replica) do not fire triggers; their writes are found by V(verify),
    not by the swap's re-check, which relies on the trigger for every write since the verify.
'''

EXAMPLES = r'''
- name: Plan the online conversion (read-only)
  ledgermind.migrations.pg_online_convert:
    database_url: "{{ database_url }}"
    phase: plan
    table: ml_features
    column: tokens
    target_type: jsonb

- name: Backfill in slices of 20 s, printing progress between them
  ledgermind.migrations.pg_online_convert:
    database_url: "{{ database_url }}"
    phase: backfill
    table: ml_features
    column: tokens
    target_type: jsonb
    batch_size: 1000
    max_seconds: 20
  register: slice

- name: Swap under a 0.4 s lock budget per try and record the Alembic revision
  ledgermind.migrations.pg_online_convert:
    database_url: "{{ database_url }}"
    phase: swap
    table: ml_features
    column: tokens
    target_type: jsonb
    index_name: ix_ml_features_tokens_gin
    revision: 502d44cd70ab
    allowed_revisions: [20251109_add_user_name_picture]
'''

RETURN = r'''
state:
  description:
    - Where the conversion stands, read from the database.
    - V(pending) (column of the other type, no shadow), V(in_progress) (shadow and trigger present),
      V(converted) (column of O(target_type), nothing left over), V(leftover) (a shadow of the other direction).
  returned: always
  type: str
  sample: in_progress
shadow_column:
  description: The shadow column of O(target_type) when it exists (a conversion in progress), else null.
  returned: when O(target_type) is set
  type: str
  sample: tokens__ledgermind_jsonb
column_type:
  description: The column's type before the phase ran.
  returned: when the column exists
  type: str
  sample: text[]
actions:
  description: What the phase did (or would do, in check mode).
  returned: always
  type: list
  elements: str
plan:
  description:
    - Rows (estimated), batches, estimated seconds, the space needed and free, the refusals found.
  returned: always
  type: dict
  sample: {"rows": 1000000, "batches": 200, "estimated_seconds": 95.0, "needed_bytes": 180000000,
           "free_bytes": 52000000000, "refusals": []}
rows:
  description: The table's rows (the planner's estimate, or a count when it has none).
  returned: when O(phase=status) or O(phase=plan)
  type: int
revision:
  description: What Alembic's version table holds (comma-joined), or null without one.
  returned: when O(phase=status) or O(phase=plan)
  type: str
progress:
  description: The backfill's progress (rows done, rows written by this call, rate, ETA, done).
  returned: when a conversion is in progress
  type: dict
  sample: {"rows_done": 400000, "rows_estimated": 1000000, "percent": 40.0, "rate": 21000.0, "eta_seconds": 28.6,
           "done": false}
verify:
  description: Rows compared, differing, unconvertible, and a few keys of those.
  returned: when O(phase=verify)
  type: dict
swap:
  description: The tries the swap needed (and, in C(waited_for), what each try that gave way waited for), the revision
    recorded, and what it re-checked under its lock.
  returned: when O(phase=swap)
  type: dict
lock_waits:
  description: For each try that gave way under the lock budget (the first 10), its number and the sessions holding
    the table at that moment (or what changed while it waited).
  returned: when a try gave way
  type: list
  elements: dict
'''

import contextlib
import time
import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ledgermind.migrations.plugins.module_utils._connection import (
    _lock_holders as lock_holders,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._connection import (
    close,
    connect_writable,
    fail,
    fail_on_query_error,
    postgres_connection_argument_spec,
    psycopg2,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._inspect import find_key
from ansible_collections.ledgermind.migrations.plugins.module_utils._queries import (
    HISTORY_LOCK_SQL,
    LOCK_HOLDERS_SQL,
    ONLINE_COLUMN_SQL,
    ONLINE_DDL,
    ONLINE_DEPENDENTS_SQL,
    ONLINE_FINGERPRINT_SQL,
    ONLINE_INDEX_SQL,
    ONLINE_KEY_TYPE_SQL,
    ONLINE_PROGRESS_BATCH_SQL,
    ONLINE_PROGRESS_DELETE_SQL,
    ONLINE_PROGRESS_INSERT_SQL,
    ONLINE_PROGRESS_PRESENT_SQL,
    ONLINE_PROGRESS_RESTART_SQL,
    ONLINE_PROGRESS_SQL,
    ONLINE_PROGRESS_UPGRADE_SQL,
    ONLINE_PROGRESS_VERIFIED_SQL,
    ONLINE_PUBLICATIONS_SQL,
    ONLINE_REPLICA_LAG_SQL,
    ONLINE_TABLE_SQL,
    ONLINE_TARGETS,
    ONLINE_TRIGGER,
    ONLINE_TRIGGER_SQL,
    PROBE_SAVEPOINT,
    VERSION_TABLE_EXISTS_SQL,
    analyze_column_sql,
    count_rows_sql,
    create_online_sync_function_sql,
    create_schema_sql,
    history_sql,
    lock_holders_params,
    lock_table_sql,
    online_add_shadow_sql,
    online_backfill_sql,
    online_create_index_sql,
    online_drop_function_sql,
    online_drop_index_sql,
    online_drop_shadow_sql,
    online_drop_trigger_sql,
    online_mark_progress_sql,
    online_probe_sql,
    online_shadow_column,
    online_swap_sql,
    online_sync_function_body,
    online_sync_function_name,
    online_sync_trigger_sql,
    online_unconvertible_sql,
    online_verify_sql,
    version_rows_sql,
    version_update_sql,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._retry import (
    LockBusy,
    lock_budget_message,
    lock_busy,
    run_under_lock_budget,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._space import free_space

PHASES = ['status', 'plan', 'expand', 'backfill', 'index', 'verify', 'swap', 'remove']
# Rough cost of writing a row version against reading and converting it (for the plan's estimate only).
WRITE_COST_FACTOR = 4.0
# The smallest batch an adapting backfill goes down to, and the one each call starts with (then doubled while
# batches are quick): a call never opens with a batch that holds its rows' locks for long.
MIN_BATCH_SIZE = 100
FIRST_BATCH_SIZE = 250
MAX_NOTED_LOCK_WAITS = 10


def argument_spec() -> dict[str, t.Any]:
    spec = postgres_connection_argument_spec()
    spec.update(
        phase=dict(type='str', required=True, choices=PHASES),
        table=dict(type='str', required=True),
        schema=dict(type='str', default='public'),
        column=dict(type='str', required=True),
        target_type=dict(type='str', choices=list(ONLINE_TARGETS)),
        key=dict(type='str', no_log=False),
        history_schema=dict(type='str', default='ledgermind_migrations'),
        run_id=dict(type='str'),
        index_name=dict(type='str'),
        index_method=dict(type='str', default='gin'),
        index_opclass=dict(type='str', default='jsonb_ops'),
        batch_size=dict(type='int', default=1000),
        batch_target_seconds=dict(type='float', default=0.2),
        scan=dict(type='bool', default=True),
        batch_pause=dict(type='float', default=0.0),
        max_seconds=dict(type='float', default=0),
        max_replica_lag=dict(type='float', default=10),
        lock_timeout_ms=dict(type='int', default=400),
        retries=dict(type='int', default=20),
        retry_delay=dict(type='float', default=0.5),
        max_retry_delay=dict(type='float', default=3),
        version_table=dict(type='str', default='alembic_version'),
        revision=dict(type='str'),
        allowed_revisions=dict(type='list', elements='str', default=[]),
        free_space_margin=dict(type='float', default=1.2),
    )
    return spec


# ---------------------------------------------------------------------------------------------
# Pure decisions (unit-tested)
# ---------------------------------------------------------------------------------------------

def other_target(target: str) -> str:
    return 'text[]' if target == 'jsonb' else 'jsonb'


def situation(column_type: str | None, target: str, shadows: dict[str, str | None]) -> str:
    """pending / in_progress / converted / leftover from the column's type and the shadow columns present."""
    if shadows.get(other_target(target)):
        return 'leftover'
    if shadows.get(target):
        return 'in_progress'
    if column_type == target:
        return 'converted'
    return 'pending'


def refusals(table: dict[str, t.Any], target: str, dependents: list[dict[str, t.Any]],
             publications: list[str], allowed_index: str | None) -> list[str]:
    """What the swap would break or lose, each with what to do. Empty: the conversion may go ahead."""
    found: list[str] = []
    source = other_target(target)
    if table['column_type'] not in (source, target):
        found.append(f"the column is {table['column_type']}; the online conversion goes between text[] and jsonb")
    if table['not_null']:
        found.append('the column is NOT NULL, which the shadow column would not carry over: use the in-place '
                     'conversion, or drop NOT NULL first')
    if table['has_default']:
        found.append('the column has a default, which the shadow column would not carry over: use the in-place '
                     'conversion, or drop the default first')
    if table['column_privileges']:
        found.append('the column has column-level privileges (GRANT ... (column)), which dropping it would lose: '
                     'use the in-place conversion, or revoke them first')
    for dep in dependents:
        if dep.get('index_name') and dep['index_name'] == allowed_index:
            continue
        found.append(f"{dep['object']} depends on the column and dropping it at the swap would drop or break it: "
                     'use the in-place conversion, or drop it first and recreate it afterwards')
    if publications:
        found.append(f"the table is published ({', '.join(publications)}): subscribers would see a column dropped and "
                     'another added. Use the in-place conversion')
    return found


def first_batch_size(largest: int, target: float) -> int:
    """The first batch of a call: small when batches adapt (they double from there while quick), else ``largest``."""
    return min(largest, FIRST_BATCH_SIZE) if target > 0 else largest


def next_batch_size(size: int, largest: int, seconds: float, target: float) -> int:
    """The next batch's rows: halved (not below MIN_BATCH_SIZE) after a batch slower than ``target`` seconds,
    doubled (up to ``largest``) after one faster than half of it; ``target`` 0 keeps ``largest``."""
    if target <= 0:
        return largest
    if seconds > target:
        return max(min(MIN_BATCH_SIZE, largest), size // 2)
    if seconds < target / 2:
        return min(largest, size * 2)
    return size


def estimate(rows: int, batch_size: int, batch_pause: float, seconds_per_row: float | None) -> dict[str, t.Any]:
    """Batches and estimated seconds (None when no rate is known)."""
    batches = -(-max(rows, 0) // max(batch_size, 1))
    seconds = None if seconds_per_row is None else round(rows * seconds_per_row + batches * batch_pause, 1)
    return dict(batches=batches, estimated_seconds=seconds)


def space_needed(table_bytes: int, rows: int, avg_width: int | None) -> dict[str, int]:
    """The backfill writes a new version of every row (about the table's size again, reused after autovacuum);
    the column itself is about rows x average width."""
    column_bytes = int(rows * (avg_width or 0))
    return dict(needed_bytes=int(table_bytes + column_bytes), column_bytes=column_bytes)


def progress_report(rows_done: int, rows_estimated: int, written: int, seconds: float, done: bool,
                    rate: float | None = None) -> dict[str, t.Any]:
    """Rows done, percent, rate (rows per second in this call) and ETA."""
    if rate is None:
        rate = (written / seconds) if seconds > 0 else None
    rows_estimated = max(rows_estimated, rows_done)
    remaining = max(rows_estimated - rows_done, 0)
    percent = 100.0 if done or not rows_estimated else round(100.0 * rows_done / rows_estimated, 1)
    eta = 0.0 if done else (round(remaining / rate, 1) if rate else None)
    return dict(rows_done=rows_done, rows_estimated=rows_estimated, percent=percent,
                rate=round(rate, 1) if rate else None, eta_seconds=eta, done=done)


def describe_progress(progress: dict[str, t.Any]) -> str:
    eta = progress['eta_seconds']
    rate = progress['rate']
    return '{} of ~{} rows ({}%), {} rows/s, ETA {}'.format(
        progress['rows_done'], progress['rows_estimated'], progress['percent'],
        'n/a' if rate is None else int(rate), 'n/a' if eta is None else f'{eta:.0f} s')


# ---------------------------------------------------------------------------------------------
# Reading the database
# ---------------------------------------------------------------------------------------------

def relation(p: dict[str, t.Any]) -> str:
    return '{}.{}'.format(p['schema'], p['table'])


def read_table(module: AnsibleModule, cur: t.Any) -> dict[str, t.Any]:
    p = module.params
    cur.execute(ONLINE_TABLE_SQL, dict(schema=p['schema'], table=p['table'], column=p['column']))
    row = cur.fetchone()
    if row is None:
        fail(module, f'Table {relation(p)} does not exist (check schema and table). Nothing was changed.')
    if row['relkind'] not in ('r',):
        fail(module, f"{relation(p)} is not a plain table (relkind {row['relkind']}); the online conversion needs "
                     'one. Nothing was changed.')
    if row['attnum'] is None and p['phase'] != 'remove':
        fail(module, f"Column {relation(p)}.{p['column']} does not exist. Nothing was changed.")
    return dict(row)


def read_shadows(cur: t.Any, p: dict[str, t.Any], relid: int) -> dict[str, str | None]:
    """Which shadow columns exist, by target type, with their type."""
    found: dict[str, str | None] = {}
    for target in ONLINE_TARGETS:
        cur.execute(ONLINE_COLUMN_SQL, dict(relid=relid, column=online_shadow_column(p['column'], target)))
        row = cur.fetchone()
        found[target] = row['column_type'] if row else None
    return found


def read_progress(cur: t.Any, p: dict[str, t.Any]) -> dict[str, t.Any] | None:
    hs = p['history_schema']
    cur.execute(ONLINE_PROGRESS_PRESENT_SQL, dict(hs=hs))
    if not cur.fetchone()['present']:
        return None
    cur.execute(history_sql(ONLINE_PROGRESS_SQL, hs), dict(schema=p['schema'], table=p['table'], column=p['column']))
    row = cur.fetchone()
    return dict(row) if row else None


def read_trigger(cur: t.Any, relid: int) -> dict[str, t.Any] | None:
    cur.execute(ONLINE_TRIGGER_SQL, dict(relid=relid, trigger=ONLINE_TRIGGER))
    row = cur.fetchone()
    return dict(row) if row else None


def key_of(module: AnsibleModule, cur: t.Any, relid: int) -> tuple[str, str]:
    """O(key) or the single-column primary key, NOT NULL and unique on its own, with its type."""
    p = module.params
    key = find_key(module, cur, relid, relation(p), p['key'],
                   'the backfill walks the table in the order of one key column',
                   'the backfill walks the table in its order', ' Nothing was changed.')
    cur.execute(ONLINE_KEY_TYPE_SQL, dict(relid=relid, column=key))
    return key, str(cur.fetchone()['key_type'])


def read_dependents(cur: t.Any, relid: int, attnum: int) -> list[dict[str, t.Any]]:
    cur.execute(ONLINE_DEPENDENTS_SQL, dict(relid=relid, attnum=attnum))
    return [dict(r) for r in cur.fetchall()]


def read_publications(cur: t.Any, p: dict[str, t.Any]) -> list[str]:
    cur.execute(ONLINE_PUBLICATIONS_SQL, dict(schema=p['schema'], table=p['table']))
    return [r['publication'] for r in cur.fetchall()]


def read_index(cur: t.Any, schema: str, name: str | None) -> dict[str, t.Any] | None:
    if not name:
        return None
    cur.execute(ONLINE_INDEX_SQL, dict(schema=schema, name=name))
    row = cur.fetchone()
    return dict(row) if row else None


def current_revision(cur: t.Any, version_table: str) -> str | None:
    cur.execute(VERSION_TABLE_EXISTS_SQL, dict(table=version_table))
    if not cur.fetchone()['present']:
        return None
    cur.execute(version_rows_sql(version_table))
    return ','.join(r['version_num'] for r in cur.fetchall()) or None


def measured_seconds_per_row(cur: t.Any, p: dict[str, t.Any], key: str) -> float | None:
    """Time one batch's read and conversion (read-only), scaled for the write: the plan's rough rate."""
    probe = online_probe_sql(p['schema'], p['table'], key, p['column'], p['target_type'], p['history_schema'])
    started = time.monotonic()
    try:
        cur.execute(PROBE_SAVEPOINT.create)
        cur.execute(probe, dict(size=p['batch_size']))
        n = int(cur.fetchone()['n'] or 0)
        cur.execute(PROBE_SAVEPOINT.release)
    except psycopg2.Error:
        cur.execute(PROBE_SAVEPOINT.rollback)
        return None
    elapsed = time.monotonic() - started
    return (elapsed / n) * WRITE_COST_FACTOR if n else None


# ---------------------------------------------------------------------------------------------
# The phases
# ---------------------------------------------------------------------------------------------

class Conversion:
    """One call of the module: the state read first, then the phase."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.p = module.params
        self.target = self.p['target_type']
        self.shadow = online_shadow_column(self.p['column'], self.target) if self.target else None
        self.function = online_sync_function_name(self.p['schema'], self.p['table'], self.p['column'])
        self.result: dict[str, t.Any] = dict(changed=False, actions=[], table=relation(self.p),
                                             column=self.p['column'], target_type=self.target)

    # -- connection ------------------------------------------------------------------------------
    def connect(self, lock_timeout_ms: int | None = None) -> t.Any:
        settings = dict(lock_timeout=f"{self.p['lock_timeout_ms'] if lock_timeout_ms is None else lock_timeout_ms}ms",
                        statement_timeout='0', idle_in_transaction_session_timeout='60s')
        return connect_writable(self.module, application_name='ledgermind.migrations.online', settings=settings)

    def query_error(self, conn: t.Any, error: Exception, doing: str) -> t.NoReturn:
        sqlstate = getattr(error, 'pgcode', None)
        if lock_busy(error):
            self.give_up(doing, error, self.result.get('tries', 1), conn)
        if sqlstate == '42501':
            fail(self.module, f'Permission denied while {doing} {relation(self.p)}: the role must own the table and be '
                              f"able to write in schema {self.p['history_schema']}. Server said: "
                              + ' '.join(str(error).split()))
        fail_on_query_error(self.module, conn, error, relation(self.p), LOCK_HOLDERS_SQL,
                            lock_holders_params(self.p['schema'], self.p['table']))
        raise AssertionError('unreachable')

    def give_up(self, doing: str, error: BaseException, tries: int, conn: t.Any = None) -> t.NoReturn:
        """The lock budget is spent: fail naming the sessions holding the table (read on ``conn`` or a new one)."""
        if isinstance(error, LockBusy):
            fail(self.module, f'{error} {tries} tries gave up. Nothing was changed by the failed step; run again.',
                 tries=tries)
        own = conn is None
        conn = self.connect() if own else conn
        try:
            holders = lock_holders(conn, LOCK_HOLDERS_SQL, lock_holders_params(self.p['schema'], self.p['table']))
        finally:
            if own:
                close(conn)
        fail(self.module, lock_budget_message(relation(self.p), doing, tries, self.p['lock_timeout_ms'], holders),
             tries=tries)
        raise AssertionError('unreachable')  # fail() exits

    def with_lock_budget(self, attempt: t.Callable[[], t.Any], doing: str) -> t.Any:
        """``attempt()`` under the lock budget: a try that could not get its lock backs off and tries again."""
        p = self.p

        def one_try(number: int) -> t.Any:
            self.result['tries'] = number
            return attempt()

        return run_under_lock_budget(one_try, p['retries'], p['retry_delay'], p['max_retry_delay'],
                                     lambda error, tries: self.give_up(doing, error, tries))

    # -- state -----------------------------------------------------------------------------------
    def read_state(self, cur: t.Any) -> dict[str, t.Any]:
        table = read_table(self.module, cur)
        shadows = read_shadows(cur, self.p, table['relid'])
        state: dict[str, t.Any] = dict(table=table, shadows=shadows, progress=read_progress(cur, self.p),
                                       trigger=read_trigger(cur, table['relid']))
        if self.target:
            state['situation'] = situation(table['column_type'], self.target, shadows)
            self.result.update(state=state['situation'], column_type=table['column_type'],
                               shadow_column=self.shadow if shadows.get(self.target) else None)
        return state

    def check_refusals(self, cur: t.Any, state: dict[str, t.Any]) -> list[str]:
        table = state['table']
        allowed = self.p['index_name'] if self.target == 'text[]' else None
        found = refusals(table, self.target, read_dependents(cur, table['relid'], table['attnum']),
                         read_publications(cur, self.p), allowed)
        if self.target == 'jsonb' and self.p['index_name']:
            index = read_index(cur, self.p['schema'], self.p['index_name'])
            if index and index['valid'] and (index['relid'] != table['relid']
                                             or index['columns'] != self.shadow):
                found.append(f"index {self.p['index_name']} already exists on another table or column "
                             f"({index['columns']}): drop or rename it first")
        return found

    def row_count(self, cur: t.Any, state: dict[str, t.Any]) -> int:
        """The planner's estimate; a count when the table was never analyzed (reltuples -1) or looks empty."""
        rows = int(state['table']['estimated_rows'] or 0)
        if rows <= 0:
            cur.execute(count_rows_sql(self.p['schema'], self.p['table']))
            rows = int(cur.fetchone()['n'])
        return rows

    def plan(self, cur: t.Any, state: dict[str, t.Any], key: str, with_unconvertible: bool) -> dict[str, t.Any]:
        """Rows, batches, estimate, space and refusals; ``with_unconvertible`` scans for values text[] cannot hold."""
        table = state['table']
        rows = self.row_count(cur, state)
        found = self.check_refusals(cur, state) if state['situation'] in ('pending', 'in_progress') else []
        if with_unconvertible and self.target == 'text[]' and state['situation'] in ('pending', 'in_progress'):
            cur.execute(online_unconvertible_sql(self.p['schema'], self.p['table'], key, self.p['column'],
                                                 self.target, self.p['history_schema']))
            bad = cur.fetchone()
            if bad['unconvertible']:
                found.append('{} row(s) hold values text[] cannot hold (not a flat array of strings and nulls; keys '
                             '{}): fix them first, as the downgrade requires'.format(
                                 bad['unconvertible'], ', '.join(bad['sample_keys'] or [])))
        per_row = measured_seconds_per_row(cur, self.p, key) if self.target == 'jsonb' or found == [] else None
        space = space_needed(int(table['table_bytes']), rows, table['avg_width'])
        free, free_source = free_space(cur, table)
        batches = estimate(rows, self.p['batch_size'], self.p['batch_pause'], per_row)
        plan = dict(rows=rows, batch_size=self.p['batch_size'], **batches,
                    free_bytes=free, free_space_source=free_source, refusals=found,
                    freed_after_swap_bytes=space['column_bytes'], **space)
        if free is not None and free < space['needed_bytes'] * self.p['free_space_margin']:
            found.append('not enough free space: the conversion needs about {} bytes (x{} margin) and {} has {}'.format(
                space['needed_bytes'], self.p['free_space_margin'], free_source, free))
        self.result['plan'] = plan
        return plan

    # -- phases ----------------------------------------------------------------------------------
    def run(self) -> dict[str, t.Any]:
        phase = self.p['phase']
        if phase == 'remove':
            return self.with_lock_budget(self.remove, 'removing the online conversion of')
        if phase == 'expand':
            return self.with_lock_budget(self.expand, 'expanding')
        if phase == 'swap':
            self.with_lock_budget(self.swap, 'swapping the column of')
            if self.result.get('swap'):
                self.analyze()
            return self.result
        return getattr(self, phase)()

    def open_read(self) -> tuple[t.Any, t.Any]:
        conn = self.connect()
        cur = conn.cursor()
        return conn, cur

    @contextlib.contextmanager
    def session(self, doing: str) -> t.Iterator[tuple[t.Any, t.Any]]:
        """A connection and cursor for one try under the lock budget: a lock not granted goes up to the runner (it
        tries again), any other database error fails the module clearly; always closed."""
        conn, cur = self.open_read()
        try:
            yield conn, cur
        except LockBusy as e:
            self.note_lock_wait(str(e))
            raise
        except psycopg2.Error as e:
            if lock_busy(e):
                self.note_lock_wait(', '.join(lock_holders(conn, LOCK_HOLDERS_SQL, lock_holders_params(
                    self.p['schema'], self.p['table']))) or 'a session gone before it could be named')
                raise
            self.query_error(conn, e, doing)
        finally:
            close(conn)

    def note_lock_wait(self, why: str) -> None:
        """Keep why a try gave way (the sessions holding the table, or what changed), so that a run that needed
        several tries says what it waited for; the first few only."""
        waits = self.result.setdefault('lock_waits', [])
        if len(waits) < MAX_NOTED_LOCK_WAITS:
            waits.append(dict(attempt=self.result.get('tries', 1), held_by=why))

    def plan_only(self, full: bool) -> dict[str, t.Any]:
        conn, cur = self.open_read()
        try:
            conn.set_session(readonly=True)
            state = self.read_state(cur)
            self.result['rows'] = self.row_count(cur, state)
            self.result['revision'] = current_revision(cur, self.p['version_table'])
            if full:
                key = key_of(self.module, cur, state['table']['relid'])[0]
                self.plan(cur, state, key, with_unconvertible=self.p['scan'])
            self.result['progress'] = self.progress_of(state)
            conn.rollback()
        except psycopg2.Error as e:
            self.query_error(conn, e, 'planning the conversion of')
        finally:
            close(conn)
        return self.result

    def progress_of(self, state: dict[str, t.Any]) -> dict[str, t.Any] | None:
        progress = state['progress']
        if not progress or state.get('situation') != 'in_progress':
            return None
        report = progress_report(int(progress['rows_done']), int(state['table']['estimated_rows'] or 0), 0, 0,
                                 progress['backfilled_at'] is not None)
        report.update(verified=progress['verified_at'] is not None, run_id=progress['run_id'])
        return report

    def expand(self) -> dict[str, t.Any]:
        p = self.p
        with self.session('expanding') as (conn, cur):
            if not self.module.check_mode:
                cur.execute(HISTORY_LOCK_SQL)
            state = self.read_state(cur)
            key = key_of(self.module, cur, state['table']['relid'])[0]
            where = state['situation']
            if where == 'leftover':
                fail(self.module, f'{relation(p)} holds the shadow column of an unfinished conversion to '
                                  f'{other_target(self.target)}: remove it first (phase=remove; the rollback does). '
                                  'Nothing was changed.', state=where)
            if where == 'converted':
                conn.rollback()
                self.result['actions'] = [f"{relation(p)}.{p['column']} is already {self.target}: nothing to expand"]
                return self.result
            # scan=false when the pre-flight's plan already scanned for values the target cannot hold: the trigger
            # refuses such a write from now on, and the backfill stops at such a row, naming it.
            plan = self.plan(cur, state, key, with_unconvertible=p['scan'])
            if plan['refusals']:
                fail(self.module, f"Refusing the online conversion of {relation(p)}.{p['column']} to {self.target}: "
                                  + '; '.join(plan['refusals']) + '. Nothing was changed.',
                     plan=plan, state=where)
            actions = self.expand_actions(state)
            self.result.update(actions=actions, changed=bool(actions))
            if actions and not self.module.check_mode:
                self.execute_expand(cur, state, key)
                conn.commit()
            else:
                conn.rollback()
            self.result['key_column'] = key
        return self.result

    def expand_actions(self, state: dict[str, t.Any]) -> list[str]:
        p = self.p
        actions = []
        if not state['shadows'][self.target]:
            actions.append(f'add nullable column {self.shadow} {self.target} to {relation(p)}')
        trigger = state['trigger']
        if not trigger or trigger['enabled'] == 'D':
            actions.append(f'create trigger {ONLINE_TRIGGER} keeping {self.shadow} equal to the conversion of '
                           f"{p['column']} on every INSERT and UPDATE")
            if state['shadows'][self.target]:
                actions.append('restart the backfill from the first key (the trigger was missing)')
        if not state['progress']:
            actions.append(f"record the conversion's progress in {p['history_schema']}.online_conversion")
        return actions

    def execute_expand(self, cur: t.Any, state: dict[str, t.Any], key: str) -> None:
        p = self.p
        hs = p['history_schema']
        cur.execute(create_schema_sql(hs))
        for statement in ONLINE_DDL:
            cur.execute(history_sql(statement, hs))
        # LOCK first, in the strongest mode a statement below needs (ADD COLUMN: ACCESS EXCLUSIVE, CREATE TRIGGER:
        # SHARE ROW EXCLUSIVE): one wait under the budget, and no lock upgrade that could deadlock.
        mode = 'SHARE ROW EXCLUSIVE' if state['shadows'][self.target] else 'ACCESS EXCLUSIVE'
        cur.execute(lock_table_sql(p['schema'], p['table'], mode))
        if not state['shadows'][self.target]:
            cur.execute(online_add_shadow_sql(p['schema'], p['table'], self.shadow, self.target))
        body = online_sync_function_body(hs, p['column'], self.shadow, self.target).as_string(cur)
        cur.execute(create_online_sync_function_sql(hs, self.function), dict(body=body))
        trigger = state['trigger']
        names = dict(schema=p['schema'], table=p['table'], column=p['column'])
        if trigger and trigger['enabled'] == 'D':
            cur.execute(online_drop_trigger_sql(p['schema'], p['table']))
            trigger = None
        if not trigger:
            cur.execute(online_sync_trigger_sql(p['schema'], p['table'], hs, self.function))
            if state['progress']:
                cur.execute(history_sql(ONLINE_PROGRESS_RESTART_SQL, hs), names)
        cur.execute(history_sql(ONLINE_PROGRESS_INSERT_SQL, hs),
                    dict(names, target=self.target, shadow=self.shadow, key=key, run_id=p['run_id']))

    def require_in_progress(self, state: dict[str, t.Any], phase: str) -> bool:
        """True when the phase has work to do; False when the column is already converted (nothing to do)."""
        where = state['situation']
        if where == 'converted':
            self.result['actions'] = [f"{relation(self.p)}.{self.p['column']} is already {self.target}: nothing to "
                                      f'{phase}']
            return False
        if where != 'in_progress' or not state['trigger'] or not state['progress']:
            if self.module.check_mode and where == 'pending':
                self.result['actions'] = [f'would {phase} after expand']
                return False
            fail(self.module, f'Cannot {phase} {relation(self.p)}: no conversion to {self.target} is in progress '
                              f'(state {where}); run phase=expand first. Nothing was changed.', state=where)
        return True

    def backfill(self) -> dict[str, t.Any]:
        p = self.p
        conn, cur = self.open_read()
        started = time.monotonic()
        try:
            state = self.read_state(cur)
            conn.rollback()
            if not self.require_in_progress(state, 'backfill'):
                return self.result
            if state['trigger']['enabled'] == 'D':
                fail(self.module, f'Trigger {ONLINE_TRIGGER} on {relation(p)} is disabled, so the shadow would not '
                                  'follow the writes: run phase=expand (it re-creates it and restarts the backfill). '
                                  'Nothing was changed.', state=state['situation'])
            progress = state['progress']
            key, key_type = key_of(self.module, cur, state['table']['relid'])
            conn.rollback()
            if self.module.check_mode:
                done = progress['backfilled_at'] is not None
                self.result['progress'] = progress_report(int(progress['rows_done']),
                                                          int(state['table']['estimated_rows'] or 0), 0, 0, done)
                self.result['actions'] = [] if done else ['would backfill from key {}'.format(
                    progress['last_key'] or 'start')]
                return self.result
            report = self.run_batches(conn, cur, state, key, key_type, started)
        except psycopg2.Error as e:
            self.query_error(conn, e, 'backfilling')
        finally:
            close(conn)
        self.result['progress'] = report
        self.result['actions'] = [describe_progress(report)]
        return self.result

    def run_batches(self, conn: t.Any, cur: t.Any, state: dict[str, t.Any], key: str, key_type: str,
                    started: float) -> dict[str, t.Any]:
        """Batches from the recorded key until the end or O(max_seconds), each under the lock budget (its row
        locks), the next one's size adapted to O(batch_target_seconds); the progress of this call."""
        p = self.p
        hs = p['history_schema']
        names = dict(schema=p['schema'], table=p['table'], column=p['column'])
        progress = state['progress']
        rows_done, last_key = int(progress['rows_done']), progress['last_key']
        done = progress['backfilled_at'] is not None
        read_total = written_total = 0
        throttled = last_lag_check = 0.0
        size = first_batch_size(p['batch_size'], p['batch_target_seconds'])
        sizes: list[int] = []
        while not done:
            if p['max_replica_lag'] > 0 and time.monotonic() - last_lag_check >= 1.0:
                throttled += self.wait_for_replicas(cur, conn)
                last_lag_check = time.monotonic()
            statement = online_backfill_sql(p['schema'], p['table'], key, key_type, p['column'], self.shadow,
                                            self.target, hs, first=last_key is None)

            def one_batch(_number: int, statement: t.Any = statement, after: str | None = last_key,
                          size: int = size) -> dict[str, t.Any]:
                try:
                    cur.execute(statement, dict(after=after, size=size))
                    batch = dict(cur.fetchone())
                    if batch['rows_read']:
                        cur.execute(history_sql(ONLINE_PROGRESS_BATCH_SQL, hs),
                                    dict(names, last_key=batch['last_key'], rows=batch['rows_read']))
                    else:
                        cur.execute(online_mark_progress_sql(hs, 'backfilled_at'), names)
                    conn.commit()
                    return batch
                except psycopg2.Error as e:
                    conn.rollback()
                    if getattr(e, 'pgcode', None) == '23514':
                        self.refuse_row(cur, conn, e, key, key_type, after, size)
                    raise

            batch_started = time.monotonic()
            batch = run_under_lock_budget(one_batch, p['retries'], p['retry_delay'], p['max_retry_delay'],
                                          lambda error, tries: self.give_up('backfilling', error, tries, conn))
            self.result['changed'] = True
            sizes.append(size)
            if not batch['rows_read']:
                done = True
                break
            last_key = batch['last_key']
            rows_done += int(batch['rows_read'])
            read_total += int(batch['rows_read'])
            written_total += int(batch['rows_written'])
            short = int(batch['rows_read']) < size
            size = next_batch_size(size, p['batch_size'], time.monotonic() - batch_started, p['batch_target_seconds'])
            if short:
                continue  # one more (empty) batch marks the end in the same way as a resumed run
            if p['max_seconds'] and time.monotonic() - started >= p['max_seconds']:
                break
            if p['batch_pause']:
                time.sleep(p['batch_pause'])
        seconds = time.monotonic() - started
        rate = read_total / seconds if seconds > 0 and read_total else None
        report = progress_report(rows_done, int(state['table']['estimated_rows'] or 0), written_total, seconds, done,
                                 rate)
        report.update(rows_read=read_total, rows_written=written_total, seconds=round(seconds, 2),
                      throttled_seconds=round(throttled, 1), batches=len(sizes),
                      batch_sizes=dict(smallest=min(sizes), largest=max(sizes)) if sizes else None)
        return report

    def refuse_row(self, cur: t.Any, conn: t.Any, error: Exception, key: str, key_type: str, after: str | None,
                   size: int) -> t.NoReturn:
        """A row of the batch holds what the target cannot: fail naming it (the batch was rolled back)."""
        p = self.p
        cur.execute(online_unconvertible_sql(p['schema'], p['table'], key, p['column'], self.target,
                                             p['history_schema'], key_type), dict(after=after, size=size))
        bad = cur.fetchone()
        conn.rollback()
        fail(self.module, 'The backfill of {} stopped at {} row(s) the conversion refuses (keys {}): {} Rows up to key '
                          '{} are done; fix those rows (or roll back the conversion with phase=remove) and run '
                          'again.'.format(relation(p), bad['unconvertible'], ', '.join(bad['sample_keys'] or []),
                                          ' '.join(str(error).split()), after or '(none)'),
             changed=True)
        raise AssertionError('unreachable')  # fail() exits

    def wait_for_replicas(self, cur: t.Any, conn: t.Any) -> float:
        """Sleep while a replica lags more than O(max_replica_lag); the seconds waited."""
        waited = 0.0
        while True:
            cur.execute(ONLINE_REPLICA_LAG_SQL)
            row = cur.fetchone()
            conn.rollback()
            lag = row['lag_seconds']
            if not row['replicas'] or lag is None or lag <= self.p['max_replica_lag']:
                self.result['replicas'] = dict(count=row['replicas'], lag_seconds=lag)
                return waited
            time.sleep(1.0)
            waited += 1.0

    def index(self) -> dict[str, t.Any]:
        p = self.p
        if self.target != 'jsonb' or not p['index_name']:
            self.result['actions'] = []
            return self.result
        # CONCURRENTLY waits for older transactions without blocking anyone: no lock budget for it.
        conn = self.connect(lock_timeout_ms=0)
        try:
            conn.autocommit = True
            cur = conn.cursor()
            state = self.read_state(cur)
            if not self.require_in_progress(state, 'index'):
                return self.result
            index = read_index(cur, p['schema'], p['index_name'])
            on_shadow = index is not None and index['relid'] == state['table']['relid'] \
                and index['columns'] == self.shadow
            if index is not None and not on_shadow:
                fail(self.module, f"Index {p['index_name']} exists on another table or column ({index['columns']}); "
                                  'drop or rename it, then run again. Nothing was changed.')
            actions = []
            if index is not None and not index['valid']:
                actions.append(f"drop the INVALID {p['index_name']} left by an interrupted build")
            if index is None or not index['valid']:
                actions.append(f"build {p['index_name']} CONCURRENTLY: {p['index_method']} ({self.shadow} "
                               f"{p['index_opclass']})")
            elif (index['method'], index['opclasses']) != (p['index_method'], p['index_opclass'] or index['opclasses']):
                fail(self.module, f"Index {p['index_name']} on {self.shadow} is {index['method']} "
                                  f"({index['opclasses']}), not {p['index_method']} ({p['index_opclass']}); drop it "
                                  'and run again.')
            self.result.update(actions=actions, changed=bool(actions))
            if actions and not self.module.check_mode:
                if index is not None:
                    cur.execute(online_drop_index_sql(p['schema'], p['index_name']))
                cur.execute(online_create_index_sql(p['schema'], p['table'], p['index_name'], p['index_method'],
                                                    self.shadow, p['index_opclass']))
        except psycopg2.Error as e:
            self.query_error(conn, e, 'indexing the shadow column of')
        finally:
            close(conn)
        return self.result

    def verify(self) -> dict[str, t.Any]:
        p = self.p
        hs = p['history_schema']
        names = dict(schema=p['schema'], table=p['table'], column=p['column'])
        conn, cur = self.open_read()
        try:
            state = self.read_state(cur)
            if not self.require_in_progress(state, 'verify'):
                return self.result
            if state['progress']['backfilled_at'] is None:
                if self.module.check_mode:
                    self.result['actions'] = ['would verify every row after the backfill']
                    return self.result
                fail(self.module, f'The backfill of {relation(p)} has not reached the end yet: run phase=backfill '
                                  '(it continues where it stopped). Nothing was changed.')
            key = key_of(self.module, cur, state['table']['relid'])[0]
            # The catalog first, the rows after: a trigger disabled (or replaced) once this is read changes the
            # fingerprint that the swap compares under its lock, so no write the scan misses can go unnoticed.
            fingerprint = self.fingerprint(cur, state)['data_fingerprint']
            conn.commit()
            cur.execute(online_verify_sql(p['schema'], p['table'], key, p['column'], self.shadow, self.target, hs))
            found = dict(cur.fetchone())
            conn.commit()
            self.result['verify'] = found
            ok = not found['differing'] and not found['unconvertible']
            # A verification already recorded under the same catalog and still true changes nothing.
            newly = (not ok or state['progress']['verified_at'] is None
                     or state['progress']['verified_fingerprint'] != fingerprint)
            self.result['changed'] = newly
            if newly and not self.module.check_mode:
                if ok:
                    cur.execute(history_sql(ONLINE_PROGRESS_UPGRADE_SQL, hs))  # an older table's missing column
                    cur.execute(history_sql(ONLINE_PROGRESS_VERIFIED_SQL, hs), dict(names, fingerprint=fingerprint))
                else:
                    cur.execute(history_sql(ONLINE_PROGRESS_RESTART_SQL, hs), names)
                conn.commit()
            self.result['actions'] = ['verified {} rows: {} differing, {} the target cannot hold'.format(
                found['rows'], found['differing'], found['unconvertible'])]
            if not ok:
                fail(self.module, '{} of {} rows of {} differ from the conversion of {} ({} the target cannot hold; '
                                  'keys {}). A write bypassed the trigger (session_replication_role = replica?) or a '
                                  'row holds what {} cannot: the next backfill rewrites the differing rows, run '
                                  'again. Nothing was swapped.'.format(
                                      found['differing'], found['rows'], relation(p), p['column'],
                                      found['unconvertible'], ', '.join(found['sample_keys'] or []), self.target),
                     verify=found, state=state['situation'])
        except psycopg2.Error as e:
            self.query_error(conn, e, 'verifying')
        finally:
            close(conn)
        return self.result

    def fingerprint(self, cur: t.Any, state: dict[str, t.Any]) -> dict[str, str]:
        """The two catalog digests the swap relies on (ONLINE_FINGERPRINT_SQL): cheap, by oid."""
        p = self.p
        cur.execute(ONLINE_FINGERPRINT_SQL, dict(relid=state['table']['relid'], trigger=ONLINE_TRIGGER,
                                                 column=p['column'], shadow=self.shadow, schema=p['schema'],
                                                 table=p['table'], index=p['index_name'] or ''))
        return dict(cur.fetchone())

    def swap(self) -> dict[str, t.Any]:
        """One try: every check before the lock, then under it the one catalog re-check and the swap itself."""
        checked = self.swap_checks()
        if checked is None or self.module.check_mode:
            return self.result
        state, revision, before = checked
        p = self.p
        hs = p['history_schema']
        with self.session('swapping the column of') as (conn, cur):
            cur.execute(lock_table_sql(p['schema'], p['table'], 'ACCESS EXCLUSIVE'))
            now = self.fingerprint(cur, state)
            if now['data_fingerprint'] != state['progress']['verified_fingerprint'] \
                    or now['schema_fingerprint'] != before['schema_fingerprint']:
                conn.rollback()
                raise LockBusy(f'The catalog of {relation(p)} changed while the swap waited for its lock (trigger, '
                               'column, shadow, dependents, publications or index); the lock was given back.')
            for statement in online_swap_sql(p['schema'], p['table'], p['column'], self.shadow, hs, self.function,
                                             state['table']['comment']):
                cur.execute(statement)
            if p['revision']:
                cur.execute(version_update_sql(p['version_table']),
                            dict(revision=p['revision'], allowed=list(p['allowed_revisions']) + [p['revision']]))
                if cur.rowcount != 1:
                    conn.rollback()
                    raise LockBusy(f"Alembic's version table {p['version_table']} changed while the swap waited for "
                                   'its lock; the lock was given back.')
            cur.execute(history_sql(ONLINE_PROGRESS_DELETE_SQL, hs),
                        dict(schema=p['schema'], table=p['table'], column=p['column']))
            conn.commit()
            self.result.update(changed=True, swap=dict(
                tries=self.result.get('tries', 1), waited_for=self.result.get('lock_waits', []),
                revision=p['revision'], revision_before=revision,
                checked_under_lock=['catalog fingerprint of the trigger, column and shadow against the verify',
                                    'dependents, publications and index against the checks before the lock',
                                    "Alembic's version row (the guarded UPDATE)"]))
        return self.result

    def swap_checks(self) -> tuple[dict[str, t.Any], str | None, dict[str, str]] | None:
        """Everything the swap checks before it takes its lock, in a transaction of its own: the state, what it
        would break or lose, the index, the revision, and the fingerprint it re-checks under the lock. None when
        there is nothing to swap; fails naming what stops it."""
        p = self.p
        with self.session('swapping the column of') as (conn, cur):
            conn.set_session(readonly=True)
            state = self.read_state(cur)
            if not self.require_in_progress(state, 'swap'):
                return None
            problems = self.swap_problems(cur, state)
            if problems and not (self.module.check_mode and state['progress']['verified_at'] is None):
                fail(self.module, 'Refusing to swap {}.{}: '.format(relation(p), p['column']) + '; '.join(problems)
                     + '. Nothing was changed.', state=state['situation'], tries=self.result.get('tries', 1))
            revision = self.check_revision(cur) if p['revision'] else None
            before = self.fingerprint(cur, state)
            if state['progress']['verified_at'] is not None \
                    and before['data_fingerprint'] != state['progress']['verified_fingerprint']:
                fail(self.module, f'The trigger, column or shadow of {relation(p)} changed since the verify (the '
                                  'trigger disabled, re-enabled or replaced?), so writes may have bypassed it: run '
                                  'phase=verify again, then swap. Nothing was changed.', state=state['situation'],
                     tries=self.result.get('tries', 1))
            self.result['actions'] = [
                f"drop {ONLINE_TRIGGER}, drop column {p['column']} ({state['table']['column_type']}), rename "
                f"{self.shadow} to {p['column']} ({self.target})"
                + (f", move {p['version_table']} from {revision} to {p['revision']}" if p['revision'] else '')]
            if self.module.check_mode:
                self.result['changed'] = True
            return state, revision, before

    def swap_problems(self, cur: t.Any, state: dict[str, t.Any]) -> list[str]:
        p = self.p
        problems = []
        if state['progress']['verified_at'] is None:
            problems.append('the conversion is not verified yet (run phase=verify after the backfill)')
        if not state['trigger'] or state['trigger']['enabled'] == 'D':
            problems.append(f'trigger {ONLINE_TRIGGER} is missing or disabled, so the shadow may be stale (run '
                            'phase=expand, which restarts the backfill)')
        problems += self.check_refusals(cur, state)
        if self.target == 'jsonb' and p['index_name']:
            index = read_index(cur, p['schema'], p['index_name'])
            if not index or not index['valid'] or index['columns'] != self.shadow:
                problems.append(f"index {p['index_name']} is not built and valid on {self.shadow} (run phase=index)")
        return problems

    def check_revision(self, cur: t.Any) -> str:
        p = self.p
        cur.execute(VERSION_TABLE_EXISTS_SQL, dict(table=p['version_table']))
        if not cur.fetchone()['present']:
            fail(self.module, f"Alembic's version table {p['version_table']} does not exist in this database; the "
                              'swap records the revision there. Nothing was changed.')
        cur.execute(version_rows_sql(p['version_table']))
        revisions = [r['version_num'] for r in cur.fetchall()]
        allowed = list(p['allowed_revisions']) + [p['revision']]
        if len(revisions) != 1 or revisions[0] not in allowed:
            fail(self.module, f"Alembic's version table holds {', '.join(revisions) or 'nothing'}; the swap expects "
                              f"one of {', '.join(allowed)}. Nothing was changed.")
        return str(revisions[0])

    def analyze(self) -> None:
        """Fresh statistics for the new column (the planner's choice of the index): best effort, no table lock
        that blocks reads or writes."""
        conn = self.connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(analyze_column_sql(self.p['schema'], self.p['table'], self.p['column']))
        except psycopg2.Error as e:
            self.module.warn(f'ANALYZE after the swap failed ({e}); autovacuum will analyze the table later.')
        finally:
            close(conn)

    def remove(self) -> dict[str, t.Any]:
        p = self.p
        hs = p['history_schema']
        with self.session('removing the online conversion of') as (conn, cur):
            state = self.read_state(cur)
            table = state['table']
            shadows = [online_shadow_column(p['column'], target) for target, kind in state['shadows'].items() if kind]
            actions = []
            if state['trigger']:
                actions.append(f'drop trigger {ONLINE_TRIGGER} and its function')
            actions += [f'drop column {shadow}' for shadow in shadows]
            if state['progress']:
                actions.append(f'forget the progress recorded in {hs}.online_conversion')
            self.result.update(actions=actions, state='leftover' if actions else 'clean',
                               column_type=table['column_type'], changed=bool(actions))
            if not actions or self.module.check_mode:
                conn.rollback()
                return self.result
            cur.execute(lock_table_sql(p['schema'], p['table'], 'ACCESS EXCLUSIVE'))
            cur.execute(online_drop_trigger_sql(p['schema'], p['table']))
            cur.execute(online_drop_function_sql(hs, self.function))
            for shadow in shadows:
                cur.execute(online_drop_shadow_sql(p['schema'], p['table'], shadow))
            if state['progress']:
                cur.execute(history_sql(ONLINE_PROGRESS_DELETE_SQL, hs),
                            dict(schema=p['schema'], table=p['table'], column=p['column']))
            conn.commit()
        return self.result


def check_params(module: AnsibleModule) -> None:
    p = module.params
    for name in ('batch_size', 'retries', 'lock_timeout_ms'):
        if p[name] < 1:
            fail(module, f'{name} must be at least 1.')
    if p['batch_target_seconds'] < 0:
        fail(module, 'batch_target_seconds must be 0 (no adapting) or more.')
    if p['phase'] not in ('remove', 'status', 'plan') and not p['target_type']:
        fail(module, f"target_type is required for phase={p['phase']} (jsonb or text[]).")


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    check_params(module)
    conversion = Conversion(module)
    if module.params['phase'] in ('status', 'plan'):
        module.exit_json(**conversion.plan_only(full=module.params['phase'] == 'plan'))
    module.exit_json(**conversion.run())


if __name__ == '__main__':
    main()
