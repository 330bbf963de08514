#!/usr/bin/python
# Copyright (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: pg_write_log
short_description: Log which rows an application writes to a table while a migration run is in progress
version_added: 0.1.0
description:
  - O(state=present) creates, when missing, the schema O(history_schema), its UNLOGGED table C(write_log) and a
    row trigger C(ledgermind_write_log) on O(schema).O(table), C(AFTER INSERT OR UPDATE OR DELETE FOR EACH ROW).
    For every row another session writes, the trigger appends the run id, the key, whether there was an old row,
    the two 64-bit hashes of the old row's fingerprint line (exactly the line
    M(ledgermind.migrations.pg_jsonb_integrity) hashes, C(key:value-as-jsonb)) and the writing transaction's id.
  - M(ledgermind.migrations.pg_jsonb_integrity) reads the log (its
    O(ledgermind.migrations.pg_jsonb_integrity#module:baseline) and
    O(ledgermind.migrations.pg_jsonb_integrity#module:write_log_run_id) options) to prove that the rows nobody
    wrote since the baseline kept their content, while the application keeps writing.
  - Install the log B(before) the baseline scan. Every write made after the baseline and not logged makes the
    proof fail; it never makes it pass.
  - Sessions with C(ledgermind.write_log) set to C(off) are not logged. The collection's own sessions set it.
  - The trigger keeps working on every connection, including ones that wrote before the change, when
    C(ALTER TABLE ... TYPE) converts the column (C(text[]) to C(jsonb) and back). It reads the column through the
    whole row, never through a plan cached with the old type. Its work per write is one row conversion, two hashes
    and one insert into an unlogged table without indexes.
  - O(state=absent) drops the trigger and deletes this run's entries, returning how many there were
    (RV(rows_logged)). The function, the log table and the schema stay, since an archive dumped while the
    trigger existed recreates it on restore, and that needs the function.
  - A trigger of another run that the run history records as running is never replaced or dropped; O(state=present)
    refuses and names the run. One of a finished or unknown run (for example brought back with its table by a
    restore from backup) is taken over by O(state=present) and removed by O(state=absent), with that run's entries.
author:
  - LedgerMind SRE (@ledgermind)
options:
  state:
    description:
      - V(present) installs the log for O(run_id); V(absent) removes it and this run's entries.
    type: str
    choices: [ present, absent ]
    default: present
  run_id:
    description:
      - The migration run the entries belong to (the run record's C(run_id)).
    type: str
    required: true
  table:
    description:
      - The table whose writes are logged, without schema.
    type: str
    required: true
  schema:
    description:
      - Schema of the table.
    type: str
    default: public
  column:
    description:
      - The column whose old values are hashed (C(text[]), any array, C(json) or C(jsonb)).
      - Required with O(state=present).
    type: str
  key:
    description:
      - The column identifying a row, as in M(ledgermind.migrations.pg_jsonb_integrity)'s C(key_column).
      - Default is the table's primary key, which must then be a single column.
      - It must be C(NOT NULL) and alone in a unique index, so that the log's keys name one row each.
    type: str
  history_schema:
    description:
      - Schema holding C(write_log) and the trigger function; created when missing.
    type: str
    default: ledgermind_migrations
  lock_timeout_ms:
    description:
      - Longest time one try waits for the table's lock (C(CREATE TRIGGER) takes SHARE ROW EXCLUSIVE, which writers
        queue behind; C(DROP TRIGGER) ACCESS EXCLUSIVE, which readers queue behind too). No query waits longer
        (400 ms, below pgroll's 500, so that a queued query's whole wait stays within half a second).
      - When all O(retries) tries gave up, the failure names the sessions holding the table.
    type: int
    default: 400
  # retries, retry_delay, max_retry_delay: ledgermind.migrations.lock_budget documents them; their defaults here.
  retries:
    default: 20
  retry_delay:
    default: 0.25
  max_retry_delay:
    default: 1.0
extends_documentation_fragment:
  - ledgermind.migrations.connection
  - ledgermind.migrations.connection.lock_timeout
  - ledgermind.migrations.lock_budget
  - ledgermind.migrations.lock_budget.retries
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads the table, the trigger and the log in a read-only transaction and returns the RV(actions) it
      would take (and, with O(state=absent), the RV(rows_logged) it would delete); nothing is created or dropped.
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - C(CREATE TRIGGER) waits for transactions writing to the table, and C(DROP TRIGGER) for every transaction
    using it, each try for at most O(lock_timeout_ms). Giving up names the sessions holding the table.
  - The trigger function is C(SECURITY DEFINER), owned by the role that runs this module, with a fixed
    C(search_path). The application's roles need no rights on the log. The module's role must own the table
    (or have the C(TRIGGER) privilege on it) and be able to create the history schema, or write in it.
  - The log is UNLOGGED. A server crash empties it, and the proof then fails for every write it lost.
  - C(TRUNCATE) and sessions with C(session_replication_role = replica) fire no row trigger. Their writes are not
    logged.
requirements:
  - psycopg2 (C(psycopg2-binary) from PyPI is enough) on the host that runs the module
seealso:
  - module: ledgermind.migrations.pg_jsonb_integrity
  - module: ledgermind.migrations.pg_run_record
'''

EXAMPLES = r'''
- name: Log the application's writes to ml_features for this run (before the pre-flight scan)
  ledgermind.migrations.pg_write_log:
    database_url: "{{ lookup('ansible.builtin.env', 'DATABASE_URL') }}"
    table: ml_features
    column: tokens
    run_id: "{{ ledgermind_run_id }}"

- name: Remove it once the run is over
  ledgermind.migrations.pg_write_log:
    database_url: "{{ lookup('ansible.builtin.env', 'DATABASE_URL') }}"
    table: ml_features
    run_id: "{{ ledgermind_run_id }}"
    state: absent
  register: write_log_removed
'''

RETURN = r'''
actions:
  description: What the module did (in check mode, would do), in order; empty when nothing needed doing.
  returned: always
  type: list
  elements: str
  sample: ["create schema ledgermind_migrations", "create table ledgermind_migrations.write_log",
           "create function ledgermind_migrations.write_log_3f1c0e9b8f0b4c1e",
           "create trigger ledgermind_write_log on public.ml_features"]
trigger:
  description: The trigger's name.
  returned: always
  type: str
  sample: ledgermind_write_log
function:
  description: The trigger function, schema-qualified.
  returned: always
  type: str
  sample: ledgermind_migrations.write_log_3f1c0e9b8f0b4c1e
write_log:
  description: The log table, schema-qualified.
  returned: always
  type: str
  sample: ledgermind_migrations.write_log
table:
  description: The logged table, schema-qualified.
  returned: always
  type: str
  sample: public.ml_features
run_id:
  description: O(run_id).
  returned: always
  type: str
  sample: 20260101T120000Z-migrate
key_column:
  description: The key column logged (O(key) or the primary key).
  returned: when O(state=present)
  type: str
  sample: txn_id
column:
  description: The column whose old values are hashed.
  returned: when O(state=present)
  type: str
  sample: tokens
rows_logged:
  description: How many entries the log held for O(run_id), and for the finished run whose trigger went too (deleted,
    except in check mode).
  returned: when O(state=absent)
  type: int
  sample: 1523
other_run_id:
  description:
    - The run a trigger found on the table belongs to, when it is not O(run_id). Left in place while that run is
      running, removed otherwise.
  returned: when O(state=absent) and such a trigger exists
  type: str
  sample: 20251231T080000Z-migrate
replaced_run_id:
  description: The finished run whose trigger O(state=present) took over.
  returned: when O(state=present) found such a trigger
  type: str
'''

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
    COLUMN_SQL,
    HISTORY_LOCK_SQL,
    HISTORY_PRESENT_SQL,
    LOCK_HOLDERS_SQL,
    RELATION_SQL,
    RUN_STATUS_SQL,
    WRITE_LOG_COLUMNS,
    WRITE_LOG_COUNT_SQL,
    WRITE_LOG_DDL,
    WRITE_LOG_DELETE_SQL,
    WRITE_LOG_FUNCTION_SQL,
    WRITE_LOG_TABLE_SQL,
    WRITE_LOG_TGTYPE,
    WRITE_LOG_TRIGGER,
    WRITE_LOG_TRIGGER_SQL,
    create_write_log_function_sql,
    create_write_log_trigger_sql,
    drop_write_log_trigger_sql,
    history_sql,
    lock_holders_params,
    relation_problem,
    trigger_args,
    write_log_function_body,
    write_log_function_name,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._retry import (
    lock_budget_message,
    lock_busy,
    run_under_lock_budget,
)

SQLSTATE_INSUFFICIENT_PRIVILEGE = '42501'


def argument_spec() -> dict[str, t.Any]:
    spec = postgres_connection_argument_spec()
    spec.update(
        state=dict(type='str', default='present', choices=['present', 'absent']),
        run_id=dict(type='str', required=True),
        table=dict(type='str', required=True),
        schema=dict(type='str', default='public'),
        column=dict(type='str'),
        key=dict(type='str', no_log=False),
        history_schema=dict(type='str', default='ledgermind_migrations'),
        lock_timeout_ms=dict(type='int', default=400),
        retries=dict(type='int', default=20),
        retry_delay=dict(type='float', default=0.25),
        max_retry_delay=dict(type='float', default=1.0),
    )
    return spec


# ---------------------------------------------------------------------------------------------
# Pure decisions (unit-tested)
# ---------------------------------------------------------------------------------------------

def expected_log_columns() -> list[str]:
    return [f'{name} {kind}' for name, kind in WRITE_LOG_COLUMNS]


def trigger_matches(trigger: dict[str, t.Any], history_schema: str, function: str, run_id: str,
                    column: str) -> bool:
    """Whether an existing write-log trigger is exactly the one wanted (function, arguments, events, enabled)."""
    return (trigger['function_schema'] == history_schema and trigger['function_name'] == function
            and trigger_args(trigger['args']) == [run_id, column] and trigger['tgtype'] == WRITE_LOG_TGTYPE
            and trigger['enabled'] == 'O' and bool(trigger['has_when']))


def present_actions(found: dict[str, t.Any], wanted: dict[str, t.Any]) -> list[str]:
    """The steps ``state=present`` takes, in order, from what is in the database.

    ``found``: ``schema_exists``, ``log_exists``, ``function`` (row of WRITE_LOG_FUNCTION_SQL or None),
    ``trigger`` (row of WRITE_LOG_TRIGGER_SQL or None). ``wanted``: ``history_schema``, ``function``, ``body``,
    ``run_id``, ``column``. A trigger of another run is the caller's to refuse before this is asked.
    """
    actions = []
    if not found['schema_exists']:
        actions.append('create_schema')
    if not found['log_exists']:
        actions.append('create_table')
    function = found['function']
    if function is None:
        actions.append('create_function')
    elif function['body'] != wanted['body'] or not function['security_definer']:
        actions.append('replace_function')
    trigger = found['trigger']
    if trigger is None:
        actions.append('create_trigger')
    elif not trigger_matches(trigger, wanted['history_schema'], wanted['function'], wanted['run_id'],
                             wanted['column']):
        actions.append('replace_trigger')
    return actions


def absent_actions(found: dict[str, t.Any], run_id: str, rows_logged: int, other_active: bool = True) -> list[str]:
    """The steps ``state=absent`` takes: the trigger when it is this run's, or a finished run's (a restore from
    backup brings back the trigger the archive was dumped with), then the entries.

    The function stays: an archive dumped while the trigger existed recreates the trigger on restore, and
    that restore needs the function.
    """
    actions = []
    trigger = found['trigger']
    ours = trigger is not None and (trigger_args(trigger['args']) or [None])[0] == run_id
    if trigger is not None and (ours or not other_active):
        actions.append('drop_trigger')
    if rows_logged:
        actions.append('delete_entries')
    return actions


def describe(action: str, names: dict[str, str], rows_logged: int = 0) -> str:
    """One action as the result lists it."""
    return {
        'create_schema': 'create schema {history_schema}',
        'create_table': 'create table {write_log}',
        'create_function': 'create function {function}',
        'replace_function': 'replace function {function}',
        'create_trigger': 'create trigger {trigger} on {table}',
        'replace_trigger': 'replace trigger {trigger} on {table}',
        'drop_trigger': 'drop trigger {trigger} on {table}',
        'delete_entries': 'delete {rows} entries of run {run_id} from {write_log}',
    }[action].format(rows=rows_logged, **names)


# ---------------------------------------------------------------------------------------------
# Database edge
# ---------------------------------------------------------------------------------------------

def read_found(cur: t.Any, params: dict[str, t.Any], relid: int | None, function: str) -> dict[str, t.Any]:
    hs = params['history_schema']
    cur.execute(WRITE_LOG_TABLE_SQL, dict(hs=hs))
    log = dict(cur.fetchone())
    trigger = None
    if relid is not None:
        cur.execute(WRITE_LOG_TRIGGER_SQL, dict(relid=relid, trigger=WRITE_LOG_TRIGGER))
        row = cur.fetchone()
        trigger = dict(row) if row else None
    cur.execute(WRITE_LOG_FUNCTION_SQL, dict(hs=hs, function=function))
    row = cur.fetchone()
    return dict(schema_exists=log['schema_exists'], log_exists=log['log_exists'], log_columns=log['columns'],
                trigger=trigger, function=dict(row) if row else None)


def find_table(module: AnsibleModule, cur: t.Any, required: bool) -> int | None:
    """The table's oid; a missing table fails ``state=present`` and is nothing to remove for ``absent``."""
    p = module.params
    cur.execute(RELATION_SQL, dict(schema=p['schema'], table=p['table']))
    row = cur.fetchone()
    problem = relation_problem(row, p['schema'], p['table'])
    if problem:
        if required:
            fail(module, problem)
        return None
    if row['relkind'] not in ('r', 'p'):
        fail(module, '{}.{} is not a table (relkind {}); the write log needs a table\'s row triggers.'.format(
            p['schema'], p['table'], row['relkind']))
    return int(row['relid'])


def key_column(module: AnsibleModule, cur: t.Any, relid: int) -> str:
    """O(key) or the single-column primary key, checked to be NOT NULL and unique on its own."""
    p = module.params
    return find_key(module, cur, relid, '{}.{}'.format(p['schema'], p['table']), p['key'],
                    'the write log names rows by one key column', 'the write log and the fingerprint name rows by it')


def check_column(module: AnsibleModule, cur: t.Any, relid: int) -> None:
    p = module.params
    cur.execute(COLUMN_SQL, dict(schema=p['schema'], table=p['table'], relid=relid, column=p['column']))
    if cur.fetchone() is None:
        fail(module, 'Column {}.{}.{} does not exist.'.format(p['schema'], p['table'], p['column']))


def check_log_table(module: AnsibleModule, found: dict[str, t.Any], names: dict[str, str]) -> None:
    if found['log_exists'] and list(found['log_columns']) != expected_log_columns():
        fail(module, '{} exists but is not a write log (columns: {}; expected: {}). Drop or rename it, or choose '
                     'another history_schema.'.format(names['write_log'], ', '.join(found['log_columns']),
                                                      ', '.join(expected_log_columns())))


def other_run(found: dict[str, t.Any], run_id: str) -> str | None:
    """The run id of a write-log trigger on the table that belongs to another run, else None."""
    trigger = found['trigger']
    if trigger is None:
        return None
    owner = (trigger_args(trigger['args']) or [''])[0]
    return owner if owner != run_id else None


def execute_present(cur: t.Any, actions: list[str], params: dict[str, t.Any], function: str, body: str) -> None:
    hs = params['history_schema']
    if 'create_schema' in actions or 'create_table' in actions:
        for statement in WRITE_LOG_DDL:
            cur.execute(history_sql(statement, hs))
    if 'create_function' in actions or 'replace_function' in actions:
        cur.execute(create_write_log_function_sql(hs, function), dict(body=body))
    if 'replace_trigger' in actions:
        cur.execute(drop_write_log_trigger_sql(params['schema'], params['table']))
    if 'create_trigger' in actions or 'replace_trigger' in actions:
        cur.execute(create_write_log_trigger_sql(params['schema'], params['table'], hs, function,
                                                 params['run_id'], params['column']))


def run_is_active(cur: t.Any, history_schema: str, run_id: str) -> bool:
    """Whether the run history records ``run_id`` as running; a run it does not know is over."""
    cur.execute(HISTORY_PRESENT_SQL, dict(hs=history_schema))
    if not cur.fetchone()['present']:
        return False
    cur.execute(history_sql(RUN_STATUS_SQL, history_schema), dict(run_id=run_id))
    row = cur.fetchone()
    return bool(row and row['status'] == 'running')


def execute_absent(cur: t.Any, actions: list[str], params: dict[str, t.Any], runs: list[str]) -> None:
    hs = params['history_schema']
    if 'drop_trigger' in actions:
        cur.execute(drop_write_log_trigger_sql(params['schema'], params['table']))
    if 'delete_entries' in actions:
        for run_id in runs:
            cur.execute(history_sql(WRITE_LOG_DELETE_SQL, hs), dict(run_id=run_id))


def run(module: AnsibleModule) -> dict[str, t.Any]:
    """``run_once`` under the lock budget: each try waits at most O(lock_timeout_ms) for the table's lock (so
    no query queues behind it for longer), then backs off and tries again, O(retries) times in all; giving up
    names the sessions holding the table."""
    p = module.params
    return run_under_lock_budget(lambda _number: run_once(module), p['retries'], p['retry_delay'],
                                 p['max_retry_delay'], lambda _error, tries: give_up(module, tries))


def give_up(module: AnsibleModule, tries: int) -> t.NoReturn:
    p = module.params
    conn = connect_writable(module)
    try:
        holders = lock_holders(conn, LOCK_HOLDERS_SQL, lock_holders_params(p['schema'], p['table']))
    finally:
        close(conn)
    doing = 'installing the write log on' if p['state'] == 'present' else 'removing the write log from'
    fail(module, lock_budget_message('{}.{}'.format(p['schema'], p['table']), doing, tries, p['lock_timeout_ms'],
                                     holders), tries=tries)
    raise AssertionError('unreachable')  # fail() exits


def run_once(module: AnsibleModule) -> dict[str, t.Any]:
    p = module.params
    present = p['state'] == 'present'
    hs = p['history_schema']
    function = write_log_function_name(p['schema'], p['table'])
    names = dict(history_schema=hs, write_log=f'{hs}.write_log', function=f'{hs}.{function}',
                 trigger=WRITE_LOG_TRIGGER, table='{}.{}'.format(p['schema'], p['table']), run_id=p['run_id'])
    result: dict[str, t.Any] = dict(changed=False, actions=[], trigger=WRITE_LOG_TRIGGER, function=names['function'],
                                    write_log=names['write_log'], table=names['table'], run_id=p['run_id'])
    actions: list[str] = []
    conn = connect_writable(module, settings=dict(lock_timeout='{}ms'.format(p['lock_timeout_ms'])))
    try:
        if module.check_mode:
            conn.set_session(readonly=True)
        with conn.cursor() as cur:
            if not module.check_mode:
                # Serialises with pg_run_record's creation of the same schema.
                cur.execute(HISTORY_LOCK_SQL)
            relid = find_table(module, cur, required=present)
            found = read_found(cur, p, relid, function)
            check_log_table(module, found, names)
            other = other_run(found, p['run_id'])
            other_active = other is not None and run_is_active(cur, hs, other)
            if present:
                if relid is None:  # not reached: find_table failed
                    raise AssertionError('no table')
                check_column(module, cur, relid)
                key = key_column(module, cur, relid)
                if other is not None and other_active:
                    fail(module, f"{names['table']} already has trigger {WRITE_LOG_TRIGGER} for run {other}. "
                                 f'One run logs a table at a time: finish that run, or remove its log '
                                 f'(state=absent, run_id={other}), then retry. Nothing was changed.',
                         other_run_id=other, **{k: v for k, v in result.items() if k != 'changed'})
                body = write_log_function_body(hs, key).as_string(cur)
                actions = present_actions(found, dict(history_schema=hs, function=function, body=body,
                                                      run_id=p['run_id'], column=p['column']))
                result.update(key_column=key, column=p['column'])
                if other is not None:
                    # A finished run's trigger, e.g. restored with its table from a backup: taken over.
                    result['replaced_run_id'] = other
                if actions and not module.check_mode:
                    execute_present(cur, actions, p, function, body)
                    if other is not None and found['log_exists']:
                        cur.execute(history_sql(WRITE_LOG_DELETE_SQL, hs), dict(run_id=other))
            else:
                rows = 0
                # This run's entries, and those of a finished run whose trigger goes too.
                runs = [p['run_id']] + ([other] if other is not None and not other_active else [])
                if found['log_exists']:
                    for run_id in runs:
                        cur.execute(history_sql(WRITE_LOG_COUNT_SQL, hs), dict(run_id=run_id))
                        rows += int(cur.fetchone()['rows'])
                actions = absent_actions(found, p['run_id'], rows, other_active)
                result['rows_logged'] = rows
                if other is not None:
                    result['other_run_id'] = other
                    if other_active:
                        module.warn(f"Trigger {WRITE_LOG_TRIGGER} on {names['table']} belongs to run {other}, "
                                    'which is still running; it was left in place.')
                if actions and not module.check_mode:
                    execute_absent(cur, actions, p, runs)
        if module.check_mode:
            conn.rollback()
        else:
            conn.commit()
    except psycopg2.Error as e:
        if lock_busy(e):
            raise
        if getattr(e, 'pgcode', None) == SQLSTATE_INSUFFICIENT_PRIVILEGE:
            fail(module, 'Permission denied while {} the write log on {}: the role must own the table (or hold its '
                         'TRIGGER privilege) and be able to create schema {} (CREATE on the database) or write in it. '
                         'Nothing was changed. Server said: {}'.format(
                             'installing' if present else 'removing', names['table'], hs, ' '.join(str(e).split())))
        fail_on_query_error(module, conn, e, names['table'], LOCK_HOLDERS_SQL,
                            lock_holders_params(p['schema'], p['table']))
    finally:
        close(conn)
    result.update(changed=bool(actions), actions=[describe(a, names, result.get('rows_logged', 0)) for a in actions])
    return result


def check_params(module: AnsibleModule) -> None:
    if module.params['retries'] < 1 or module.params['lock_timeout_ms'] < 1:
        fail(module, 'retries and lock_timeout_ms must be at least 1.')


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_if=[('state', 'present', ('column',))])
    check_params(module)
    module.exit_json(**run(module))


if __name__ == '__main__':
    main()
