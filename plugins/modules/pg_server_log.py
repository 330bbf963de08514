#!/usr/bin/python
# Copyright (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: pg_server_log
short_description: The ERROR, FATAL, PANIC and WARNING entries the PostgreSQL server logged during a time window
version_added: 0.1.0
description:
  - Returns the entries of the server log whose time falls in a window (O(since) to O(until)), at the chosen
    O(levels), each with its C(DETAIL), C(HINT), C(CONTEXT), C(QUERY) and C(STATEMENT) lines attached, and how
    many there were per level. The runbook tails the server log during the migration; this is that tail, for the
    sign-off.
  - "Where the log is read from, in order: B(sql), through C(pg_read_binary_file) on the database server, when
    the role may (superuser, or EXECUTE on C(pg_read_binary_file) and C(pg_stat_file) granted, plus
    C(pg_read_server_files) for a file outside the data directory). The file is O(log_file) when given, else the
    one C(pg_current_logfile) (or the data directory's C(current_logfiles)) names; with C(pg_ls_logdir)
    (C(pg_monitor)) the files the logging collector rotated away during the window are read too."
  - "Else B(file): the log file on the host where the module runs: O(log_file), else the one found from this host
    when the server runs here (the collector's C(current_logfiles) in the data directory, or, without the
    collector, the file the server's standard error goes to, as C(pg_ctl -l) sets it up, through C(/proc); this
    needs the server's OS user or root). Its rotated copy C(<file>.1) is read too when written to in the window."
  - Else RV(source=unavailable) with the RV(reason); the module does not fail for that.
  - Only the log's tail is read, backwards in chunks from its end, until an entry older than O(since), at most
    O(max_read_bytes) bytes in all.
  - "Parses the three formats the server writes: C(stderr) with the server's C(log_line_prefix) (lines of other
    prefixes that start with a timestamp are read too), C(csvlog) and C(jsonlog). Timestamps carry the
    C(log_timezone)'s abbreviation and are returned in UTC."
  - Read-only; never reports a change.
author:
  - LedgerMind SRE (@ledgermind)
attributes:
  check_mode:
    support: full
    details: Reads the log as in a normal run; it changes nothing either way.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  since:
    description:
      - Start of the window, ISO 8601 (C(2026-12-02T04:45:04Z), C(2026-12-02 04:45:04+02:00)). Without a zone it
        is UTC.
      - The server's clock writes the log. A time taken on the controller (C(ledgermind_run.started)) is off by
        the clocks' difference; the run record's C(started_at) is the server's.
    type: str
    required: true
  until:
    description:
      - End of the window, ISO 8601. Default (unset) is the log's end.
    type: str
  levels:
    description:
      - The severities to return. C(LOG), C(INFO), C(NOTICE) and C(DEBUG) are accepted too.
    type: list
    elements: str
    default: [ERROR, FATAL, PANIC, WARNING]
  max_lines:
    description:
      - At most this many entries are returned, the most severe first, then the earliest (returned in time
        order). RV(counts) and RV(total) count them all; RV(truncated) says when some were left out.
    type: int
    default: 200
  log_file:
    description:
      - The server log's path on the database host. Read through SQL when the role may read it there, else on
        the host where the module runs (run the module on the database host, for example with C(delegate_to)).
      - Default (unset) is the file the server names or the one found on this host (see the description).
    type: path
  method:
    description:
      - V(auto) tries SQL, then the file on this host. V(sql) and V(file) try only that one.
    type: str
    choices: [auto, sql, file]
    default: auto
  only_this_database:
    description:
      - Leave out entries of sessions on other databases than the connection's. Entries that name no database
        (the postmaster's, the checkpointer's, a failed login's) are kept.
      - The C(stderr) format names the database only when C(log_line_prefix) has C(%d); without it every entry
        is kept, and RV(notes) says so.
    type: bool
    default: false
  max_read_bytes:
    description:
      - At most this many bytes of log are read (all files together). When they do not reach back to O(since),
        RV(complete) is false and RV(truncated) true.
    type: int
    default: 33554432
extends_documentation_fragment:
  - ledgermind.migrations.connection
  - ledgermind.migrations.connection.lock_timeout
  - ledgermind.migrations.connection.psycopg2
  - ansible.builtin.action_common_attributes
notes:
  - "To let a role read the log through SQL: C(GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text,
    bigint, bigint, boolean), pg_catalog.pg_stat_file(text, boolean), pg_catalog.pg_current_logfile(text) TO
    role), plus C(GRANT pg_monitor TO role) for rotated files, and C(GRANT pg_read_server_files TO role) for a
    log outside the data directory."
  - Without the logging collector (C(logging_collector=off)) the server names no log file; give O(log_file), or
    run the module on the database host.
  - With C(lc_messages) other than English the severities are translated and not recognised; RV(notes) says so.
