#!/usr/bin/python
# Copyright (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: pg_run_record
short_description: Keep a migration run's record in the target database, bound to that database's identity
version_added: 0.1.0
description:
  - Keeps one row per migrate or rollback run in C(<history_schema>.run_history) of the target database,
    beside Alembic's own C(alembic_version), with the database's identity (C(system_identifier), name, oid,
    a uuid of its own, schema, table and its oid), revisions and column types before and after, the
    pre-flight fingerprint, the backup archive (path, size, sha256), mode, operator, times and status.
  - A rollback finds its run here, by identity, never by the age of a file in a shared directory.
  - One run at a time per table. O(step=start) refuses while another run of the same table is at work,
    naming who holds it. A run left C(running) by a killed controller is taken over once none of our
    sessions is active and its heartbeat is older than O(stale_after) (or at once with O(take_over));
    it is marked C(interrupted) and returned, so the new run can finish or report it.
  - Also reports the table's state as the database sees it (column type, Alembic revision, index
    present and valid), which is what a run's verdict is decided from.
author:
  - LedgerMind SRE (@ledgermind)
extends_documentation_fragment:
  - ledgermind.migrations.connection
  - ledgermind.migrations.connection.lock_timeout
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: O(step=start), O(step=update) and O(step=finish) write nothing and return what they would record.
  diff_mode:
    support: none
  platform:
    platforms: posix
requirements:
  - psycopg2
