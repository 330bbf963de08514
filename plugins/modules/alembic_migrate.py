#!/usr/bin/python
# Copyright (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: alembic_migrate
short_description: Move an application's Alembic project to an exact revision under a lock budget
description:
  - Runs the application's own C(alembic upgrade REVISION) or C(alembic downgrade REVISION) (the direction
    follows from the current revision), never C(head) or C(-1).
  - Every try runs with a lock budget (C(lock_timeout), given through C(PGOPTIONS) so the application's C(env.py)
    stays untouched). A migration waiting for a table lock gives up after O(lock_timeout_ms) instead of holding
    a queue of blocked queries behind it, then retries with a doubling back-off.
  - While Alembic runs, lock waits on O(monitor_table) are sampled from a second connection (blocked sessions,
    longest wait, blocking pids) and returned for the report.
  - Already at the revision, nothing runs and nothing changes. An index named in O(repair_invalid_indexes)
    that an earlier failed run left INVALID is rebuilt with C(REINDEX INDEX CONCURRENTLY).
  - In check mode the module reads the current revision, and shows the SQL Alembic would run (C(--sql)).
  - Alembic's sessions run with settings the module chooses (O(lock_timeout_ms), O(statement_timeout_ms),
    O(idle_in_transaction_timeout_ms)), given as connection options, which beat whatever the role or database
    sets by default (C(ALTER ROLE ... SET statement_timeout)).
  - Whether anything changed is read from the database, not from Alembic's exit, comparing the state before and
    after (the revision, and the type of O(state_column) and the presence and validity of O(state_index) when given).
    A failed move that changed the schema is returned as RV(partial), with both states in the message.
version_added: 0.1.0
author:
  - LedgerMind SRE (@ledgermind)
extends_documentation_fragment:
  - ledgermind.migrations.connection
  - ledgermind.migrations.lock_budget
  - ledgermind.migrations.lock_budget.retries
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads the current revision and returns the SQL Alembic would run; runs nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  revision:
    description: The exact revision to reach, for example C(502d44cd70ab) or C(20251109_add_user_name_picture).
    type: str
    required: true
  project_dir:
    description: Directory of the Alembic project (where C(alembic.ini) is); Alembic runs from there.
    type: path
    required: true
  config:
    description: The Alembic configuration file; relative paths are taken from O(project_dir).
    type: path
    default: alembic.ini
  venv:
    description: The application's virtualenv; its C(bin/alembic) is used unless O(alembic_executable) is set.
    type: path
  alembic_executable:
    description: The C(alembic) command to run. Defaults to O(venv)C(/bin/alembic), else C(alembic) on the PATH.
    type: path
  database_url_env:
    description: Environment variable the application's C(env.py) reads its database URL from.
    type: str
    default: DATABASE_URL
  extra_env:
    description: Extra environment variables for Alembic.
    type: dict
    default: {}
  lock_timeout_ms:
    description:
      - Longest time one try may wait for a lock before PostgreSQL cancels it. Every query arriving meanwhile queues
        behind the waiting ALTER, so this is also the longest any of them waits for it; short tries and more of
        them (O(retries)) keep the application answering.
      - The module's one lock budget; its own queries (the current revision, the watched state) wait for a lock
        at most this long too.
    type: int
    default: 1000
  statement_timeout_ms:
    description: Longest time one statement of Alembic's may run; C(0) lets it run as long as it needs.
    type: int
    default: 0
  idle_in_transaction_timeout_ms:
    description:
      - Ends an Alembic session left idle inside a transaction this long (for example by a killed controller),
        so its locks do not outlive it. C(0) disables it.
    type: int
    default: 60000
  state_column:
    description:
      - A column of O(monitor_table) (required with it) whose type is part of the state read before and after the move.
    type: str
  state_index:
    description: An index in O(monitor_schema) whose presence and validity are part of the state.
    type: str
  assume_revision:
    description:
      - The revision the schema already is at although Alembic's version table says otherwise, for example after
        an upgrade that changed the column and then failed before Alembic recorded it (a half-applied upgrade).
      - When the version table says anything else than O(assume_revision), it is first set to it with
        C(alembic stamp), so that the move runs from what the schema really is. Only the caller can know this;
        the module never guesses it.
    type: str
  # retries, retry_delay, max_retry_delay: ledgermind.migrations.lock_budget documents them; their defaults here.
  retries:
    default: 10
  retry_delay:
    default: 2.0
  max_retry_delay:
    default: 30.0
  monitor_table:
    description:
      - Table whose lock waits are sampled while Alembic runs, and whose O(state_column) is watched.
      - Unset, no lock waits are sampled (RV(lock_waits) is empty).
    type: str
  monitor_schema:
    description: Schema of O(monitor_table).
    type: str
    default: public
  sample_interval:
    description: Seconds between two lock-wait samples.
    type: float
    default: 0.2
  repair_invalid_indexes:
    description: Indexes the target revision creates concurrently; when one exists but is INVALID it is rebuilt.
    type: list
    elements: str
    default: []
  allowed_current:
    description:
      - Revisions the database may be at before the move (C(base) for an empty history). t.Any other current
        revision is refused before anything runs. Empty means any revision related to O(revision).
    type: list
    elements: str
    default: []
  version_table:
    description: Alembic's version table.
    type: str
    default: alembic_version
  show_sql:
    description:
      - In check mode, also render the SQL Alembic would run (C(alembic upgrade FROM:TO --sql)), which costs one
        more Alembic run. Set false when only the current and pending revisions are wanted.
    type: bool
    default: true
