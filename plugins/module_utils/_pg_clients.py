# Copyright (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Running PostgreSQL's own clients (pg_dump, pg_restore, psql) safely, for the backup modules.

Connection settings are the shared connection options (``_connection``), merged as every other
module merges them; they reach the clients only as ``PG*`` environment variables (built by
``_libpq``), so a password is never on a command line. Archives are verified by reading them completely
(``pg_restore --file=/dev/null``): ``pg_restore --list`` only reads the table of contents and
happily lists a truncated archive.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import selectors
import shutil
import threading
import time
import typing as t
from dataclasses import dataclass, field
from urllib.parse import quote

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ledgermind.migrations.plugins.module_utils._connection import (
    build_connect_kwargs,
    close,
    connect,
    connection_error_message,
    ensure_psycopg2,
    fail,
    fail_on_query_error,
    psycopg2,
    query_error_message,
    target_of,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._libpq import (
    QUERY_KEYS,
    merge,
    params_to_env,
    to_env,
    to_url,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._queries import (
    COLUMN_SQL,
    DUMP_SNAPSHOT_SETTINGS_SQL,
    EXPORT_SNAPSHOT_SQL,
    LOCK_HOLDERS_SQL,
    PRIMARY_KEY_SQL,
    RELATION_SQL,
    SNAPSHOT_SQL,
    Sums,
    column_kind,
    database_identity,
    describe_identity,
    identity_mismatches,
    integrity_counts_sql,
    integrity_params,
    lock_for_dump_sql,
    lock_holders_params,
    relation_problem,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._redact import redact

CLIENT_DIRS_GLOB = '/usr/lib/postgresql/*/bin'
CHUNK_SIZE = 1024 * 1024
SIDECAR_SUFFIX = '.json'
PARTIAL_SUFFIX = '.partial'
ARCHIVE_EXTENSIONS = {'custom': '.dump', 'directory': '.dir'}
TIMESTAMP_FORMAT = '%Y%m%dT%H%M%SZ'

# TOC entry types restored together with their table, when they depend on it (directly or through
# another kept entry, e.g. SEQUENCE SET -> owned SEQUENCE -> TABLE).
TABLE_MEMBER_DESCS = frozenset({
    'TABLE DATA', 'INDEX', 'INDEX ATTACH', 'CONSTRAINT', 'FK CONSTRAINT', 'CHECK CONSTRAINT', 'TRIGGER',
    'DEFAULT', 'SEQUENCE', 'SEQUENCE OWNED BY', 'SEQUENCE SET', 'COMMENT', 'ACL', 'SECURITY LABEL',
    'POLICY', 'ROW SECURITY', 'RULE', 'STATISTICS',
})
# Entry types whose tag is "<table> <name>": they belong to the table named first. An FK
# CONSTRAINT of *another* table that references ours depends on our primary key, but is not ours.
TABLE_PREFIXED_DESCS = frozenset({
    'CONSTRAINT', 'FK CONSTRAINT', 'CHECK CONSTRAINT', 'TRIGGER', 'DEFAULT', 'POLICY', 'RULE',
})
# Longest first, so "TABLE DATA" wins over "TABLE" and "FK CONSTRAINT" over "CONSTRAINT".
_KNOWN_DESCS = sorted(
    TABLE_MEMBER_DESCS | {'TABLE', 'SCHEMA', 'DATABASE', 'ENCODING', 'STDSTRINGS', 'SEARCHPATH', 'EXTENSION',
                          'VIEW', 'MATERIALIZED VIEW', 'FUNCTION', 'TYPE', 'DOMAIN', 'LARGE OBJECT', 'BLOBS',
                          'DEFAULT ACL', 'PUBLICATION', 'PUBLICATION TABLE', 'SUBSCRIPTION', 'COLLATION',
                          'FOREIGN TABLE', 'EVENT TRIGGER', 'MATERIALIZED VIEW DATA', 'PROCEDURE', 'AGGREGATE',
                          'OPERATOR', 'OPERATOR CLASS', 'OPERATOR FAMILY', 'CAST', 'CONVERSION', 'SERVER',
                          'USER MAPPING', 'TEXT SEARCH CONFIGURATION', 'TEXT SEARCH DICTIONARY',
                          'TEXT SEARCH PARSER', 'TEXT SEARCH TEMPLATE', 'PROCEDURAL LANGUAGE', 'TRANSFORM',
                          'ACCESS METHOD', 'FOREIGN DATA WRAPPER', 'SHELL TYPE'},
    key=len, reverse=True,
)
_TOC_LINE = re.compile(r'^(?P<id>\d+);\s+(?P<tableoid>\d+)\s+(?P<oid>\d+)\s+(?P<rest>.*)$')
_DEPENDS_LINE = re.compile(r'^;\s*depends on:(?P<ids>[\d\s]*)$')
_VERSION = re.compile(r'\(PostgreSQL\)\s+(?P<version>(?P<major>\d+)(?:\.\d+)*)')


class ClientError(Exception):
    """A client could not be found or run; the message says what to do."""


# ---------------------------------------------------------------------------------------------
# Connection settings
# ---------------------------------------------------------------------------------------------

def connection_settings(params: dict[str, t.Any]) -> tuple[dict[str, t.Any], dict[str, t.Any]]:
    """The shared connection options (``postgres_connection_argument_spec``), merged as for psycopg2
    (``login_*`` over ``database_url``, ``connect_params`` over everything), as a ``ledgermind_db``
    mapping plus the other libpq parameters (``connect_timeout``, the rest of ``connect_params``)."""
    kwargs = build_connect_kwargs(params)
    settings: dict[str, t.Any] = {'url': kwargs.pop('dsn', None)}
    for param, key in QUERY_KEYS.items():
        if param in kwargs:
            settings[key] = kwargs.pop(param)
    return settings, kwargs


def client_env(params: dict[str, t.Any], application_name: str | None = None) -> dict[str, str]:
    """``PG*`` variables for a client subprocess (raises ``_libpq.LibpqSettingsError``, naming any
    ``connect_params`` key libpq has no variable for). ``application_name`` names the session unless
    ``connect_params`` does.

    Neither timeout of the SQL modules travels: pg_dump and pg_restore's script set ``statement_timeout``
    and ``lock_timeout`` to 0 themselves; pg_dump's lock wait is bounded by ``lock_wait_argv``."""
    settings, others = connection_settings(params)
    if application_name and not (params.get('connect_params') or {}).get('application_name'):
        others['application_name'] = application_name
    # pg_dump's first catalog queries run before it sets statement_timeout=0 itself: a database-wide
    # statement_timeout (ALTER DATABASE ... SET) would cancel them. Connection options beat it.
    others['options'] = ' '.join(part for part in (str(others.get('options') or '').strip(), '-c statement_timeout=0')
                                 if part)
    env = to_env(settings)
    env.update(params_to_env(others))
    return env


def lock_wait_argv(lock_timeout: int | None) -> list[str]:
    """pg_dump's ``--lock-wait-timeout`` (milliseconds) for ``lock_timeout`` seconds: the dump gives up
    instead of queueing behind an ALTER TABLE's ACCESS EXCLUSIVE lock (and making every later query
    queue behind the dump). 0 or None waits forever."""
    return [f'--lock-wait-timeout={int(lock_timeout) * 1000}'] if lock_timeout else []


def dump_error(rc: int, stderr: str, lock_timeout: int | None) -> str:
    """pg_dump's failure, explained when it gave up waiting for a table lock (``lock_wait_argv``)."""
    detail = stderr.strip() or 'no error output'
    if lock_timeout and 'LOCK TABLE' in stderr and 'statement timeout' in stderr:
        return (
            f'pg_dump gave up after lock_timeout={lock_timeout}s waiting for a table lock another session holds '
            f'(for example an ALTER TABLE; see pg_locks). Retry once it finishes, or raise lock_timeout: {detail}'
        )
    return f'pg_dump failed (exit code {rc}): {detail}'


def public_url(params: dict[str, t.Any]) -> str:
    """The database as a URL without its password, for sidecars and messages."""
    settings = merge(connection_settings(params)[0])
    settings.pop('password', None)
    return to_url(settings)


def database_name(params: dict[str, t.Any]) -> str:
    """The database name libpq will use (its default is the user name)."""
    settings = merge(connection_settings(params)[0])
    return settings.get('name') or settings.get('user') or os.environ.get('PGDATABASE') or 'postgres'


def secrets(params: dict[str, t.Any]) -> list[str]:
    """Values that must never appear in output (the password, however it was given)."""
    found: list[str] = []
    settings = connection_settings(params)[0]
    values = [params.get('login_password'), params.get('database_url')]
    # The effective password (login_password or connect_params), and the URL's own when one overrides it.
    for connection in (settings, {'url': settings['url']}):
        with contextlib.suppress(ValueError):  # a malformed URL: its own text is hidden whole below
            values.append(merge(connection).get('password'))
    for value in values:
        if value:
            found.extend({str(value), quote(str(value), safe='')})
    return found


def scrub(text: str, hidden: list[str]) -> str:
    """``text`` with every secret (and any URL password) replaced by ``********`` (the collection's one redaction)."""
    return redact(text, hidden)


# ---------------------------------------------------------------------------------------------
# Identity: which database and table an archive is of
# ---------------------------------------------------------------------------------------------

def read_identity(module: AnsibleModule, schema: str | None, table: str | None, column: str | None) -> dict[str, t.Any]:
    """``_queries.database_identity`` read on the module's own read-only connection (psycopg2, the same
    settings the clients get); connection and query errors fail the module with a message that says
    what to check. ``schema``/``table`` None: the database alone (a whole-database archive)."""
    conn = connect(module)
    try:
        with conn.cursor() as cur:
            return database_identity(cur, t.cast(str, schema), t.cast(str, table), column)
    except psycopg2.Error as exc:
        relation = f'{schema}.{table}' if table else 'the database'
        fail_on_query_error(module, conn, exc, relation)
        raise  # not reached: fail_on_query_error exits the module
    finally:
        close(conn)


def describe(identity: dict[str, t.Any] | None) -> str:
    """``_queries.describe_identity``, saying "the whole database" for a whole-database archive's identity
    (no schema and table) instead of ``table None.None``."""
    text = describe_identity(identity)
    if identity and not identity.get('table'):
        text = text.rpartition(', table ')[0] + ', the whole database'
    return text


# ---------------------------------------------------------------------------------------------
# Content: the table's fingerprint in the very snapshot pg_dump dumps
# ---------------------------------------------------------------------------------------------

# How long closing waits for a cancelled scan to return before leaving it to the process's exit.
CANCEL_WAIT_SECONDS = 30.0


def content_record(sums: Sums, snapshot: str, column: str, key: str) -> dict[str, t.Any]:
    """The sidecar's ``content``: the ``fingerprint``, ``fingerprint_sums`` and ``snapshot`` that
    pg_jsonb_integrity returns for the same rows, with the column and key they were read by."""
    return {'fingerprint': sums.fingerprint(), 'fingerprint_sums': sums.as_json(), 'snapshot': snapshot,
            'column': column, 'key': key}


def content_skip_reason(schema: str, table: str, column: str, info: dict[str, t.Any] | None,
                        keys: list[str]) -> str | None:
    """Why the content fingerprint of ``schema.table`` cannot be computed by ``column`` (``info``: its
    ``_queries.COLUMN_SQL`` row, None when missing) and the primary key columns ``keys``, or None."""
    why = f'no content fingerprint recorded for the archive of {schema}.{table}: '
    if info is None:
        return why + f'it has no column {column}'
    if column_kind(info.get('data_type'), info.get('udt_name')) is None:
        return why + (f"column {column} is {info.get('formatted_type')}; the fingerprint reads jsonb, json or array "
                      "(e.g. text[]) columns")
    if len(keys) != 1:
        has = 'no primary key' if not keys else f"a multi-column primary key ({', '.join(keys)})"
        return why + f'the table has {has}; the fingerprint needs a single-column primary key'
    return None


def lock_timeout_setting(seconds: int | None) -> str:
    """``lock_timeout`` for SET: ``5s``; 0 or None waits forever (``0``)."""
    return f'{int(seconds)}s' if seconds else '0'


class DumpSnapshot:
    """The transaction whose snapshot pg_dump dumps (``--snapshot``), and the table's fingerprint in it.

    ``open_dump_snapshot`` opens it (READ ONLY, REPEATABLE READ, the table locked ACCESS SHARE before the
    snapshot is taken, the snapshot exported). ``start_scan`` runs ``_queries.integrity_counts_sql``, the
    counting pass of pg_jsonb_integrity, so its sums are the ones pg_jsonb_integrity computes for the same
    rows, in that transaction on a thread of its own while pg_dump runs (psycopg2 waits for the server
    without holding the GIL); ``content`` waits for it. ``close`` ends the transaction, and the export with
    it: only once pg_dump has ended (pg_dump imports the snapshot as it starts, and cannot once the
    exporting transaction is gone). A scan still running is cancelled first.
    """

    def __init__(self, conn: t.Any, target: dict[str, str], snapshot: str, snapshot_id: str,
                 lock_timeout: int | None = None) -> None:
        self.conn = conn
        self.target = target  # schema, table, key, column, kind: integrity_counts_sql's arguments
        self.snapshot = snapshot  # pg_current_snapshot()::text, as pg_jsonb_integrity returns it
        self.snapshot_id = snapshot_id  # pg_export_snapshot(), for pg_dump --snapshot
        self.lock_timeout = lock_timeout
        self._thread: threading.Thread | None = None
        self._row: dict[str, t.Any] | None = None
        self._error: BaseException | None = None
        self._closed = False

    def start_scan(self) -> None:
        self._thread = threading.Thread(target=self._scan, name='ledgermind-content-scan', daemon=True)
        self._thread.start()

    def _scan(self) -> None:
        try:
            with self.conn.cursor() as cur:
                cur.execute(integrity_counts_sql(**self.target), integrity_params('array', 'string'))
                self._row = dict(cur.fetchone())
        except BaseException as exc:  # noqa: BLE001 - handed over to the module's thread by scan_error()
            self._error = exc

    def scan_error(self) -> str | None:
        """Why the scan failed, once it has; None while it runs, after it succeeded, or before it started."""
        if self._error is None:
            return None
        relation = '{schema}.{table}'.format(**self.target)
        sqlstate = getattr(self._error, 'pgcode', None)
        if not isinstance(self._error, psycopg2.Error):
            detail = f'{type(self._error).__name__}: {self._error}'
        elif sqlstate == '57014' or isinstance(self._error, psycopg2.extensions.QueryCanceledError):
            # No statement timeout here: cancelled by close(), pg_cancel_backend or a shutdown.
            detail = f"the scan of {relation} was cancelled: {' '.join(str(self._error).split())}"
        else:
            detail = query_error_message(sqlstate, str(self._error), self.lock_timeout, None, relation)
        return f"the archive's content fingerprint could not be computed in the dump's snapshot: {detail}"

    def content(self) -> dict[str, t.Any]:
        """The sidecar's ``content`` (``content_record``) once the scan has ended; ClientError when it failed."""
        if self._thread is None:
            raise ClientError('the content scan was never started')
        self._thread.join()
        problem = self.scan_error()
        if problem or self._row is None:
            raise ClientError(problem or 'the content scan returned no row')
        row = self._row
        sums = Sums(int(row['total']), int(row['hash1']), int(row['hash2']))
        return content_record(sums, self.snapshot, self.target['column'], self.target['key'])

    def close(self) -> None:
        """End the transaction and close; never raises, and does nothing the second time. A scan still running
        is cancelled; if it does not return in time, the connection is left to the process's exit (closing it
        would wait for the scan), and the server ends the transaction when the connection drops."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None and self._thread.is_alive():
            with contextlib.suppress(Exception):
                self.conn.cancel()
            self._thread.join(CANCEL_WAIT_SECONDS)
            if self._thread.is_alive():
                return
        close(self.conn)


def open_dump_snapshot(module: AnsibleModule, schema: str, table: str, column: str,
                       application_name: str) -> DumpSnapshot | str:
    """The transaction pg_dump takes its snapshot from (``DumpSnapshot``), or why the table's content fingerprint
    cannot be computed (``content_skip_reason``; nothing is left open then).

    Its own connection, with the settings the clients get, named ``application_name`` unless ``connect_params``
    names it. Timeouts are set and the table is locked (ACCESS SHARE, waiting at most ``lock_timeout``) before
    any snapshot exists, so no ALTER TABLE commits between the snapshot and pg_dump's own lock. Connection and
    query errors (a lock wait that timed out names the sessions holding the table) fail the module, closing
    the connection."""
    ensure_psycopg2(module)
    params = module.params
    kwargs = build_connect_kwargs(params)
    if not (params.get('connect_params') or {}).get('application_name'):
        kwargs['application_name'] = application_name
    try:
        conn = psycopg2.connect(cursor_factory=psycopg2.extras.RealDictCursor, **kwargs)
    except Exception as exc:  # noqa: BLE001 - psycopg2.Error or a malformed option; never a traceback
        fail(module, connection_error_message(str(exc), target_of(params)))
    opened: DumpSnapshot | None = None
    try:
        conn.set_session(isolation_level='REPEATABLE READ', readonly=True, autocommit=False)
        with conn.cursor() as cur:
            for statement in DUMP_SNAPSHOT_SETTINGS_SQL:
                cur.execute(statement, {'lock_timeout': lock_timeout_setting(params.get('lock_timeout'))})
            cur.execute(lock_for_dump_sql(schema, table))
            # The snapshot is taken here, by the first query, after the lock.
            cur.execute(RELATION_SQL, {'schema': schema, 'table': table})
            relation = cur.fetchone()
            problem = relation_problem(relation, schema, table)
            if problem:
                fail(module, problem)
            relid = int(relation['relid'])
            cur.execute(COLUMN_SQL, {'schema': schema, 'table': table, 'relid': relid, 'column': column})
            info = cur.fetchone()
            cur.execute(PRIMARY_KEY_SQL, {'relid': relid})
            keys = [str(row['column_name']) for row in cur.fetchall()]
            reason = content_skip_reason(schema, table, column, dict(info) if info else None, keys)
            if reason:
                return reason
            cur.execute(SNAPSHOT_SQL)
            snapshot = cur.fetchone()
            if snapshot['isolation'] != 'repeatable read':
                fail(module, f"the backup's transaction runs at isolation level {snapshot['isolation']}, not "
                             "repeatable read: its fingerprint would not describe the dump's snapshot")
            cur.execute(EXPORT_SNAPSHOT_SQL)
            snapshot_id = str(cur.fetchone()['snapshot_id'])
        kind = t.cast(str, column_kind(info['data_type'], info['udt_name']))
        opened = DumpSnapshot(conn, {'schema': schema, 'table': table, 'key': keys[0], 'column': column, 'kind': kind},
                              str(snapshot['snapshot']), snapshot_id, params.get('lock_timeout'))
        return opened
    except psycopg2.Error as exc:
        fail_on_query_error(module, conn, exc, f'{schema}.{table}', LOCK_HOLDERS_SQL,
                            lock_holders_params(schema, table))
        raise  # not reached: fail_on_query_error exits the module
    finally:
        if opened is None:
            close(conn)


# ---------------------------------------------------------------------------------------------
# Finding and running clients
# ---------------------------------------------------------------------------------------------

def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r'\d+', path))


class _Standalone(AnsibleModule):
    """``AnsibleModule.run_command`` for callers that have no module (tests, scripts): an AnsibleModule without
    argument parsing, whose failures are ClientError. A module passes itself instead."""

    def __init__(self) -> None:  # pylint: disable=super-init-not-called
        self._clean = None
        self._debug = False
        self._shell = None
        self.no_log_values: set[str] = set()
        self.run_command_environ_update: dict[str, str] = {}

    def fail_json(self, msg: str = '', **kwargs: t.Any) -> t.NoReturn:
        raise ClientError(msg)

    def log(self, msg: str, log_args: t.Any = None) -> None:
        pass


Runner = t.Union['AnsibleModule', _Standalone]


def _runner(module: Runner | None) -> Runner:
    return module if module is not None else _Standalone()


def run_command(module: Runner | None, argv: list[str], env: dict[str, str] | None = None, umask: int | None = None,
                timeout: float | None = None, **kwargs: t.Any) -> tuple[int, str, str]:
    """``module.run_command`` as the clients need it: ``argv`` taken literally (no ``~`` or ``$VAR`` expansion),
    ``env`` added to this process's environment, undecodable output replaced, an exec failure a ClientError and,
    with ``timeout``, the client killed after that many seconds (a ClientError too)."""
    timer: list[threading.Timer] = []
    stopped: list[bool] = []
    given = kwargs.pop('before_communicate_callback', None)

    def stop(proc: t.Any) -> None:
        stopped.append(True)
        proc.kill()

    def started(proc: t.Any) -> None:
        if timeout:
            timer.append(threading.Timer(timeout, stop, (proc,)))
            timer[0].daemon = True
            timer[0].start()
        if given is not None:
            given(proc)

    try:
        rc, out, err = _runner(module).run_command(
            argv, environ_update=env or {}, umask=umask, expand_user_and_vars=False, errors='surrogate_or_replace',
            handle_exceptions=False, before_communicate_callback=started, **kwargs)
    except OSError as exc:
        raise ClientError(f'could not run {argv[0]}: {exc}') from None
    finally:
        if timer:
            timer[0].cancel()
    if stopped:
        raise ClientError(f'{argv[0]} did not finish within {timeout:g}s and was stopped')
    return rc, out, err


def candidate_dirs(module: Runner | None = None) -> list[str]:
    """Where PostgreSQL clients live besides PATH: ``pg_config --bindir``, then the newest Debian dir."""
    dirs = []
    pg_config = shutil.which('pg_config')
    if pg_config:
        with contextlib.suppress(ClientError):
            rc, out, _err = run_command(module, [pg_config, '--bindir'], timeout=10)
            if rc == 0 and out.strip():
                dirs.append(out.strip())
    dirs.extend(sorted(glob.glob(CLIENT_DIRS_GLOB), key=_version_key, reverse=True))
    return dirs


def find_client(name: str, explicit: str | None = None, near: str | None = None, module: Runner | None = None) -> str:
    """The path of client ``name``: ``explicit``, else next to ``near``, else PATH, else the usual dirs."""
    if explicit:
        if os.path.isfile(explicit) and os.access(explicit, os.X_OK):
            return explicit
        raise ClientError(f'{name}_path {explicit} is not an executable file')
    if near:
        sibling = os.path.join(os.path.dirname(near), name)
        if os.path.isfile(sibling) and os.access(sibling, os.X_OK):
            return sibling
    found = shutil.which(name)
    if found:
        return found
    for directory in candidate_dirs(module):
        path = os.path.join(directory, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise ClientError(
        f'{name} not found on PATH, in `pg_config --bindir` or {CLIENT_DIRS_GLOB}; install the PostgreSQL client '
        f'(Debian: apt-get install postgresql-client) or set {name}_path'
    )


@dataclass
class Result:
    argv: list[str]
    rc: int
    stdout: str
    stderr: str
    duration: float = 0.0
    extra: dict[str, t.Any] = field(default_factory=dict)


def run_client(argv: list[str], env: dict[str, str] | None = None, umask: int = 0o077, timeout: float | None = None,
               module: Runner | None = None) -> Result:
    """Run a client through ``module.run_command`` with the ``PG*`` variables added to the environment (the password
    never on its command line); pg_dump and pg_restore get ``--no-password`` from their callers."""
    started = time.monotonic()
    rc, out, err = run_command(module, argv, env, umask=umask, timeout=timeout)
    return Result(argv, rc, out, err, time.monotonic() - started)


def parse_client_version(output: str) -> tuple[int, str]:
    """``pg_dump (PostgreSQL) 15.18 (Debian ...)`` -> ``(15, "15.18")``."""
    match = _VERSION.search(output)
    if not match:
        raise ClientError(f'cannot read a PostgreSQL version from {output.strip()!r}')
    return int(match.group('major')), match.group('version')


def client_version(path: str, module: Runner | None = None) -> tuple[int, str]:
    result = run_client([path, '--version'], module=module)
    if result.rc != 0:
        raise ClientError(f'{path} --version failed: {(result.stderr or result.stdout).strip()}')
    return parse_client_version(result.stdout)


def server_major(version_num: int) -> int:
    """``server_version_num`` -> major version (150018 -> 15; 90624 -> 9, as 9.x clients print 9)."""
    return version_num // 10000


def version_problem(client: str, client_major: int, server_version_num: int) -> str | None:
    """Why ``client`` cannot dump this server, or None: pg_dump refuses servers newer than itself."""
    major = server_major(server_version_num)
    if client_major < major:
        return (
            f'{client} {client_major} cannot dump server {major}: install postgresql-client-{major} '
            f'(or newer) and/or set {client}_path to its {client}'
        )
    return None


# ---------------------------------------------------------------------------------------------
# Archives
# ---------------------------------------------------------------------------------------------

def _files_of(path: str) -> list[str]:
    if os.path.isdir(path):
        return sorted(
            os.path.relpath(os.path.join(root, name), path)
            for root, _dirs, names in os.walk(path) for name in names
        )
    return []


def _sha256_stream(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for chunk in iter(lambda: handle.read(CHUNK_SIZE), b''):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_archive(path: str) -> str:
    """SHA-256 of a file, read in chunks. For a directory archive: of the lines ``<sha256>  <name>``
    for its files in name order (what ``sha256sum`` prints for them)."""
    if not os.path.isdir(path):
        return _sha256_stream(path)
    manifest = ''.join(f'{_sha256_stream(os.path.join(path, name))}  {name}\n' for name in _files_of(path))
    return hashlib.sha256(manifest.encode('utf-8')).hexdigest()


def archive_size(path: str) -> int:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(path, name)) for name in _files_of(path))
    return os.path.getsize(path)


def restrict_mode(path: str) -> None:
    """0600 for a file; 0700 for a directory archive and 0600 for its files."""
    if os.path.isdir(path):
        os.chmod(path, 0o700)
        for name in _files_of(path):
            os.chmod(os.path.join(path, name), 0o600)
    else:
        os.chmod(path, 0o600)


def remove_archive(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)


def verify_argv(pg_restore: str, path: str | None = None) -> list[str]:
    """Read every block of the archive (``path``, or stdin when None) and throw the SQL away: a truncated
    archive fails here."""
    return [pg_restore, '--file=/dev/null', *([path] if path else [])]


def check_verified(path: str, rc: int, stderr: str) -> None:
    """Raises ClientError unless pg_restore's verifying read of ``path`` ended cleanly."""
    if rc != 0 or 'error:' in stderr:
        raise ClientError(
            f"archive {path} failed verification (pg_restore could not read it completely): "
            f"{stderr.strip() or f'exit code {rc}'}"
        )


def verify_archive(pg_restore: str, path: str, module: Runner | None = None) -> Result:
    """Raises ClientError unless pg_restore reads the whole archive."""
    result = run_client(verify_argv(pg_restore, path), module=module)
    check_verified(path, result.rc, result.stderr)
    return result


@dataclass
class StreamedArchive:
    sha256: str
    size: int
    dump_rc: int
    dump_stderr: str


def stdin_from(path: str, argv: list[str]) -> list[str]:
    """``argv`` with its stdin opened from ``path`` (``/bin/sh``, arguments passed as positional parameters, never
    parsed by the shell). pg_restore reads a streamed archive only as its stdin: given a file name, it reopens the
    file after reading the header, which on a pipe loses the header."""
    return ['/bin/sh', '-c', 'path=$1; shift; exec "$@" < "$path"', 'sh', path, *argv]


class _Verifier(threading.Thread):
    """``pg_restore --file=/dev/null`` (``module.run_command``) on a thread of its own, its stdin the pipe whose
    write end ``feed`` the module fills; the module's copy of the read end is closed once pg_restore has it."""

    def __init__(self, module: Runner | None, pg_restore: str) -> None:
        super().__init__(name='ledgermind-verify', daemon=True)
        self.module = module
        self.pg_restore = pg_restore
        self._read, self.feed = os.pipe()
        self._lock = threading.Lock()
        self.rc, self.stderr = -1, ''
        self.error: ClientError | None = None

    def _close_read(self, _proc: t.Any = None) -> None:
        """Closes the module's copy of the read end, once: a second close could hit a descriptor reused since."""
        with self._lock:
            if self._read >= 0:
                os.close(self._read)
                self._read = -1

    def run(self) -> None:
        try:
            read = self._read
            self.rc, _out, self.stderr = run_command(
                self.module, stdin_from(f'/dev/fd/{read}', verify_argv(self.pg_restore)), pass_fds=(read,),
                before_communicate_callback=self._close_read)
        except ClientError as exc:
            self.error = exc
        finally:
            self._close_read()  # pg_restore never started: the module's writes fail instead of blocking


def stream_verified_archive(dump_argv: list[str], env: dict[str, str], pg_restore: str, path: str,
                            module: Runner | None = None) -> StreamedArchive:
    """One pass over pg_dump's custom-format output (``dump_argv`` writes to stdout): every chunk goes to
    ``path`` (already created 0600), into SHA-256, and into ``pg_restore --file=/dev/null`` reading the
    stream as it arrives, so verification costs no time of its own. The file is fsynced.

    Both clients run through ``module.run_command``: pg_dump's stdout is read as it comes (its
    ``before_communicate_callback``), pg_restore reads a pipe (``/dev/fd/N``) on a thread of its own.

    The archive is what ``pg_dump -Fc > path`` writes: written to a pipe, its table of contents carries no
    data offsets, so pg_restore reads it in order (selective and ``-j`` restores still work with
    pg_restore 12 and newer, which scans for the blocks it needs).

    Raises ClientError when pg_restore cannot read the whole stream or the file cannot be written;
    returns pg_dump's exit code and stderr for the caller to judge (see ``dump_error``).
    """
    digest = hashlib.sha256()
    size = 0
    dump_err: list[bytes] = []
    write_error: list[OSError] = []
    verifier = _Verifier(module, pg_restore)
    verifier.start()

    def pump(dump: t.Any) -> None:
        """Reads pg_dump's stdout (to the archive, the digest and pg_restore) and stderr until both end."""
        nonlocal size
        feeding = True
        with selectors.DefaultSelector() as selector, open(path, 'r+b') as out:
            out.truncate()
            selector.register(dump.stdout, selectors.EVENT_READ, 'stdout')
            selector.register(dump.stderr, selectors.EVENT_READ, 'stderr')
            while selector.get_map():
                for key, _event in selector.select():
                    chunk = os.read(key.fd, CHUNK_SIZE)
                    if not chunk:
                        selector.unregister(key.fileobj)
                    elif key.data == 'stderr':
                        dump_err.append(chunk)
                    elif not write_error:
                        try:
                            out.write(chunk)
                        except OSError as exc:
                            write_error.append(exc)
                            dump.kill()  # the rest is read and dropped until pg_dump's pipes close
                            continue
                        digest.update(chunk)
                        size += len(chunk)
                        if feeding:
                            try:
                                _write_all(verifier.feed, chunk)
                            except BrokenPipeError:  # pg_restore gave up; its exit code and stderr say why
                                feeding = False
            if not write_error:
                try:
                    out.flush()
                    os.fsync(out.fileno())
                except OSError as exc:
                    write_error.append(exc)

    try:
        dump_rc, _out, _err = run_command(module, dump_argv, env, umask=0o077, before_communicate_callback=pump)
    except OSError as exc:  # the archive could not be opened
        write_error.append(exc)
        dump_rc = -1
    finally:
        with contextlib.suppress(OSError):
            os.close(verifier.feed)
        verifier.join()
    if write_error:
        raise ClientError(f'cannot write the archive {path}: {write_error[0]}')
    if verifier.error is not None:
        raise verifier.error
    dump_stderr = b''.join(dump_err).decode('utf-8', errors='replace')[-4000:]
    if dump_rc == 0:  # a failed dump is reported by the caller, with pg_dump's own message
        check_verified(path, verifier.rc, verifier.stderr[-4000:])
    return StreamedArchive(digest.hexdigest(), size, dump_rc, dump_stderr)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# ---------------------------------------------------------------------------------------------
# Sidecars
# ---------------------------------------------------------------------------------------------

def sidecar_path(archive: str) -> str:
    return archive.rstrip('/') + SIDECAR_SUFFIX


def write_sidecar(path: str, data: dict[str, t.Any]) -> None:
    """Write JSON atomically (a temporary name, then rename), mode 0600."""
    tmp = path + PARTIAL_SUFFIX
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write('\n')
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# The fields a sidecar may hold and their JSON types (None allowed for every one): a sidecar that is JSON
# but not in this shape is refused by name rather than failing later on a field of the wrong type.
SIDECAR_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    'archive': (str,), 'sha256': (str,), 'size_bytes': (int,), 'created': (str,), 'database': (str,),
    'scope': (str,), 'schema': (str,), 'table': (str,), 'format': (str,), 'identity': (dict,),
    'metadata': (dict,), 'content': (dict,),
}


def sidecar_problem(data: t.Any) -> str | None:
    """Why ``data`` (a parsed sidecar) is not one pg_backup_archive writes, or None."""
    if not isinstance(data, dict):
        return f'it holds a JSON {type(data).__name__}, not an object'
    wrong = [
        f'{name} is {type(data[name]).__name__}'
        for name, types in SIDECAR_FIELD_TYPES.items()
        if data.get(name) is not None and (not isinstance(data[name], types) or isinstance(data[name], bool))
    ]
    return 'fields of the wrong type: ' + ', '.join(wrong) if wrong else None


def read_sidecar(path: str) -> dict[str, t.Any] | None:
    """The sidecar's content, or None when there is none; raises ClientError, naming the file, when it
    cannot be read, is not JSON or not in the shape pg_backup_archive writes."""
    if not os.path.lexists(path):
        return None
    try:
        with open(path, encoding='utf-8') as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ClientError(f'cannot read sidecar {path}: {exc}') from None
    problem = sidecar_problem(data)
    if problem:
        raise ClientError(f'sidecar {path} is not one pg_backup_archive writes: {problem}')
    return t.cast(dict, data)


def sidecar_or_reason(path: str) -> dict[str, t.Any] | str | None:
    """``read_sidecar`` for retention: the content, None when missing, or why it cannot be read."""
    try:
        return read_sidecar(path)
    except ClientError as exc:
        return str(exc)


# ---------------------------------------------------------------------------------------------
# Names and retention
# ---------------------------------------------------------------------------------------------

def safe_prefix(text: str) -> str:
    """A file-name-safe prefix: anything but letters, digits, ``.``, ``-`` and ``_`` becomes ``_``."""
    return re.sub(r'[^A-Za-z0-9._-]+', '_', text).strip('._') or 'backup'


def default_prefix(dbname: str, scope: str, schema: str, table: str) -> str:
    if scope == 'full':
        return safe_prefix(f'{dbname}_full')
    if schema == 'public':
        return safe_prefix(f'{dbname}_{table}')
    return safe_prefix(f'{dbname}_{schema}.{table}')


def archive_name(prefix: str, fmt: str, when: time.struct_time, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """``<prefix>_<UTC timestamp>[-N].<ext>``, avoiding names in ``taken`` (two backups in a second)."""
    stamp = time.strftime(TIMESTAMP_FORMAT, when)
    ext = ARCHIVE_EXTENSIONS[fmt]
    name = f'{prefix}_{stamp}{ext}'
    counter = 1
    while name in taken or name + PARTIAL_SUFFIX in taken or sidecar_path(name) in taken:
        counter += 1
        name = f'{prefix}_{stamp}-{counter}{ext}'
    return name


def _archive_pattern(prefix: str) -> re.Pattern[str]:
    exts = '|'.join(re.escape(ext) for ext in ARCHIVE_EXTENSIONS.values())
    return re.compile(rf'^{re.escape(prefix)}_(?P<stamp>\d{{8}}T\d{{6}}Z)(?:-(?P<n>\d+))?(?:{exts})$')


def archives_newest_first(names: list[str], prefix: str) -> list[str]:
    """Archive names with ``prefix`` (as this module writes them), newest first by their timestamp.

    Sidecars, partial files and other prefixes are ignored."""
    pattern = _archive_pattern(prefix)
    archives = []
    for name in names:
        match = pattern.match(name)
        if match:
            archives.append(((match.group('stamp'), int(match.group('n') or 1)), name))
    archives.sort(reverse=True)
    return [name for _key, name in archives]


def select_expired(names: list[str], prefix: str, keep: int) -> list[str]:
    """Archive names with ``prefix`` beyond the newest ``keep`` (by their timestamp), oldest last.

    Only names this module writes count; sidecars, partial files and other prefixes are ignored.
    ``keep`` 0 or less keeps everything."""
    if keep <= 0:
        return []
    return archives_newest_first(names, prefix)[keep:]


@dataclass
class RetentionPlan:
    """What retention does with the archives of a prefix (names, not paths)."""

    expired: list[str] = field(default_factory=list)
    # Beyond ``keep``, but the newest archive of their recorded column type (e.g. the last text[] archive).
    kept_last_of_type: list[str] = field(default_factory=list)
    # Not candidates at all: (name, why) - another database's, no identity, an unreadable sidecar.
    skipped: list[tuple[str, str]] = field(default_factory=list)


def retention_candidate(sidecar: dict[str, t.Any] | str | None, current: dict[str, t.Any]) -> str | None:
    """Why an archive with this sidecar (``sidecar_or_reason``) is not this database's to delete, or None."""
    if sidecar is None:
        return 'no sidecar records which database it is of'
    if isinstance(sidecar, str):
        return sidecar
    if not sidecar.get('identity'):
        return 'its sidecar records no database identity (written before identities were recorded)'
    mismatches = identity_mismatches(sidecar['identity'], current)
    if mismatches:
        return 'another database or table: ' + '; '.join(mismatches)
    return None


def plan_retention(archives: list[tuple[str, dict[str, t.Any] | str | None]], current: dict[str, t.Any],
                   keep: int) -> RetentionPlan:
    """Which of ``archives`` (newest first, each with its ``sidecar_or_reason``) retention deletes.

    Only archives whose sidecar identity is this database's table (``current``, no mismatches) are
    candidates, and they alone count towards ``keep``; of them, the newest archive of each recorded
    column type is never deleted, so the last backup of the pre-migration state (``text[]``) survives
    any number of backups of the converted table. ``keep`` 0 or less deletes nothing."""
    plan = RetentionPlan()
    if keep <= 0:
        return plan
    ours: list[tuple[str, t.Any]] = []
    for name, sidecar in archives:
        reason = retention_candidate(sidecar, current)
        if reason:
            plan.skipped.append((name, reason))
        else:
            ours.append((name, t.cast(dict, sidecar)['identity'].get('column_type')))
    newest_of_type: dict[t.Any, str] = {}
    for name, column_type in ours:
        if column_type is not None:
            newest_of_type.setdefault(column_type, name)
    for name, column_type in ours[keep:]:
        if newest_of_type.get(column_type) == name:
            plan.kept_last_of_type.append(name)
        else:
            plan.expired.append(name)
    return plan


# ---------------------------------------------------------------------------------------------
# Table of contents (pg_restore --list --verbose)
# ---------------------------------------------------------------------------------------------

@dataclass
class TocEntry:
    dump_id: int
    desc: str
    schema: str
    tag: str
    owner: str
    line: str
    deps: set[int] = field(default_factory=set)

    @property
    def label(self) -> str:
        return f'{self.desc} {self.schema} {self.tag}'


def _split_rest(rest: str) -> tuple[str, str, str, str]:
    """``TABLE DATA public ml_features owner`` -> desc, schema, tag, owner."""
    for desc in _KNOWN_DESCS:
        if rest == desc or rest.startswith(desc + ' '):
            remainder = rest[len(desc) + 1:]
            break
    else:
        desc, _sep, remainder = rest.partition(' ')
    schema, _sep, remainder = remainder.partition(' ')
    tag, _sep, owner = remainder.rstrip().rpartition(' ')
    if not tag:  # no owner (e.g. ENCODING entries)
        tag, owner = owner, ''
    return desc, schema, tag, owner


def parse_toc(text: str) -> list[TocEntry]:
    """Entries of ``pg_restore --list --verbose`` output, with their ``depends on`` ids."""
    entries: list[TocEntry] = []
    for line in text.splitlines():
        match = _TOC_LINE.match(line)
        if match:
            desc, schema, tag, owner = _split_rest(match.group('rest'))
            entries.append(TocEntry(int(match.group('id')), desc, schema, tag, owner, line))
            continue
        depends = _DEPENDS_LINE.match(line)
        if depends and entries:
            entries[-1].deps.update(int(i) for i in depends.group('ids').split())
    return entries


def table_entries(entries: list[TocEntry], schema: str, table: str) -> list[TocEntry]:
    """The table's own entries in archive order: its TABLE, and everything that depends on it or on
    one of its kept entries (data, indexes, constraints, triggers, defaults, owned sequences,
    comments, ACLs...), except other tables' constraints/triggers that merely reference it."""
    kept = {e.dump_id for e in entries if e.desc == 'TABLE' and e.schema == schema and e.tag == table}
    if not kept:
        return []
    changed = True
    while changed:
        changed = False
        for entry in entries:
            if entry.dump_id in kept or entry.desc not in TABLE_MEMBER_DESCS or not entry.deps & kept:
                continue
            own = entry.schema == schema and entry.tag.startswith(table + ' ')
            if entry.desc in TABLE_PREFIXED_DESCS and not own:
                continue
            if entry.desc == 'TABLE DATA' and not (entry.schema == schema and entry.tag == table):
                continue
            kept.add(entry.dump_id)
            changed = True
    return [e for e in entries if e.dump_id in kept]


def toc_list_text(entries: list[TocEntry]) -> str:
    """A ``pg_restore --use-list`` file restoring exactly ``entries``."""
    return ''.join(e.line + '\n' for e in entries)


def without_triggers(entries: list[TocEntry], table: str, names: list[str] | tuple[str, ...]) -> tuple[
        list[TocEntry], list[TocEntry]]:
    """``entries`` (a table's, from ``table_entries``) split into those to restore and those left out: the
    table's triggers named in ``names`` (TOC tag ``<table> <name>``) and whatever depends on one of them
    (a comment on it), e.g. the write log's trigger, whose function a scratch database does not have."""
    wanted = {f'{table} {name}' for name in names}
    dropped = {e.dump_id for e in entries if e.desc == 'TRIGGER' and e.tag in wanted}
    changed = bool(dropped)
    while changed:
        changed = False
        for entry in entries:
            if entry.dump_id not in dropped and entry.deps & dropped:
                dropped.add(entry.dump_id)
                changed = True
    return [e for e in entries if e.dump_id not in dropped], [e for e in entries if e.dump_id in dropped]
