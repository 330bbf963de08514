# Copyright (c) 2025, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared PostgreSQL connection handling for the ledgermind.migrations modules.

Private to this collection (hence the leading underscore). Every module is read-only: it
opens one connection, one READ ONLY transaction with statement and lock timeouts, runs
catalog queries from ``_queries`` and closes. Errors are turned into ``fail_json`` messages
that say what to do; passwords never appear in them.
"""

from __future__ import annotations

import contextlib
import traceback
import typing as t
from urllib.parse import quote

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.ledgermind.migrations.plugins.module_utils._errors import fail as fail_with_secrets
from ansible_collections.ledgermind.migrations.plugins.module_utils._queries import (
    LOCAL_TIMEOUTS_SQL,
    SET_LOCAL_SQL,
    SET_SESSION_SQL,
)

try:
    import psycopg2
    import psycopg2.errorcodes
    import psycopg2.extensions
    import psycopg2.extras
except ImportError:
    psycopg2 = None
    HAS_PSYCOPG2 = False
    PSYCOPG2_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    HAS_PSYCOPG2 = True
    PSYCOPG2_IMPORT_ERROR = None

if t.TYPE_CHECKING:
    from ansible.module_utils.basic import AnsibleModule

SSL_MODES = ['allow', 'disable', 'prefer', 'require', 'verify-ca', 'verify-full']
APPLICATION_NAME = 'ledgermind.migrations'

# SQLSTATEs we explain instead of echoing.
SQLSTATE_QUERY_CANCELED = '57014'
SQLSTATE_LOCK_NOT_AVAILABLE = '55P03'
SQLSTATE_INSUFFICIENT_PRIVILEGE = '42501'
SQLSTATE_READ_ONLY = '25006'


def postgres_connection_argument_spec() -> dict[str, dict[str, t.Any]]:
    """Connection options shared by every module (documented in the ``connection`` fragment).

    Names follow community.postgresql. Everything defaults to ``None`` so that libpq
    defaults and the ``PG*`` environment variables apply; explicit ``login_*`` options
    override the matching parts of ``database_url``.
    """
    return dict(
        database_url=dict(type='str', no_log=True),
        login_host=dict(type='str'),
        login_port=dict(type='int'),
        login_user=dict(type='str'),
        login_password=dict(type='str', no_log=True),
        login_db=dict(type='str'),
        login_unix_socket=dict(type='str'),
        ssl_mode=dict(type='str', choices=SSL_MODES),
        ca_cert=dict(type='str'),
        connect_params=dict(type='dict'),
        connect_timeout=dict(type='int', default=10),
        query_timeout=dict(type='int', default=300),
        lock_timeout=dict(type='int', default=5),
    )


# ---------------------------------------------------------------------------------------------
# Pure helpers (unit-tested without a database)
# ---------------------------------------------------------------------------------------------

def build_connect_kwargs(params: dict[str, t.Any]) -> dict[str, t.Any]:
    """Map module options to ``psycopg2.connect`` keyword arguments (``None`` dropped).

    ``database_url`` goes in as ``dsn``; libpq merges the keywords over it, so explicit
    ``login_*`` options win. ``connect_params`` win over everything.
    """
    host = params.get('login_host')
    # As community.postgresql: the socket directory replaces an unset or localhost host.
    if params.get('login_unix_socket') and (not host or host == 'localhost'):
        host = params['login_unix_socket']
    kwargs: dict[str, t.Any] = dict(
        dsn=params.get('database_url') or None,
        host=host or None,
        port=params.get('login_port'),
        user=params.get('login_user'),
        password=params.get('login_password'),
        dbname=params.get('login_db'),
        sslmode=params.get('ssl_mode'),
        sslrootcert=params.get('ca_cert'),
        connect_timeout=params.get('connect_timeout'),
        application_name=APPLICATION_NAME,
    )
    kwargs.update(params.get('connect_params') or {})
    return {k: v for k, v in kwargs.items() if v is not None and v != ''}


def with_session_options(kwargs: dict[str, t.Any], settings: dict[str, str]) -> dict[str, t.Any]:
    """``kwargs`` whose libpq ``options`` end with ``-c name=value`` for each setting.

    Settings given when connecting beat ``ALTER DATABASE/ROLE ... SET``: a database-wide 1 ms statement_timeout
    must not cancel the very statement that would set ours. The caller's own options come first; ours win.
    """
    ours = ' '.join(f'-c {name}={value}' for name, value in settings.items())
    options = ' '.join(part for part in (str(kwargs.get('options') or '').strip(), ours) if part)
    return dict(kwargs, options=options) if options else dict(kwargs)


def module_timeouts(params: dict[str, t.Any]) -> dict[str, str]:
    """The module's own statement and lock timeouts as PostgreSQL settings."""
    return {'statement_timeout': _seconds(params.get('query_timeout')), 'lock_timeout': lock_timeout_setting(params)}