notes:
  - Alembic's own C(env.py) must read the database URL from O(database_url_env); the module builds that URL from
    the connection options and passes it in the environment only, never on a command line.
  - The module's own queries (current revision, INVALID indexes) run in a READ ONLY transaction; the changes are
    made by Alembic in its own transactions, and by C(REINDEX INDEX CONCURRENTLY) outside any transaction.
  - O(query_timeout) applies to the module's own queries; O(lock_timeout_ms) to Alembic's tries and the module's own
    queries alike.
requirements:
  - psycopg2
'''

EXAMPLES = r'''
- name: Upgrade to exactly 502d44cd70ab with a 3 s lock budget per try
  ledgermind.migrations.alembic_migrate:
    database_url: "{{ ledgermind_db | ledgermind.migrations.libpq_url }}"
    project_dir: /srv/ledgermind/apps/backend
    venv: /srv/ledgermind/apps/backend/.venv
    revision: 502d44cd70ab
    allowed_current: [20251109_add_user_name_picture]
    repair_invalid_indexes: [ix_ml_features_tokens_gin]
  register: migration

- name: Roll back to the exact previous revision
  ledgermind.migrations.alembic_migrate:
    database_url: "{{ ledgermind_db | ledgermind.migrations.libpq_url }}"
    project_dir: /srv/ledgermind/apps/backend
    venv: /srv/ledgermind/apps/backend/.venv
    revision: 20251109_add_user_name_picture
'''

RETURN = r'''
current_before:
  description: Revision before the module ran (C(base) when none).
  returned: always
  type: str
  sample: 20251109_add_user_name_picture
current_after:
  description: Revision after the module ran (unchanged in check mode).
  returned: always
  type: str
  sample: 502d44cd70ab
direction:
  description: C(upgrade), C(downgrade), or C(none) when already at the revision.
  returned: always
  type: str
pending:
  description: Revisions that were (or in check mode would be) applied or undone, in order.
  returned: always
  type: list
  elements: str
known_revisions:
  description: Every revision Alembic's history lists.
  returned: always
  type: list
  elements: str
output:
  description: The "Running upgrade/downgrade" lines Alembic printed.
  returned: always
  type: list
  elements: str
  sample: ["Running upgrade 20251109_add_user_name_picture -> 502d44cd70ab, convert_ml_features_tokens_to_jsonb"]
attempts:
  description: One entry per try with C(rc), C(duration_seconds), C(lock_timeout) and C(error).
  returned: always
  type: list
  elements: dict
duration_seconds:
  description: Time spent running Alembic, back-off waits included.
  returned: always
  type: float
lock_waits:
  description:
    - Summary of lock waits on the monitored table while Alembic ran. C(max_blocked_sessions) and
      C(longest_wait_seconds) are about other sessions queued behind the migration;
      C(migration_longest_wait_seconds) and C(blocking_pids) about what the migration itself waited for.
  returned: always
  type: dict