seealso:
  - module: ledgermind.migrations.pg_table_activity
  - name: PostgreSQL error reporting and logging
    description: log_destination, logging_collector, log_line_prefix, csvlog and jsonlog.
    link: https://www.postgresql.org/docs/current/runtime-config-logging.html
'''

EXAMPLES = r'''
- name: What the server logged during the run
  ledgermind.migrations.pg_server_log:
    database_url: "{{ lookup('ansible.builtin.env', 'DATABASE_URL') }}"
    since: "{{ ledgermind_run_record.record.started_at | default(ledgermind_run.started) }}"
    only_this_database: true
  register: server_log

- name: The local stack writes its log to .stack/postgres.log (pg_ctl -l, no logging collector)
  ledgermind.migrations.pg_server_log:
    database_url: "{{ lookup('ansible.builtin.env', 'DATABASE_URL') }}"
    since: "2026-12-02T04:45:00Z"
    until: "2026-12-02T05:00:00Z"
    log_file: "{{ playbook_dir }}/../.stack/postgres.log"
    levels: [ERROR, FATAL, PANIC]
    max_lines: 50

- name: Say what it found
  ansible.builtin.debug:
    msg: >-
      {{ server_log.counts }} from {{ server_log.source }} ({{ server_log.reason }})
'''

RETURN = r'''
source:
  description: Where the log was read, V(sql), V(file) (on the host where the module ran) or V(unavailable).
  returned: always
  type: str
  sample: file
reason:
  description:
    - How the log was found (and why not through SQL, for V(file)), or why it could not be read.
  returned: always
  type: str
  sample: >-
    read on this host: /srv/pg/postgres.log, the server's standard error (found through /proc/28262); not
    through SQL: the role ledgermind may not read server files through SQL (needs EXECUTE on
    pg_read_binary_file and pg_stat_file)
files:
  description: The files read, newest first.
  returned: always
  type: list
  elements: str
  sample: [/srv/pg/postgres.log]
format:
  description: The log's format, V(stderr), V(csvlog) or V(jsonlog); null when nothing was read.
  returned: always
  type: str
  sample: stderr