def lock_timeout_setting(params: dict[str, t.Any]) -> str:
    """``lock_timeout`` (seconds) as a PostgreSQL setting; a module whose one lock budget is ``lock_timeout_ms``
    (alembic_migrate: its connection options leave ``lock_timeout`` out) gets that for its own queries too."""
    if 'lock_timeout' not in params and params.get('lock_timeout_ms'):
        return f"{int(params['lock_timeout_ms'])}ms"
    return _seconds(params.get('lock_timeout'))


def lock_budget(params: dict[str, t.Any]) -> int | str | None:
    """The lock budget as messages name it: ``lock_timeout`` seconds, or ``lock_timeout_ms=N``."""
    if 'lock_timeout' not in params and params.get('lock_timeout_ms'):
        return f"lock_timeout_ms={int(params['lock_timeout_ms'])}"
    return params.get('lock_timeout')


def describe_target(conninfo: dict[str, t.Any]) -> str:
    """``user@host:port/dbname`` for messages: never the password, libpq defaults marked."""
    user = conninfo.get('user') or '(default user)'
    host = conninfo.get('host') or conninfo.get('hostaddr') or '(default socket)'
    port = conninfo.get('port') or '5432'
    dbname = conninfo.get('dbname') or '(default database)'
    return f'{user}@{host}:{port}/{dbname}'


def connection_error_message(error_text: str, target: str) -> str:
    """Turn a libpq connection error into one actionable sentence."""
    raw = ' '.join(error_text.split())
    low = raw.lower()
    if 'password authentication failed' in low or 'no password supplied' in low or (
            'role "' in low and 'does not exist' in low) or 'authentication failed' in low:
        return (f'Cannot log in to PostgreSQL as {target}: authentication failed. Check login_user and '
                f'login_password (or the credentials in database_url). Server said: {raw}')
    if 'database "' in low and 'does not exist' in low:
        return (f'The database in {target} does not exist. Check login_db (or the path of database_url). '
                f'Server said: {raw}')
    if 'timeout expired' in low:
        return (f'Timed out connecting to PostgreSQL at {target} (connect_timeout). Check that the server is '
                f'up and reachable from this host, or raise connect_timeout. libpq said: {raw}')
    if ('could not connect' in low or 'connection refused' in low or 'could not translate host name' in low
            or 'no route to host' in low or 'network is unreachable' in low or 'connection to server' in low):
        return (f'Cannot reach PostgreSQL at {target}. Check that the server is running and that login_host/'
                f'login_port (or database_url) point to it. libpq said: {raw}')
    if 'invalid dsn' in low or 'invalid uri' in low or 'missing "="' in low or 'invalid connection option' in low:
        return (f'The connection parameters are invalid ({raw}). Check database_url (a libpq URI such as '
                'postgresql://user:password@host:5432/dbname) and connect_params.')
    if 'ssl' in low:
        return (f'SSL negotiation with PostgreSQL at {target} failed. Check ssl_mode and ca_cert. libpq said: {raw}')
    return f'Cannot connect to PostgreSQL at {target}: {raw}'