repaired_indexes:
  description: Indexes rebuilt because they were INVALID.
  returned: always
  type: list
  elements: str
state_before:
  description: The state before the move, read from the database.
  returned: always
  type: dict
  sample: {revision: 20251109_add_user_name_picture, column_type: "text[]", index_exists: false, index_valid: false}
state_after:
  description: The state after the move (the same as RV(state_before) in check mode).
  returned: always
  type: dict
partial:
  description: The move failed after changing the state (a half-applied migration).
  returned: always
  type: bool
stamped:
  description: The revision the version table was stamped to first (O(assume_revision)), else empty.
  returned: always
  type: str
sql:
  description: In check mode, the SQL Alembic would run (C(alembic upgrade FROM:TO --sql)).
  returned: check mode, when a move is pending and O(show_sql) is true
  type: str
'''

import contextlib
import os
import shutil
import subprocess
import time
import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ledgermind.migrations.plugins.module_utils._alembic import (
    BASE,
    is_retryable,
    last_error_line,
    parse_history,
    running_lines,
    session_options,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._connection import (
    build_connect_kwargs,
    close,
    connect,
    fail,
    fail_on_query_error,
    postgres_connection_argument_spec,
    with_session_options,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._libpq import LibpqSettingsError, to_url
from ansible_collections.ledgermind.migrations.plugins.module_utils._lock_monitor import LockMonitor
from ansible_collections.ledgermind.migrations.plugins.module_utils._queries import (
    COLUMN_TYPE_SQL,
    INDEX_STATE_SQL,
    LOCK_HOLDERS_SQL,
    current_alembic_revision,
    invalid_indexes,
    lock_holders_params,
    reindex_concurrently,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._retry import LockBusy, run_under_lock_budget

# Lets the lock monitor tell the migration's own session from the ones queued behind it.
APPLICATION_NAME = 'ledgermind-alembic-migrate'


class Alembic:
    """Runs the application's Alembic with the database URL and lock budget in its environment."""

    def __init__(self, module: AnsibleModule, url: str) -> None:
        params = module.params
        self.module = module
        self.cwd = params['project_dir']
        self.config = params['config']
        executable = params['alembic_executable']
        if not executable and params['venv']:
            executable = os.path.join(params['venv'], 'bin', 'alembic')
        executable = executable or shutil.which('alembic')
        if not executable or not os.access(executable, os.X_OK):
            fail(module, "Alembic not found (looked for %s). Set venv to the application's virtualenv "
                         "or alembic_executable to its alembic command." % (executable or 'alembic on PATH'))
        if not os.path.isdir(self.cwd):
            fail(module, f'project_dir {self.cwd} does not exist: point it at the directory holding alembic.ini.')
        config_path = os.path.join(self.cwd, self.config)
        if not os.path.isfile(config_path):
            fail(module, f'Alembic configuration {config_path} not found: set config (relative to project_dir).')
        self.executable = executable
        self.env = dict(os.environ)
        self.env.update({str(k): str(v) for k, v in params['extra_env'].items()})
        self.env[params['database_url_env']] = url
        self.env['PGAPPNAME'] = APPLICATION_NAME
        # Connection options beat the role's and database's defaults. Our own writes stay out of the write log.
        self.env['PGOPTIONS'] = session_options({
            'lock_timeout': params['lock_timeout_ms'],
            'statement_timeout': params['statement_timeout_ms'],
            'idle_in_transaction_session_timeout': params['idle_in_transaction_timeout_ms'],
            'ledgermind.write_log': 'off',
        }, self.env.get('PGOPTIONS', ''))

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """One Alembic command through ``module.run_command``, arguments taken literally (no ``$VAR`` expansion)."""
        argv = [self.executable, '-c', self.config, *args]
        try:
            rc, out, err = self.module.run_command(argv, cwd=self.cwd, environ_update=self.env,
                                                   expand_user_and_vars=False, errors='surrogate_or_replace',
                                                   handle_exceptions=False)
        except OSError as exc:
            fail(self.module, f'cannot run {self.executable}: {exc}')
        return subprocess.CompletedProcess(argv, rc, out, err)

    def must(self, *args: str) -> str:
        result = self.run(*args)
        if result.returncode != 0:
            # fail() strips passwords, from the URL or given alone, out of the message.
            fail(self.module, 'alembic {} failed: {}\n{}'.format(
                ' '.join(args), last_error_line(result), result.stderr[-2000:]))
        return result.stdout


def move(module: AnsibleModule, alembic: Alembic, direction: str, connect_monitor: t.Any) -> dict[str, t.Any]:
    """Runs upgrade/downgrade under the lock budget (``run_under_lock_budget``: a try that timed out waiting for a
    lock backs off and tries again), sampling lock waits meanwhile. Every try is kept; the last one decides."""
    params = module.params
    attempts: list[dict[str, t.Any]] = []
    output: list[str] = []
    started = time.monotonic()
    monitor: t.Any = contextlib.nullcontext()
    if params['monitor_table']:
        monitor = LockMonitor(connect_monitor, params['monitor_schema'], params['monitor_table'], APPLICATION_NAME,
                              params['sample_interval'])

    def one_try(number: int) -> None:
        try_started = time.monotonic()
        result = alembic.run(direction, params['revision'])
        output.extend(running_lines(result.stderr + '\n' + result.stdout))
        retryable = result.returncode != 0 and is_retryable(result.stderr + result.stdout)
        attempts.append({'attempt': number, 'rc': result.returncode,
                         'duration_seconds': round(time.monotonic() - try_started, 3),
                         'lock_timeout': retryable, 'error': '' if result.returncode == 0 else last_error_line(result)})
        if retryable:
            raise LockBusy(attempts[-1]['error'])

    with monitor:
        # Spent: the last try's failure stands, and the caller's verdict explains it.
        run_under_lock_budget(one_try, params['retries'], params['retry_delay'], params['max_retry_delay'],
                              lambda _error, _tries: None)
    lock_waits = monitor.summary.as_dict() if params['monitor_table'] else {}
    return {'attempts': attempts, 'output': output, 'lock_waits': lock_waits,
            'duration_seconds': round(time.monotonic() - started, 3), 'ok': attempts[-1]['rc'] == 0}


def application_url(params: dict[str, t.Any]) -> str:
    """The URL the application's env.py gets: the connection options, merged as libpq would."""
    return to_url({
        'url': params['database_url'],
        'host': params['login_unix_socket'] or params['login_host'],
        'port': params['login_port'],
        'user': params['login_user'],
        'password': params['login_password'],
        'name': params['login_db'],
        'ssl_mode': params['ssl_mode'],
        'ca_cert': params['ca_cert'],
    })


def writable_connection(params: dict[str, t.Any]) -> t.Any:
    import psycopg2  # guarded by connect(), which always runs first

    # The lock monitor's samples run under our timeouts, whatever the database's defaults.
    return psycopg2.connect(**with_session_options(build_connect_kwargs(params), {'statement_timeout': '5s'}))


def read_state(module: AnsibleModule) -> dict[str, t.Any]:
    """The revision, and the watched column's type and index, as the database has them now."""
    params = module.params
    conn = connect(module)
    try:
        state: dict[str, t.Any] = {'revision': current_alembic_revision(conn, params['version_table']) or BASE}
        with conn.cursor() as cur:
            if params['state_column']:
                cur.execute(COLUMN_TYPE_SQL, {'schema': params['monitor_schema'], 'table': params['monitor_table'],
                                              'column': params['state_column']})
                row = cur.fetchone()
                state['column_type'] = row['column_type'] if row else None
            if params['state_index']:
                cur.execute(INDEX_STATE_SQL, {'schema': params['monitor_schema'], 'name': params['state_index']})
                row = cur.fetchone()
                state.update(index_exists=row is not None, index_valid=bool(row and row['valid']))
        return state
    except Exception as exc:  # psycopg2.Error: a clear message, never a traceback
        fail_on_query_error(module, conn, exc, module.params['version_table'])
        raise  # not reached: fail_on_query_error exits the module
    finally:
        close(conn)


def describe_state(state: dict[str, t.Any]) -> str:
    """``revision X, column jsonb, index present but INVALID`` for messages."""
    parts = [f"revision {state.get('revision')}"]
    if 'column_type' in state:
        parts.append(f"column {state['column_type'] or 'missing'}")
    if 'index_exists' in state:
        parts.append('index ' + ('missing' if not state['index_exists']
                                 else 'valid' if state['index_valid'] else 'present but INVALID'))
    return ', '.join(parts)


def repair_indexes(module: AnsibleModule) -> list[str]:
    """Rebuilds (outside check mode) the listed indexes an earlier failed run left INVALID."""
    params = module.params
    conn = connect(module)
    try:
        broken = invalid_indexes(conn, params['monitor_schema'], params['repair_invalid_indexes'])
    except Exception as exc:
        fail_on_query_error(module, conn, exc)
    finally:
        close(conn)
    if broken and not module.check_mode:
        conn = writable_connection(params)
        try:
            conn.autocommit = True
            for name in broken:
                reindex_concurrently(conn, params['monitor_schema'], name)
        except Exception as exc:
            holders = (LOCK_HOLDERS_SQL, lock_holders_params(params['monitor_schema'], params['monitor_table'])
                       ) if params['monitor_table'] else (None, None)
            fail_on_query_error(module, conn, exc, name, *holders)
        finally:
            conn.close()
    return broken


def stamp(module: AnsibleModule, alembic: Alembic, revision: str) -> None:
    """Records ``revision`` in the version table without running anything (a half-applied upgrade)."""
    result = alembic.run('stamp', revision)
    if result.returncode != 0:
        fail(module, f'alembic stamp {revision} failed: {last_error_line(result)}. Nothing else was run.')


def argument_spec() -> dict[str, t.Any]:
    spec = postgres_connection_argument_spec()
    del spec['lock_timeout']  # the one lock budget is lock_timeout_ms (Alembic's tries and our own queries)
    spec.update(
        revision=dict(type='str', required=True),
        project_dir=dict(type='path', required=True),
        config=dict(type='path', default='alembic.ini'),
        venv=dict(type='path'),
        alembic_executable=dict(type='path'),
        database_url_env=dict(type='str', default='DATABASE_URL'),
        extra_env=dict(type='dict', default={}),
        lock_timeout_ms=dict(type='int', default=1000),
        statement_timeout_ms=dict(type='int', default=0),
        idle_in_transaction_timeout_ms=dict(type='int', default=60000),
        retries=dict(type='int', default=10),
        retry_delay=dict(type='float', default=2.0),
        max_retry_delay=dict(type='float', default=30.0),
        monitor_table=dict(type='str'),
        monitor_schema=dict(type='str', default='public'),
        state_column=dict(type='str'),
        state_index=dict(type='str'),
        assume_revision=dict(type='str'),
        sample_interval=dict(type='float', default=0.2),
        repair_invalid_indexes=dict(type='list', elements='str', default=[]),
        allowed_current=dict(type='list', elements='str', default=[]),
        version_table=dict(type='str', default='alembic_version'),
        show_sql=dict(type='bool', default=True),
    )
    return spec


def check_inputs(module: AnsibleModule) -> None:
    params = module.params
    if params['retries'] < 1 or params['lock_timeout_ms'] < 1:
        fail(module, 'retries and lock_timeout_ms must be at least 1.')
    if params['statement_timeout_ms'] < 0 or params['idle_in_transaction_timeout_ms'] < 0:
        fail(module, 'statement_timeout_ms and idle_in_transaction_timeout_ms must be 0 (off) or more.')
    for name in ('revision', 'assume_revision'):
        value = params[name]
        if value and (value in ('head', 'heads') or value.startswith(('+', '-')) or '@' in value):
            fail(module, f'{name} must be an exact revision id, not {value!r}: relative moves are what '
                         'the runbook warns about (alembic downgrade -1 blindly).')


def load_project(module: AnsibleModule) -> tuple[Alembic, t.Any]:
    """The application's Alembic, and its history, which must know the revisions asked for."""
    params = module.params
    try:
        url = application_url(params)
    except LibpqSettingsError as exc:
        fail(module, f'database_url: {exc}')
    alembic = Alembic(module, url)
    history = parse_history(alembic.must('history'))
    for name in ('revision', 'assume_revision'):
        if params[name] and not history.known(params[name]):
            fail(module, "{} {} is not in this Alembic project's history ({}): is project_dir the application's "
                         'backend at the right release?'.format(name, params[name],
                                                                ', '.join(history.revisions) or 'empty'))
    return alembic, history


def plan(module: AnsibleModule, history: t.Any, state_before: dict[str, t.Any]) -> tuple[dict[str, t.Any], str]:
    """The result before anything runs (direction, pending revisions, what to stamp) and the revision the move
    starts from."""
    params = module.params
    target = params['revision']
    recorded = state_before['revision']
    # The revision the move starts from: the schema's real one when the caller knows better than the version table.
    current = params['assume_revision'] or recorded
    if params['allowed_current'] and current not in params['allowed_current'] and current != target:
        allowed = ', '.join(params['allowed_current'])
        fail(module, f'the database is at revision {current}; expected one of {allowed} before moving to {target}. '
                     'Nothing was changed.', current_before=recorded, state_before=state_before)
    try:
        direction = history.direction(current, target)
    except ValueError as exc:
        fail(module, f'cannot move from {current}: {exc}. Nothing was changed.', current_before=recorded,
             state_before=state_before)
    to_stamp = params['assume_revision'] if params['assume_revision'] and recorded != params['assume_revision'] else ''
    return {
        'changed': False, 'revision': target, 'current_before': recorded, 'current_after': recorded,
        'direction': direction or 'none', 'known_revisions': sorted(history.revisions),
        'pending': history.path(current, target) if direction else [], 'output': [], 'attempts': [],
        'duration_seconds': 0.0, 'lock_waits': {}, 'repaired_indexes': [],
        'state_before': state_before, 'state_after': state_before, 'partial': False, 'stamped': to_stamp,
    }, current


def exit_if_check_mode(module: AnsibleModule, alembic: Alembic, result: dict[str, t.Any], current: str) -> None:
    """In check mode: what would run (and its SQL), without running it."""
    direction = '' if result['direction'] == 'none' else result['direction']
    if module.check_mode and (direction or result['stamped']):
        if direction and module.params['show_sql']:
            result['sql'] = alembic.must(direction, f"{current}:{result['revision']}", '--sql')
        result['changed'] = True
        module.exit_json(**result)


def migrate(module: AnsibleModule, alembic: Alembic, result: dict[str, t.Any]) -> None:
    """Stamp (a half-applied upgrade) and move; whether the schema changed is read from the database. A failed move
    fails the module with the changed it computed (a half-applied failure is changed: true)."""
    params = module.params
    if result['stamped']:
        stamp(module, alembic, result['stamped'])
    direction = '' if result['direction'] == 'none' else result['direction']
    if not direction:
        return
    state_before = result['state_before']
    moved = move(module, alembic, direction, lambda: writable_connection(params))
    result.update({k: moved[k] for k in ('attempts', 'output', 'lock_waits', 'duration_seconds')})
    state_after = read_state(module)
    result.update(state_after=state_after, current_after=state_after['revision'])
    # Decided from the database, not from Alembic's exit.
    result['changed'] = state_after != state_before
    if not moved['ok']:
        last = moved['attempts'][-1]
        why = (f"gave up after {len(moved['attempts'])} tries, each waiting at most {params['lock_timeout_ms']} ms "
               'for a lock held by another session') if last['lock_timeout'] else last['error']
        result['partial'] = result['changed']
        before, after = describe_state(state_before), describe_state(state_after)
        told = (f'It changed the schema before failing (half-applied): was {before}, now {after}.'
                if result['partial'] else f'Nothing was changed: {after}.')
        # A half-applied failure changed the schema, and says so (changed: true) as well as failing.
        fail(module, f"alembic {direction} {result['revision']} failed: {why}. {told}", **result)


def repair(module: AnsibleModule, result: dict[str, t.Any]) -> None:
    """The listed indexes an earlier failed run left INVALID, rebuilt; the state read again when one was."""
    if module.params['repair_invalid_indexes']:
        result['repaired_indexes'] = repair_indexes(module)
        if result['repaired_indexes']:
            result['state_after'] = read_state(module)


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_by={'state_column': 'monitor_table'})
    check_inputs(module)
    alembic, history = load_project(module)
    result, current = plan(module, history, read_state(module))
    exit_if_check_mode(module, alembic, result, current)
    migrate(module, alembic, result)
    repair(module, result)
    result['changed'] = result['state_after'] != result['state_before'] or bool(result['repaired_indexes'])
    module.exit_json(**result)


if __name__ == '__main__':
    main()