options:
  step:
    description:
      - C(inspect) reads the identity, the state, the runs of the table and any run at work (read-only).
      - C(start) creates the history schema when missing and records a new C(running) run.
      - C(update) merges O(record) and O(details) into the run and refreshes its heartbeat.
      - C(finish) does the same and sets its end time; O(record) should carry the final C(status).
    type: str
    choices: [inspect, start, update, finish]
    default: inspect
  schema:
    description: Schema of the table the run changes.
    type: str
    default: public
  table:
    description: The table the run changes.
    type: str
    required: true
  column:
    description: The column the run converts; its type is part of the identity and the state.
    type: str
  index:
    description: An index whose presence and validity the state reports.
    type: str
  version_table:
    description: Alembic's version table, read for the state's revision.
    type: str
    default: alembic_version
  history_schema:
    description: Schema holding C(run_history) and C(database_instance) in the target database.
    type: str
    default: ledgermind_migrations
  run_id:
    description: The run's id. Required by every step but C(inspect).
    type: str
  kind:
    description: What the run does. Required by O(step=start).
    type: str
    choices: [migrate, rollback]
  record:
    description:
      - Fields to set, among C(status) (C(running), C(passed), C(failed), C(rolled_back), C(interrupted),
        C(nothing_to_do)), C(phase), C(revision_before), C(revision_after), C(type_before), C(type_after),
        C(fingerprint), C(fingerprint_sums), C(row_count), C(backup_path), C(backup_size), C(backup_sha256),
        C(mode), C(operator), C(controller).
    type: dict
    default: {}
  details:
    description: Anything else worth keeping with the run, merged into its C(details) (jsonb).
    type: dict
    default: {}
  stale_after:
    description:
      - Seconds without a heartbeat after which a C(running) run with none of our sessions active on the
        database is taken for dead (its controller killed) and taken over.
    type: int
    default: 900
  take_over:
    description:
      - The id of a C(running) run to take over now, whatever its heartbeat, once you know it is dead.
        Still refused while one of our sessions is active on the database.
    type: str
  pre_migration_type:
    description:
      - Column type (PostgreSQL's spelling, e.g. C(text[])) a migrate run's backup must have been taken at
        to be returned as RV(last_backup).
    type: str
'''

EXAMPLES = r'''
- name: Start the run record (refuses while another run of the table is at work)
  ledgermind.migrations.pg_run_record:
    database_url: "{{ ledgermind_db | ledgermind.migrations.libpq_url }}"
    step: start
    run_id: "{{ ledgermind_run.id }}"
    kind: migrate
    table: ml_features
    column: tokens
    record:
      operator: "{{ ledgermind_operator }}"
      controller: "{{ lookup('ansible.builtin.pipe', 'hostname') }}"

- name: Find the backup of the last migration of this database's table
  ledgermind.migrations.pg_run_record:
    database_url: "{{ ledgermind_db | ledgermind.migrations.libpq_url }}"
    table: ml_features
    column: tokens
    pre_migration_type: text[]
  register: history
'''

RETURN = r'''
identity:
  description: The target's identity (see docs/run-record.md).
  returned: always
  type: dict
  sample: {system_identifier: "7714503031499356331", database: ledgermind, database_oid: 16384,
           database_uuid: 0b6f..., schema: public, table: ml_features, table_oid: 16390, column: tokens,
           column_type: "text[]"}
state:
  description: The table as the database has it now.
  returned: always
  type: dict
  sample: {column_type: jsonb, revision: 502d44cd70ab, index_exists: true, index_valid: true}
history_present:
  description: Whether the history schema exists in the target database.
  returned: always
  type: bool
record:
  description: This run's row after the step (in check mode, what it would be).
  returned: when O(run_id) is set and the step is not C(inspect)
  type: dict
running:
  description:
    - The other run of this table recorded as C(running), with C(alive), C(why) and C(sessions) (our
      sessions active on the database). Empty when there is none.
  returned: always
  type: dict
interrupted:
  description: A dead run O(step=start) marked C(interrupted) and took over; empty when none.
  returned: always
  type: dict
runs:
  description: The table's last ten runs, newest first.
  returned: always
  type: list
  elements: dict
table_writes:
  description:
    - The table's cumulative C(inserted), C(updated) and C(deleted) row counts from C(pg_stat_user_tables), with
      C(live_rows) and when the database's statistics were last reset (C(stats_reset)). Their growth between two
      runs tells roughly how many rows the application wrote meanwhile.
  returned: always
  type: dict
last_backup:
  description:
    - The newest migrate run of this table with a backup archive (taken at O(pre_migration_type) when
      given); empty when none.
  returned: always
  type: dict
'''

import datetime
import decimal
import json
import socket
import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ledgermind.migrations.plugins.module_utils._connection import (
    close,
    connect,
    connect_writable,
    fail,
    fail_on_query_error,
    postgres_connection_argument_spec,
    psycopg2,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._queries import (
    DATABASE_INSTANCE_SQL,
    HISTORY_COMPLETE_SQL,
    HISTORY_DDL,
    HISTORY_LOCK_SQL,
    HISTORY_PRESENT_SQL,
    INDEX_STATE_SQL,
    INSERT_RUN_SQL,
    MARK_INTERRUPTED_SQL,
    OUR_SESSIONS_SQL,
    RUN_FIELDS,
    RUN_SQL,
    RUN_STATUSES,
    RUNS_SQL,
    TABLE_WRITES_SQL,
    current_alembic_revision,
    database_identity,
    history_sql,
    update_run_sql,
)

RECENT_RUNS = 10


def argument_spec() -> dict[str, t.Any]:
    spec = postgres_connection_argument_spec()
    spec.update(
        step=dict(type='str', choices=['inspect', 'start', 'update', 'finish'], default='inspect'),
        schema=dict(type='str', default='public'),
        table=dict(type='str', required=True),
        column=dict(type='str'),
        index=dict(type='str'),
        version_table=dict(type='str', default='alembic_version'),
        history_schema=dict(type='str', default='ledgermind_migrations'),
        run_id=dict(type='str'),
        kind=dict(type='str', choices=['migrate', 'rollback']),
        record=dict(type='dict', default={}),
        details=dict(type='dict', default={}),
        stale_after=dict(type='int', default=900),
        take_over=dict(type='str'),
        pre_migration_type=dict(type='str'),
    )
    return spec


# ---------------------------------------------------------------------------------------------
# Pure helpers
# ---------------------------------------------------------------------------------------------

def jsonable_row(row: dict[str, t.Any] | None) -> dict[str, t.Any]:
    """A database row as module output: timestamps as ISO 8601, numerics as ints or floats."""
    out: dict[str, t.Any] = {}
    for key, value in (row or {}).items():
        if isinstance(value, (datetime.datetime, datetime.date)):
            value = value.isoformat()
        elif isinstance(value, decimal.Decimal):
            value = int(value) if value == value.to_integral_value() else float(value)
        out[key] = value
    return out


def record_problems(record: dict[str, t.Any]) -> list[str]:
    """Unknown fields or statuses in O(record), for a clear refusal."""
    problems = [f'unknown record field {name!r} (known: {", ".join(RUN_FIELDS)})'
                for name in record if name not in RUN_FIELDS]
    status = record.get('status')
    if status is not None and status not in RUN_STATUSES:
        problems.append(f'unknown status {status!r} (known: {", ".join(RUN_STATUSES)})')
    return problems


def judge_running(row: dict[str, t.Any], sessions: list[dict[str, t.Any]], stale_after: int,
                  take_over: str | None) -> tuple[bool, str]:
    """Whether a ``running`` run is still at work, and why we think so."""
    age = float(row.get('heartbeat_age_seconds') or 0)
    if sessions:
        names = '; '.join('pid {} {} ({}, {:.0f} s): {}'.format(
            s['pid'], s['application_name'], s['state'], float(s['seconds'] or 0),
            ' '.join((s['query'] or '').split())[:120]) for s in sessions[:3])
        return True, f'our sessions are still active on the database: {names}'
    if take_over and take_over == row.get('run_id'):
        return False, f'taken over as asked (take_over={take_over}); last heartbeat {age:.0f} s ago'
    if age < stale_after:
        return True, f'its last heartbeat was {age:.0f} s ago (taken for dead after {stale_after} s)'
    return False, f'no session of ours is active and its last heartbeat was {age:.0f} s ago (> {stale_after} s)'


def holder_message(row: dict[str, t.Any], why: str, table: str) -> str:
    """Who holds the table, for the refusal of a second run."""
    return ('Another run is at work on {table}: run {run_id} ({kind}, phase {phase}) by {operator} from {controller}, '
            'started {started}; {why}. Nothing was changed. Wait for it to finish; if its controller was killed, '
            're-run once its sessions are gone with -e ledgermind_take_over_run={run_id}.').format(
        table=table, run_id=row.get('run_id'), kind=row.get('kind'), phase=row.get('phase') or '?',
        operator=row.get('operator') or 'unknown', controller=row.get('controller') or 'unknown host',
        started=row.get('started_at'), why=why)


# ---------------------------------------------------------------------------------------------
# Database steps
# ---------------------------------------------------------------------------------------------

def read_state(cur: t.Any, params: dict[str, t.Any], identity: dict[str, t.Any]) -> dict[str, t.Any]:
    state: dict[str, t.Any] = dict(column_type=identity.get('column_type'),
                                   revision=current_alembic_revision(cur.connection, params['version_table']),
                                   index=params['index'], index_exists=None, index_valid=None)
    if params['index']:
        cur.execute(INDEX_STATE_SQL, dict(schema=params['schema'], name=params['index']))
        row = cur.fetchone()
        state.update(index_exists=row is not None, index_valid=bool(row and row['valid']))
    return state


def read_history(cur: t.Any, params: dict[str, t.Any], identity: dict[str, t.Any]) -> dict[str, t.Any]:
    """The table's recent runs, the one at work (if any) and the newest usable backup."""
    hs = params['history_schema']
    cur.execute(HISTORY_PRESENT_SQL, dict(hs=hs))
    if not cur.fetchone()['present']:
        return dict(history_present=False, runs=[], running={}, last_backup={})
    cur.execute(history_sql(RUNS_SQL, hs), dict(identity, limit=1000))
    rows = [dict(r) for r in cur.fetchall()]
    running = next((r for r in rows if r['status'] == 'running' and r['run_id'] != params['run_id']), None)
    backups = [r for r in rows if r['kind'] == 'migrate' and r['backup_path']
               and (not params['pre_migration_type'] or r['type_before'] == params['pre_migration_type'])]
    result: dict[str, t.Any] = dict(history_present=True, runs=[jsonable_row(r) for r in rows[:RECENT_RUNS]],
                                    running={}, last_backup=jsonable_row(backups[0]) if backups else {})
    if running:
        cur.execute(OUR_SESSIONS_SQL, {})
        sessions = [dict(s) for s in cur.fetchall()]
        alive, why = judge_running(running, sessions, params['stale_after'], params['take_over'])
        result['running'] = dict(jsonable_row(running), alive=alive, why=why,
                                 sessions=[jsonable_row(s) for s in sessions])
    return result


def inspect(module: AnsibleModule) -> dict[str, t.Any]:
    params = module.params
    relation = '{}.{}'.format(params['schema'], params['table'])
    conn = connect(module)
    try:
        with conn.cursor() as cur:
            identity = database_identity(cur, params['schema'], params['table'], params['column'],
                                         params['history_schema'])
            if identity['table_oid'] is None:
                fail(module, f'Table {relation} does not exist in database {identity["database"]}: check schema, '
                             'table and the database the connection points at.', identity=identity)
            found = dict(identity=identity, state=read_state(cur, params, identity))
            cur.execute(TABLE_WRITES_SQL, dict(table_oid=identity['table_oid']))
            found['table_writes'] = jsonable_row(cur.fetchone())
            found.update(read_history(cur, params, identity))
    except psycopg2.Error as e:
        fail_on_query_error(module, conn, e, relation)
    finally:
        close(conn)
    return found


def record_params(params: dict[str, t.Any]) -> dict[str, t.Any]:
    """Bind parameters of the update: the record's fields, details as JSON, the run id."""
    values = {name: (json.dumps(value) if name == 'fingerprint_sums' and value is not None else value)
              for name, value in params['record'].items()}
    return dict(values, details=json.dumps(params['details']), run_id=params['run_id'])


def write(module: AnsibleModule, found: dict[str, t.Any]) -> dict[str, t.Any]:
    """The step's writes, in one transaction serialised with other runs' starts."""
    params = module.params
    hs = params['history_schema']
    identity = found['identity']
    conn = connect_writable(module)
    result: dict[str, t.Any] = dict(interrupted={})
    try:
        with conn.cursor() as cur:
            cur.execute(HISTORY_LOCK_SQL)
            if params['step'] == 'start':
                cur.execute(HISTORY_COMPLETE_SQL, dict(hs=hs))
                if not cur.fetchone()['complete']:
                    for statement in HISTORY_DDL:
                        cur.execute(history_sql(statement, hs))
                cur.execute(history_sql(DATABASE_INSTANCE_SQL, hs))
                # Re-read under the lock: the uuid may be new, another run may have started meanwhile.
                identity = database_identity(cur, params['schema'], params['table'], params['column'], hs)
                history = read_history(cur, params, identity)
                running = history['running']
                if running and running['alive']:
                    conn.rollback()
                    fail(module, holder_message(running, running['why'], identity['schema'] + '.' + identity['table']),
                         running=running, identity=identity)
                if running:
                    cur.execute(history_sql(MARK_INTERRUPTED_SQL, hs),
                                dict(id=running['id'], run_id=params['run_id'], note=running['why']))
                    result['interrupted'] = dict(jsonable_row(cur.fetchone()), why=running['why'])
                record = params['record']
                cur.execute(history_sql(INSERT_RUN_SQL, hs), dict(
                    identity, run_id=params['run_id'], kind=params['kind'], mode=record.get('mode'),
                    operator=record.get('operator'), controller=record.get('controller') or socket.gethostname(),
                    # What a later restore from this run's backup discards is counted from here.
                    details=json.dumps(dict(params['details'], table_writes_at_start=found['table_writes']))))
                fields = [n for n in params['record'] if n not in ('mode', 'operator', 'controller')]
                if fields:
                    cur.execute(update_run_sql(hs, fields, finish=False), record_params(params))
                else:
                    cur.execute(history_sql(RUN_SQL, hs),
                                dict(run_id=params['run_id']))
            else:
                cur.execute(update_run_sql(hs, list(params['record']), finish=params['step'] == 'finish'),
                            record_params(params))
            row = cur.fetchone()
            if row is None:
                conn.rollback()
                cur.execute(history_sql(RUN_SQL, hs),
                            dict(run_id=params['run_id']))
                known = cur.fetchone()
                if known is not None:
                    fail(module, 'Run {} is recorded as {}{}: another run took it over, so this one stops here and '
                                 "writes nothing more. Check the table's state before going on.".format(
                                     params['run_id'], known['status'],
                                     ' by run ' + str(known['details'].get('interrupted_by'))
                                     if known['details'].get('interrupted_by') else ''),
                         identity=identity, record=jsonable_row(known))
                fail(module, 'No run {} is recorded in {}.run_history of database {}: start it first (step=start).'
                     .format(params['run_id'], hs, identity['database']), identity=identity)
        conn.commit()
    except psycopg2.Error as e:
        if getattr(e, 'pgcode', None) == '23505':  # unique_violation: a run started between our read and insert
            fail(module, 'Another run started on {}.{} at the same moment; nothing was changed. Re-run to see who '
                         'holds it.'.format(params['schema'], params['table']))
        if getattr(e, 'pgcode', None) == '42501':
            fail(module, 'The role may not keep the run record: it needs CREATE on the database (for schema {hs}) '
                         'or the schema created beforehand with rights to write in it. Nothing was changed. '
                         'Details: {err}'.format(hs=hs, err=' '.join(str(e).split())))
        fail_on_query_error(module, conn, e, f'{hs}.run_history')
    finally:
        close(conn)
    result.update(identity=identity, record=jsonable_row(row))
    return result


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_if=[('step', 'start', ('run_id', 'kind')), ('step', 'update', ('run_id',)),
                                        ('step', 'finish', ('run_id',))])
    params = module.params
    problems = record_problems(params['record'])
    if problems:
        fail(module, 'record: ' + '; '.join(problems) + '.')
    if params['stale_after'] < 0:
        fail(module, 'stale_after must be 0 or more seconds.')

    found = inspect(module)
    result: dict[str, t.Any] = dict(changed=False, interrupted={}, **found)
    step = params['step']
    if step == 'inspect':
        module.exit_json(**result)
    if step == 'start':
        running = found['running']
        if running and running['alive']:
            fail(module, holder_message(running, running['why'], '{}.{}'.format(params['schema'], params['table'])),
                 **{k: v for k, v in result.items() if k != 'changed'})
    elif not found['history_present'] and not module.check_mode:
        fail(module, 'No run history in database {} (schema {} is missing): start the run first (step=start).'
             .format(found['identity']['database'], params['history_schema']))
    if module.check_mode:
        result['record'] = dict(params['record'], run_id=params['run_id'], kind=params['kind'],
                                details=params['details'])
        result['changed'] = True
        module.exit_json(**result)
    result.update(write(module, found))
    result['changed'] = True
    module.exit_json(**result)


if __name__ == '__main__':
    main()