def query_error_message(sqlstate: str | None, error_text: str, lock_timeout: int | str | None,
                        query_timeout: int | None, relation: str | None = None,
                        blockers: list[str] | None = None) -> str:
    """Turn an error raised while running a read-only query into an actionable sentence."""
    raw = ' '.join(error_text.split())
    what = relation or 'the table'
    if sqlstate == SQLSTATE_LOCK_NOT_AVAILABLE:
        held = '; '.join(blockers or []) or 'see pg_stat_activity where wait_event_type = Lock'
        budget = lock_timeout if isinstance(lock_timeout, str) else f'lock_timeout={lock_timeout}s'
        return (f'{what} is locked by another session: {held}. Gave up after {budget} '
                'rather than queue behind it (an ALTER TABLE holds ACCESS EXCLUSIVE until it commits). Retry once that '
                'session finishes, or raise lock_timeout.')
    if sqlstate == SQLSTATE_QUERY_CANCELED:
        return (f'The query on {what} was cancelled after query_timeout={query_timeout}s (statement_timeout). '
                f'The table may be large or the server busy: raise query_timeout or run off-peak. Server said: {raw}')
    if sqlstate == SQLSTATE_INSUFFICIENT_PRIVILEGE:
        return (f'Permission denied while inspecting {what}: grant the login role SELECT on it (and USAGE on '
                f'its schema). Server said: {raw}')
    if sqlstate == SQLSTATE_READ_ONLY:
        return ('This module only reads: the statement tried to write inside its READ ONLY transaction. '
                f'Server said: {raw}')
    return f'PostgreSQL error while inspecting {what}: {raw}'


# ---------------------------------------------------------------------------------------------
# Database edge
# ---------------------------------------------------------------------------------------------

def ensure_psycopg2(module: AnsibleModule) -> None:
    """Fail with the standard ``missing_required_lib`` message when psycopg2 is not importable."""
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib('psycopg2', url='https://pypi.org/project/psycopg2-binary/'),
                         exception=PSYCOPG2_IMPORT_ERROR)


def _secrets(params: dict[str, t.Any]) -> list[str | None]:
    """The password however it was given (alone, in the URL, in ``connect_params``), also URL-encoded."""
    secrets: list[str | None] = [params.get('login_password'), params.get('database_url')]
    url = params.get('database_url')
    if url and HAS_PSYCOPG2:
        with contextlib.suppress(Exception):  # a malformed URL: fall back on regex redaction
            secrets.append(psycopg2.extensions.parse_dsn(url).get('password'))
    for key in ('password', 'sslpassword'):
        secrets.append((params.get('connect_params') or {}).get(key))
    return secrets + [quote(str(s), safe='') for s in secrets if s]


def target_of(params: dict[str, t.Any]) -> str:
    """Describe where we connect to, from the merged connection parameters, without secrets."""
    kwargs = build_connect_kwargs(params)
    dsn = kwargs.pop('dsn', None)
    try:
        merged = psycopg2.extensions.parse_dsn(psycopg2.extensions.make_dsn(dsn, **kwargs))
    except Exception:
        merged = dict(kwargs)
    return describe_target(merged)


def fail(module: AnsibleModule, msg: str, **result: t.Any) -> t.NoReturn:
    """The collection's one error helper (``_errors.fail``) with the connection's secrets hidden: ``changed: false``
    unless the caller read from the database that the failed step changed it (``changed=True`` in ``result``)."""
    fail_with_secrets(module, msg, _secrets(module.params), **result)
    raise AssertionError('unreachable')  # fail_json exits


def connect(module: AnsibleModule) -> t.Any:
    """Open a connection and a READ ONLY, REPEATABLE READ transaction with our timeouts.

    Returns a psycopg2 connection whose cursors yield dicts. All queries a module runs see one
    snapshot, so counts, fingerprints and samples agree with each other.
    """
    ensure_psycopg2(module)
    params = module.params
    kwargs = with_session_options(build_connect_kwargs(params), module_timeouts(params))
    try:
        conn = psycopg2.connect(cursor_factory=psycopg2.extras.RealDictCursor, **kwargs)
    except psycopg2.Error as e:
        fail(module, connection_error_message(str(e), target_of(params)))
    except Exception as e:  # noqa: BLE001 - e.g. a malformed option; never a traceback
        fail(module, connection_error_message(str(e), target_of(params)))
    try:
        conn.set_session(isolation_level='REPEATABLE READ', readonly=True, autocommit=False)
        with conn.cursor() as cur:
            # SET LOCAL: the timeouts end with the transaction.
            cur.execute(LOCAL_TIMEOUTS_SQL, (_seconds(params.get('query_timeout')), lock_timeout_setting(params)))
    except psycopg2.Error as e:
        conn.close()
        fail(module, query_error_message(e.pgcode, str(e), lock_budget(params), params.get('query_timeout')))
    return conn