window:
  description: The window, C(since) and C(until) (null for the log's end), ISO 8601 in UTC.
  returned: always
  type: dict
  sample: {since: "2026-12-02T04:45:00.000+00:00", until: null}
entries:
  description:
    - The entries, in time order. C(time) (ISO 8601, UTC), C(level) and C(message) always; C(detail), C(hint),
      C(context), C(query), C(statement), C(sqlstate), C(pid), C(database), C(user), C(application) when the log
      carries them. A field longer than 4000 characters is cut and ends with C([...]).
  returned: always
  type: list
  elements: dict
  sample:
    - time: "2026-12-02T04:46:00.303+00:00"
      level: ERROR
      message: division by zero
      statement: SELECT 1/0
      pid: 21230
counts:
  description: How many entries of the window there were per level (every level of O(levels), zeros included).
  returned: always
  type: dict
  sample: {ERROR: 1, FATAL: 0, PANIC: 0, WARNING: 2}
total:
  description: The sum of RV(counts).
  returned: always
  type: int
  sample: 3
truncated:
  description: Whether entries were left out, by O(max_lines) or because O(max_read_bytes) stopped the read.
  returned: always
  type: bool
  sample: false
complete:
  description:
    - Whether what was read covers the whole window, back to O(since). False when the read stopped at
      O(max_read_bytes), or reached the start of the oldest file known while a rotated one could hold older lines.
  returned: always
  type: bool
  sample: true
bytes_read:
  description: Bytes of log read.
  returned: always
  type: int
  sample: 1048576
notes:
  description: What limits the result (an untranslatable prefix, no database in the prefix, unknown time zones).
  returned: always
  type: list
  elements: str
  sample: []
database:
  description: The connection's database, the one O(only_this_database) keeps.
  returned: always
  type: str
  sample: ledgermind
server_time:
  description: The server's clock when the module ran, ISO 8601 in UTC.
  returned: always
  type: str
  sample: "2026-12-02T04:50:54.873+00:00"
'''

import dataclasses
import datetime
import os
import socket
import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ledgermind.migrations.plugins.module_utils._connection import (
    close,
    connect,
    fail,
    fail_on_query_error,
    postgres_connection_argument_spec,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._queries import (
    SERVER_LOG_CURRENT_FILE_SQL,
    SERVER_LOG_DIR_SQL,
    SERVER_LOG_READ_SQL,
    SERVER_LOG_SAVEPOINT,
    SERVER_LOG_SETTINGS_SQL,
    SERVER_LOG_STAT_SQL,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._server_log import (
    DEFAULT_LEVELS,
    SEVERITIES,
    Parser,
    counts,
    current_logfiles,
    destinations,
    detect_format,
    iso,
    local_reader,
    parse_window_time,
    preferred_format,
    public_entry,
    read_tail,
    rotated_siblings,
    same_kind_files,
    select,
)

CHUNK = 1 << 16  # bytes of the first read from the end (then doubling, up to 4 MiB)
PROBE = 1 << 16  # bytes read from the end to tell the format
PROC = '/proc'  # where this host's processes are (a test points it elsewhere)


def argument_spec() -> dict[str, t.Any]:
    spec = postgres_connection_argument_spec()
    spec.update(
        since=dict(type='str', required=True),
        until=dict(type='str'),
        levels=dict(type='list', elements='str', default=list(DEFAULT_LEVELS)),
        max_lines=dict(type='int', default=200),
        log_file=dict(type='path'),
        method=dict(type='str', choices=['auto', 'sql', 'file'], default='auto'),
        only_this_database=dict(type='bool', default=False),
        max_read_bytes=dict(type='int', default=32 << 20),
    )
    return spec


@dataclasses.dataclass
class Window:
    since: datetime.datetime
    until: datetime.datetime | None
    levels: list[str]
    max_lines: int
    budget: int


@dataclasses.dataclass
class LogFile:
    """One file to read, wherever it is: ``read(offset, length)`` returns its bytes."""

    path: str
    size: int
    read: t.Callable[[int, int], bytes]
    fmt: str | None = None
    mtime: datetime.datetime | None = None


@dataclasses.dataclass
class Found:
    """Files to read, newest first; ``exhaustive`` when no other file can hold lines of the window."""

    files: list[LogFile]
    how: str
    exhaustive: bool
    notes: list[str] = dataclasses.field(default_factory=list)


class Unavailable(Exception):
    """This way of reading the log is not possible; the message says why."""


def window_of(module: AnsibleModule) -> Window:
    params = module.params
    try:
        since = parse_window_time(params['since'])
    except ValueError as e:
        fail(module, f'since: {e}.')
    until = None
    if params['until']:
        try:
            until = parse_window_time(params['until'])
        except ValueError as e:
            fail(module, f'until: {e}.')
        if until < since:
            fail(module, f"until ({params['until']}) is before since ({params['since']}).")
    levels: list[str] = []
    for level in params['levels'] or []:
        name = str(level).strip().upper()
        if name not in SEVERITIES:
            fail(module, f"levels: unknown level {level!r}; choose among {', '.join(SEVERITIES)}.")
        if name not in levels:
            levels.append(name)
    if not levels:
        fail(module, 'levels must name at least one level.')
    if params['max_lines'] < 0:
        fail(module, 'max_lines must be 0 or more.')
    if params['max_read_bytes'] <= 0:
        fail(module, 'max_read_bytes must be more than 0.')
    return Window(since, until, levels, params['max_lines'], params['max_read_bytes'])


# ---------------------------------------------------------------------------------------------
# Through SQL
# ---------------------------------------------------------------------------------------------

def _query(conn: t.Any, statement: str, params: dict[str, t.Any] | None = None) -> list[dict[str, t.Any]]:
    """One read inside a savepoint: a failure (privilege, missing file) raises and leaves the transaction usable."""
    with conn.cursor() as cur:
        cur.execute(SERVER_LOG_SAVEPOINT.create)
        try:
            cur.execute(statement, params)
            rows = [dict(r) for r in cur.fetchall()]
        except Exception:
            cur.execute(SERVER_LOG_SAVEPOINT.rollback)
            raise
        cur.execute(SERVER_LOG_SAVEPOINT.release)
    return rows


def _server_error(error: Exception) -> str:
    return ' '.join(str(getattr(error, 'pgerror', None) or error).split()).removeprefix('ERROR: ').strip()


def sql_file(conn: t.Any, path: str) -> LogFile:
    """A file on the database host, read through pg_read_binary_file. Raises Unavailable."""
    try:
        rows = _query(conn, SERVER_LOG_STAT_SQL, dict(path=path))
    except Exception as e:  # noqa: BLE001 - psycopg2.Error: the server's reason is the message
        raise Unavailable(f'pg_stat_file({path}) failed: {_server_error(e)}') from None
    if not rows or rows[0].get('size') is None:
        raise Unavailable(f'{path} does not exist on the database host')
    if rows[0].get('isdir'):
        raise Unavailable(f'{path} is a directory on the database host')

    def read(offset: int, length: int) -> bytes:
        try:
            got = _query(conn, SERVER_LOG_READ_SQL, dict(path=path, offset=offset, length=length))
        except Exception as e:  # noqa: BLE001
            raise Unavailable(f'pg_read_binary_file({path}) failed: {_server_error(e)}') from None
        data = got[0].get('data') if got else None
        return bytes(data) if data is not None else b''

    return LogFile(path, int(rows[0]['size']), read, mtime=rows[0].get('modification'))


def may_read_sql(settings: dict[str, t.Any]) -> str | None:
    """Why the role may not read server files through SQL, or None when it may."""
    if settings.get('superuser') or (settings.get('may_read_file') and settings.get('may_stat_file')):
        return None
    return (f"the role {settings.get('role')} may not read the server log through SQL (it is not superuser; it "
            'needs EXECUTE on pg_read_binary_file and pg_stat_file, and pg_read_server_files for a log outside the '
            'data directory)')


def find_sql(conn: t.Any, settings: dict[str, t.Any], window: Window, log_file: str | None) -> Found:
    """The log's files on the database host, readable through SQL. Raises Unavailable."""
    denied = may_read_sql(settings)
    if denied:
        raise Unavailable(denied)
    if log_file:
        if not os.path.isabs(log_file):
            raise Unavailable(f'log_file {log_file} is not an absolute path')
        files = [sql_file(conn, log_file)]
        try:  # logrotate's copy, when written to during the window
            rotated = sql_file(conn, log_file + '.1')
            if rotated.mtime is not None and rotated.mtime >= window.since - datetime.timedelta(seconds=1):
                files.append(rotated)
        except Unavailable:
            pass
        return Found(files, f'log_file {log_file} on the database host', True)
    dests = destinations(settings.get('log_destination'))
    if settings.get('logging_collector') != 'on':
        raise Unavailable('the server runs without the logging collector (logging_collector = off), so it names no '
                          'log file: its log is its standard error, wherever its start sent it (pg_ctl -l, '
                          "systemd's journal); give log_file")
    wanted = [d for d in dests if d in ('stderr', 'csvlog', 'jsonlog')]
    if not wanted:
        raise Unavailable(f"the server logs to {settings.get('log_destination')} only, not to a file it can name")
    names: dict[str, str] = {}
    how = ''
    if settings.get('superuser') or settings.get('may_current_logfile'):
        for fmt in wanted:
            try:
                rows = _query(conn, SERVER_LOG_CURRENT_FILE_SQL, dict(format=fmt))
            except Exception as e:  # noqa: BLE001
                raise Unavailable(f'pg_current_logfile() failed: {_server_error(e)}') from None
            if rows and rows[0].get('path'):
                names[fmt] = rows[0]['path']
        how = 'pg_current_logfile()'
    else:
        # EXECUTE on pg_read_binary_file alone reads the data directory, where the collector names its files.
        try:
            listing = sql_file(conn, 'current_logfiles')
            names = current_logfiles(listing.read(0, listing.size).decode('utf-8', 'replace'))
        except Unavailable as e:
            raise Unavailable(f"the role may not run pg_current_logfile() and the data directory's "
                              f'current_logfiles could not be read ({e})') from None
        how = "the data directory's current_logfiles"
    fmt = preferred_format(names)
    if fmt is None:
        raise Unavailable(f'{how} names no log file for log_destination = {settings.get("log_destination")}')
    current = sql_file(conn, names[fmt])
    current.fmt = fmt
    files, exhaustive, notes = [current], False, []
    if settings.get('superuser') or settings.get('may_ls_logdir'):
        directory = os.path.dirname(names[fmt])
        suffix = os.path.splitext(names[fmt])[1]
        try:
            # pg_stat_file's times are whole seconds.
            rows = _query(conn, SERVER_LOG_DIR_SQL, dict(since=window.since - datetime.timedelta(seconds=1)))
        except Exception as e:  # noqa: BLE001 - best effort: the current file is still read
            notes.append(f'files rotated during the window were not looked for: pg_ls_logdir() failed '
                         f'({_server_error(e)})')
        else:
            exhaustive = True
            for row in rows:
                path = os.path.join(directory, row['name'])
                if path == names[fmt] or os.path.splitext(row['name'])[1] != suffix:
                    continue
                try:
                    older = sql_file(conn, path)
                except Unavailable as e:
                    notes.append(f'a file rotated during the window could not be read: {e}')
                    exhaustive = False
                    continue
                older.fmt = fmt
                files.append(older)
    else:
        notes.append('files rotated during the window are looked for only with pg_monitor (pg_ls_logdir())')
    return Found(files, f'{names[fmt]}, named by {how}', exhaustive, notes)


# ---------------------------------------------------------------------------------------------
# On this host
# ---------------------------------------------------------------------------------------------

def local_file(path: str) -> LogFile:
    try:
        size, _mtime, read = local_reader(path)
    except OSError as e:
        raise Unavailable(f'{path}: {e.strerror or e}') from None
    if os.path.isdir(path):
        raise Unavailable(f'{path} is a directory')
    return LogFile(path, size, read)


def client_port(conn: t.Any) -> int | None:
    """The local TCP port of the connection (the server's process title names it), None for a Unix socket."""
    try:
        sock = socket.socket(fileno=os.dup(conn.fileno()))
    except Exception:  # noqa: BLE001 - no socket to look at (a test's fake connection)
        return None
    try:
        name = sock.getsockname()
        return int(name[1]) if isinstance(name, tuple) else None
    except OSError:
        return None
    finally:
        sock.close()  # the duplicate only


def _read_text(path: str, limit: int = 1 << 16) -> str:
    with open(path, 'rb') as handle:
        return handle.read(limit).decode('utf-8', 'replace')


def our_backend(settings: dict[str, t.Any], port: int | None) -> str | None:
    """``/proc/<pid>`` of our own backend when the server runs on this host, else None.

    The process title names the database and, over TCP, our client port; without a port, its working directory
    must be the server's data directory.
    """
    proc = os.path.join(PROC, str(settings['backend_pid']))
    try:
        title = _read_text(os.path.join(proc, 'cmdline')).replace('\0', ' ')
    except OSError:
        return None
    if 'postgres' not in os.path.basename(title.split(' ', 1)[0].rstrip(':')):
        return None
    if port is not None and f'({port})' in title and f" {settings['database']} " in f' {title} ':
        return proc
    data_directory = settings.get('data_directory')
    try:
        if data_directory and os.path.realpath(os.readlink(os.path.join(proc, 'cwd'))) == \
                os.path.realpath(data_directory):
            return proc
    except OSError:
        pass
    return None


def data_directory_here(settings: dict[str, t.Any], proc: str | None) -> tuple[str | None, str]:
    """The server's data directory on this host, proven by its postmaster.pid or our backend's working directory."""
    declared = settings.get('data_directory')
    if declared:
        try:
            lines = _read_text(os.path.join(declared, 'postmaster.pid')).splitlines()
            started = settings.get('postmaster_start')
            if len(lines) > 2 and started is not None and abs(int(lines[2]) - started.timestamp()) <= 2:
                return declared, ''
        except (OSError, ValueError):
            pass
    if proc:
        try:
            return os.readlink(os.path.join(proc, 'cwd')), ''
        except OSError as e:
            return None, (f'the server runs here but its data directory could not be found ({e.strerror}; run the '
                          "module as root or as the server's OS user)")
    if declared:
        return None, f'the data directory {declared} is not on this host (or not readable by this user)'
    return None, ('the server does not run on this host, or this user may not see its process (its data '
                  'directory is secret to the role without pg_read_all_settings)')


def find_local(conn: t.Any, settings: dict[str, t.Any], window: Window) -> Found:
    """The server's log on this host, without log_file. Raises Unavailable."""
    proc = our_backend(settings, client_port(conn))
    if settings.get('logging_collector') == 'on':
        data_directory, why = data_directory_here(settings, proc)
        if data_directory is None:
            raise Unavailable(why)
        try:
            names = current_logfiles(_read_text(os.path.join(data_directory, 'current_logfiles')))
        except OSError as e:
            raise Unavailable(f'{data_directory}/current_logfiles could not be read: {e.strerror or e}') from None
        fmt = preferred_format(names)
        if fmt is None:
            raise Unavailable(f'{data_directory}/current_logfiles names no log file')
        path = os.path.join(data_directory, names[fmt])
        current = local_file(path)
        current.fmt = fmt
        files, notes, exhaustive = [current], [], True
        for older in same_kind_files(os.path.dirname(path), path, window.since):
            try:
                files.append(dataclasses.replace(local_file(older), fmt=fmt))
            except Unavailable as e:
                notes.append(f'a file rotated during the window could not be read: {e}')
                exhaustive = False
        return Found(files, f"{path}, named by the data directory's current_logfiles", exhaustive, notes)
    if proc is None:
        raise Unavailable('the server writes its log to its standard error (logging_collector = off), and it does '
                          'not run on this host or this user may not see its process')
    try:
        target = os.readlink(os.path.join(proc, 'fd', '2'))
    except OSError as e:
        raise Unavailable(f'the server runs here, but where its standard error goes could not be read from '
                          f"{proc}/fd/2 ({e.strerror}; run the module as root or as the server's OS user)") from None
    if not os.path.isabs(target) or not os.path.isfile(target):
        raise Unavailable(f"the server's standard error is not a file ({target}: the journal or syslog?)")
    files = [local_file(target)] + [local_file(p) for p in rotated_siblings(target, window.since)]
    return Found(files, f"{target}, the server's standard error (found through {proc})", True)


def find_file(conn: t.Any, settings: dict[str, t.Any], window: Window, log_file: str | None) -> Found:
    if log_file:
        try:
            current = local_file(log_file)
        except Unavailable as e:
            raise Unavailable(f'log_file cannot be read on this host ({e}); the module reads it where it runs: run '
                              'it on the database host (delegate_to) as a user that may read it') from None
        files = [current] + [local_file(p) for p in rotated_siblings(log_file, window.since)]
        return Found(files, f'log_file {log_file}', True)
    try:
        return find_local(conn, settings, window)
    except Unavailable as e:
        raise Unavailable(f'no log_file was given and the log was not found on this host: {e}') from None


# ---------------------------------------------------------------------------------------------
# Reading and judging
# ---------------------------------------------------------------------------------------------

def read_found(found: Found, settings: dict[str, t.Any], window: Window,
               database: str | None) -> dict[str, t.Any]:
    """Read the files backwards until the window's start; the result's entries, counts and completeness."""
    notes = list(found.notes)
    entries: list[dict[str, t.Any]] = []
    spent, complete, stopped, files_read, fmt = 0, False, False, [], None
    parser: Parser | None = None
    for log in found.files:
        if spent >= window.budget:
            stopped = True
            break
        if parser is None or log.fmt not in (None, parser.format):
            fmt = log.fmt or detect_format(
                log.read(max(0, log.size - PROBE), min(log.size, PROBE)).decode('utf-8', 'replace'))
            parser = Parser(fmt, settings.get('log_line_prefix') or '', settings.get('log_timezone'))
        tail = read_tail(log.read, log.size, window.since, parser, CHUNK, window.budget - spent)
        spent += len(tail.data)
        files_read.append(log.path)
        entries.extend(parser.parse(tail.data.decode('utf-8', 'replace'), tail.at_file_start))
        if tail.reached_since:
            complete = True
            break
        if tail.budget_spent:
            stopped = True
            break
    else:
        complete = found.exhaustive
    if stopped:
        notes.append(f"the read stopped after max_read_bytes={window.budget} bytes, before the window's start")
    elif not complete and files_read:
        notes.append("the oldest file read starts after the window's start; earlier lines of the window may be in "
                     'a rotated file that was not read')
    if parser is not None:
        notes.extend(parser_notes(parser, settings, entries, spent, database is not None))
    chosen = select(entries, window.since, window.until, window.levels, database)
    kept = chosen
    if len(chosen) > window.max_lines:
        rank = {level: i for i, level in enumerate(SEVERITIES)}
        kept = sorted(sorted(chosen, key=lambda e: (-rank[e['level']], e['time']))[:window.max_lines],
                      key=lambda e: e['time'])
    return dict(files=files_read, format=fmt, entries=[public_entry(e) for e in kept],
                counts=counts(chosen, window.levels), total=len(chosen), truncated=stopped or len(kept) < len(chosen),
                complete=complete and not stopped, bytes_read=spent, notes=notes)


def parser_notes(parser: Parser, settings: dict[str, t.Any], entries: list[dict[str, t.Any]], spent: int,
                 by_database: bool) -> list[str]:
    notes = []
    prefix = settings.get('log_line_prefix') or ''
    if parser.format == 'stderr':
        if not parser.has_time:
            notes.append(f'log_line_prefix {prefix!r} has no timestamp (%m, %t or %n): only lines that start with '
                         'one could be placed in the window')
        if by_database and 'database' not in parser.pattern.groupindex:
            notes.append(f'log_line_prefix {prefix!r} has no %d: entries cannot be told apart by database, so the '
                         'entries of every database are kept')
    if spent and not entries:
        notes.append(f'no line of what was read could be parsed as {parser.format}'
                     + (f' with log_line_prefix {prefix!r}' if parser.format == 'stderr' else ''))
    if parser.times.unknown:
        notes.append('unknown time zone abbreviations read in {} (log_timezone): {}'.format(
            settings.get('log_timezone') or 'UTC', ', '.join(sorted(parser.times.unknown))))
    messages = str(settings.get('lc_messages') or '')
    if messages and not messages.upper().startswith(('C', 'POSIX', 'EN')):
        notes.append(f'lc_messages is {messages}: severities may be translated and then not recognised')
    return notes


def collect(module: AnsibleModule, conn: t.Any, window: Window) -> dict[str, t.Any]:
    params = module.params
    with conn.cursor() as cur:
        cur.execute(SERVER_LOG_SETTINGS_SQL)
        row = cur.fetchone()
    settings = dict(row or {})
    database = settings.get('database') if params['only_this_database'] else None
    base: dict[str, t.Any] = dict(
        changed=False, files=[], format=None, entries=[], counts={level: 0 for level in window.levels}, total=0,
        truncated=False, complete=False, bytes_read=0, notes=[], database=settings.get('database'),
        window=dict(since=iso(window.since), until=iso(window.until) if window.until else None),
        server_time=iso(settings['server_now']) if settings.get('server_now') else None)
    why_not: list[str] = []
    ways: list[tuple[str, t.Callable[[], Found]]] = []
    if params['method'] in ('auto', 'sql'):
        ways.append(('sql', lambda: find_sql(conn, settings, window, params['log_file'])))
    if params['method'] in ('auto', 'file'):
        ways.append(('file', lambda: find_file(conn, settings, window, params['log_file'])))
    for source, find in ways:
        try:
            found = find()
            read = read_found(found, settings, window, database)
        except Unavailable as e:
            why_not.append(str(e))
            continue
        where = 'read through SQL (pg_read_binary_file): ' if source == 'sql' else 'read on this host: '
        reason = where + found.how + (f'; not through SQL: {why_not[0]}' if why_not else '')
        return dict(base, source=source, reason=reason, **read)
    return dict(base, source='unavailable', reason='; and '.join(why_not) or 'no method was tried')


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    window = window_of(module)
    conn = connect(module)
    try:
        result = collect(module, conn, window)
    except Exception as e:  # noqa: BLE001 - a settings query that failed: explained, never a traceback
        if getattr(e, 'pgcode', None) is not None or type(e).__module__.startswith('psycopg2'):
            fail_on_query_error(module, conn, e, 'the server settings')
        fail(module, f'Reading the server log failed: {type(e).__name__}: {e}')
    finally:
        close(conn)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