def connect_writable(module: AnsibleModule, application_name: str = APPLICATION_NAME,
                     settings: dict[str, str] | None = None) -> t.Any:
    """Open a read-write connection (dict cursors, autocommit off) for the modules that record or change.

    ``settings`` (e.g. ``lock_timeout``, ``statement_timeout``) are set for the whole session, so they hold
    whatever defaults the role or database carries. Our own writes are never logged as the application's
    (``ledgermind.write_log = off``, read by the write-log trigger).
    """
    ensure_psycopg2(module)
    params = module.params
    wanted = dict(module_timeouts(params), **{'ledgermind.write_log': 'off'})
    wanted.update(settings or {})
    kwargs = with_session_options(build_connect_kwargs(params), wanted)
    kwargs['application_name'] = application_name
    try:
        conn = psycopg2.connect(cursor_factory=psycopg2.extras.RealDictCursor, **kwargs)
    except Exception as e:  # noqa: BLE001 - psycopg2.Error or a malformed option; never a traceback
        fail(module, connection_error_message(str(e), target_of(params)))
    try:
        with conn.cursor() as cur:
            for name, value in wanted.items():
                cur.execute(SET_SESSION_SQL, (name, value))
        conn.commit()
    except psycopg2.Error as e:
        conn.close()
        fail(module, query_error_message(e.pgcode, str(e), lock_budget(params), params.get('query_timeout')))
    return conn


def _seconds(value: int | None) -> str:
    """PostgreSQL duration for a timeout in seconds; 0 or None disables it."""
    return f'{int(value)}s' if value else '0'


def set_local(conn: t.Any, setting: str, value: str) -> None:
    """``SET LOCAL setting = value`` via ``set_config`` with bind parameters."""
    with conn.cursor() as cur:
        cur.execute(SET_LOCAL_SQL, (setting, value))


def fail_on_query_error(module: AnsibleModule, conn: t.Any, error: Exception, relation: str | None = None,
                        blockers_sql: t.Any = None, blockers_params: t.Any = None) -> t.NoReturn:
    """Fail with a clear message for an error raised by a module query.

    On a lock timeout, ``blockers_sql`` (from ``_queries``) is run in a fresh transaction to name
    the sessions holding locks on the relation.
    """
    params = module.params
    sqlstate = getattr(error, 'pgcode', None)
    blockers: list[str] = []
    if sqlstate == SQLSTATE_LOCK_NOT_AVAILABLE and blockers_sql is not None:
        blockers = _lock_holders(conn, blockers_sql, blockers_params)
    fail(module, query_error_message(sqlstate, str(error), lock_budget(params),
                                     params.get('query_timeout'), relation, blockers))


def _lock_holders(conn: t.Any, blockers_sql: t.Any, blockers_params: t.Any) -> list[str]:
    try:
        conn.rollback()
        with conn.cursor() as cur:
            cur.execute(SET_LOCAL_SQL, ('statement_timeout', '5s'))
            cur.execute(blockers_sql, blockers_params)
            rows = cur.fetchall()
        return [_holder(r) for r in rows]
    except Exception:  # best effort: the message still explains the lock timeout
        return []


def _holder(row: dict[str, t.Any]) -> str:
    query = ' '.join((row['query'] or '').split())[:200]
    return f"pid {row['pid']} ({row['usename']}, {row['mode']}, {row['state']}): {query}"


def close(conn: t.Any) -> None:
    """End the read-only transaction and close; never raises."""
    try:
        conn.rollback()
        conn.close()
    except Exception:
        pass
