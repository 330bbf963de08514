"""pg_server_log against real PostgreSQL: the stack of scripts/stack, and a scratch cluster of its own.

The stack runs without the logging collector: its log is the server's standard error, which ``pg_ctl -l`` sends to
``<stack dir>/postgres.log``. Its role is no superuser, so the module reads that file on this host (given as
log_file, or found through /proc when the tests run as root or as the server's OS user); a role granted
pg_read_server_files and EXECUTE on the file functions (through the stack's superuser socket) reads it through SQL.

A scratch cluster with the logging collector on (stderr, csvlog and jsonlog, a Debian-style prefix) gives
pg_current_logfile(), rotation (pg_rotate_logfile(), pg_ls_logdir() with pg_monitor) and the structured formats.
Each test makes its own ERROR and WARNING lines, told apart from everyone else's by a marker of its own.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg2
import pytest
from stackdb import reachable_server_url, with_db

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
READER = 'lm_test_log_reader'
READER_PASSWORD = 'Rd-l0g-9Kq2Zp'
FILE_FUNCTIONS = ('pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)',
                  'pg_catalog.pg_stat_file(text, boolean)')


# --- running Ansible --------------------------------------------------------------------------

def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(('PG', 'ANSIBLE_'))}
    env.update(ANSIBLE_CONFIG=str(REPO / 'ansible.cfg'), ANSIBLE_LOAD_CALLBACK_PLUGINS='1',
               ANSIBLE_STDOUT_CALLBACK='json', ANSIBLE_DEPRECATION_WARNINGS='0', ANSIBLE_NOCOLOR='1',
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return env


def server_log(args: dict[str, Any], *, check: bool = False) -> dict[str, Any]:
    """``ansible localhost -m ledgermind.migrations.pg_server_log -a <json>``: the host's result."""
    cmd = [str(BIN / 'ansible'), 'localhost', '-i', 'localhost,', '-c', 'local', '-e',
           f'ansible_python_interpreter={sys.executable}', '-m', 'ledgermind.migrations.pg_server_log',
           '-a', json.dumps(args)] + (['--check'] if check else [])
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=180)
    assert proc.stdout.strip(), proc.stderr
    doc = json.loads(proc.stdout[proc.stdout.index('{'):])
    result = doc['plays'][0]['tasks'][0]['hosts']['localhost']
    assert 'Traceback' not in proc.stdout + proc.stderr
    assert (proc.returncode != 0) == bool(result.get('failed')), (proc.returncode, result)
    return result


# --- the database side --------------------------------------------------------------------------

def sql(url: str, statement: str, params: Any = None) -> list[tuple]:
    conn = psycopg2.connect(url, application_name='lm_test_log')
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def server_now(url: str) -> str:
    return sql(url, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")[0][0]


def make_lines(url: str, marker: str) -> None:
    """An ERROR (with its STATEMENT), a WARNING (with its CONTEXT) and a LOG line, each naming ``marker``."""
    with pytest.raises(psycopg2.errors.DivisionByZero):
        sql(url, f'SELECT 1/0 AS "{marker}"')
    sql(url, f"DO $$ BEGIN RAISE WARNING 'lm_test_log warning {marker}'; END $$")
    sql(url, f"DO $$ BEGIN RAISE LOG 'lm_test_log log {marker}'; END $$")


def mine(result: dict[str, Any], marker: str) -> list[dict[str, Any]]:
    return [e for e in result['entries'] if marker in json.dumps(e)]


def assert_found(result: dict[str, Any], marker: str) -> None:
    error, warning = mine(result, marker)
    assert (error['level'], error['message']) == ('ERROR', 'division by zero')
    assert error['statement'] == f'SELECT 1/0 AS "{marker}"'
    assert (warning['level'], warning['message']) == ('WARNING', f'lm_test_log warning {marker}')
    assert warning['context'].startswith('PL/pgSQL function inline_code_block line 1 at RAISE')
    assert error['time'] <= warning['time'] and error['time'] >= result['window']['since']
    assert result['counts']['ERROR'] >= 1 and result['counts']['WARNING'] >= 1
    assert result['complete'] is True and result['truncated'] is False


def stack_log_file() -> str:
    """The stack's log (``pg_ctl -l <stack dir>/postgres.log``)."""
    dirs = [Path(os.environ['LEDGERMIND_STACK_DIR'])] if os.environ.get('LEDGERMIND_STACK_DIR') else []
    dirs += [REPO / '.stack', *map(Path, sorted(glob.glob('/var/tmp/ledgermind-stack-*')))]
    port = str(urlsplit(reachable_server_url()).port or 5432)
    for stack in dirs:
        pid_file = stack / 'data' / 'postmaster.pid'
        with contextlib.suppress(OSError):
            if pid_file.read_text().splitlines()[3] == port and (stack / 'postgres.log').is_file():
                return str(stack / 'postgres.log')
    pytest.skip('DATABASE_URL is not the local stack of scripts/stack: its log file is not on this host')


def admin_psql(statement: str, database: str = 'postgres') -> bool:
    """Runs SQL as the stack's superuser over its Unix socket; False when that is out of reach."""
    port = str(urlsplit(reachable_server_url()).port or 5432)
    psql = sorted(glob.glob('/usr/lib/postgresql/*/bin/psql'))
    run_dir = Path(stack_log_file()).parent / 'run'
    if not psql or not (run_dir / f'.s.PGSQL.{port}').exists():
        return False
    argv = [psql[-1], '-X', '-qAt', '-v', 'ON_ERROR_STOP=1', '-h', str(run_dir), '-p', port, '-U', 'postgres',
            '-d', database, '-c', statement]
    if os.geteuid() == 0:
        argv = ['runuser', '-u', 'postgres', '--', *argv]
    return subprocess.run(argv, capture_output=True, text=True, check=False).returncode == 0


@pytest.fixture(scope='module')
def url() -> str:
    return reachable_server_url()


@pytest.fixture
def marker() -> str:
    return f'lm_test_log_{uuid.uuid4().hex[:12]}'


@pytest.fixture
def reader(url: str) -> Iterator[str]:
    """The URL of a login role granted pg_read_server_files and EXECUTE on the file functions (a grant on a
    function holds in one database: the test's)."""
    database = urlsplit(url).path.lstrip('/') or 'postgres'
    made = admin_psql(f"DROP ROLE IF EXISTS {READER}; CREATE ROLE {READER} LOGIN PASSWORD '{READER_PASSWORD}'; "
                      f"GRANT pg_read_server_files TO {READER}")
    if not made:
        pytest.skip("the stack's superuser socket is out of reach: no role can be granted pg_read_server_files")
    assert admin_psql(f"GRANT EXECUTE ON FUNCTION {', '.join(FILE_FUNCTIONS)} TO {READER}", database)
    yield with_db(url, database, user=READER, password=READER_PASSWORD)
    admin_psql(f'DROP OWNED BY {READER}', database)
    admin_psql(f'DROP ROLE IF EXISTS {READER}')


# --- the stack: no collector, a role without privileges ----------------------------------------

def test_error_and_warning_found_in_the_log_file(url: str, marker: str) -> None:
    log_file = stack_log_file()
    since = server_now(url)
    make_lines(url, marker)
    r = server_log({'database_url': url, 'since': since, 'log_file': log_file})
    assert not r.get('failed') and r['changed'] is False
    assert r['source'] == 'file' and r['files'][0] == log_file and r['format'] == 'stderr'
    assert r['reason'].startswith(f'read on this host: log_file {log_file}; not through SQL: the role ')
    assert 'may not read the server log through SQL' in r['reason']
    assert_found(r, marker)
    assert not any('lm_test_log log' in e['message'] for e in r['entries'])  # LOG is not asked for
    # Asked for, the LOG line is there; out of the window, nothing of ours is.
    r = server_log({'database_url': url, 'since': since, 'log_file': log_file, 'levels': ['LOG']})
    assert [e['message'] for e in mine(r, marker)] == [f'lm_test_log log {marker}']
    r = server_log({'database_url': url, 'since': '2000-01-01T00:00:00Z', 'until': since, 'log_file': log_file,
                    'max_lines': 0}, check=True)
    assert not r.get('failed') and mine(r, marker) == [] and r['entries'] == []


def test_found_on_this_host_without_log_file(url: str, marker: str) -> None:
    log_file = stack_log_file()
    since = server_now(url)
    make_lines(url, marker)
    r = server_log({'database_url': url, 'since': since, 'only_this_database': True})
    assert not r.get('failed')
    if os.geteuid() != 0 and os.stat(log_file).st_uid != os.geteuid():
        # Another user's server process cannot be looked into: said, not failed.
        assert r['source'] == 'unavailable' and 'no log_file was given' in r['reason']
        return
    assert r['source'] == 'file' and r['files'] == [os.path.realpath(log_file)]
    assert "the server's standard error (found through /proc/" in r['reason']
    assert_found(r, marker)
    assert any('has no %d' in note for note in r['notes'])  # '%m [%p] ' cannot tell databases apart


def test_unavailable_is_reported_with_its_reason(url: str, tmp_path: Path) -> None:
    since = server_now(url)
    missing = str(tmp_path / 'no-such.log')
    r = server_log({'database_url': url, 'since': since, 'log_file': missing})
    assert not r.get('failed') and r['source'] == 'unavailable' and r['entries'] == [] and r['files'] == []
    assert r['reason'] == (
        f'the role {urlsplit(url).username} may not read the server log through SQL (it is not superuser; it '
        'needs EXECUTE on pg_read_binary_file and pg_stat_file, and pg_read_server_files for a log outside the data '
        f'directory); and log_file cannot be read on this host ({missing}: No such file or directory); the module '
        'reads it where it runs: run it on the database host (delegate_to) as a user that may read it')
    r = server_log({'database_url': url, 'since': since, 'method': 'sql'})
    assert not r.get('failed') and r['source'] == 'unavailable'
    assert 'may not read the server log through SQL' in r['reason']


def test_bad_since_fails_clearly(url: str) -> None:
    r = server_log({'database_url': url, 'since': 'after lunch'})
    assert r['failed'] and r['msg'] == ("since: 'after lunch' is not an ISO 8601 timestamp "
                                        '(for example 2026-12-02T04:45:04Z).')


def test_sql_path_with_pg_read_server_files(url: str, reader: str, marker: str) -> None:
    log_file = stack_log_file()
    since = server_now(url)
    make_lines(url, marker)
    r = server_log({'database_url': reader, 'since': since, 'log_file': log_file, 'method': 'sql'})
    assert not r.get('failed') and r['source'] == 'sql', r['reason']
    assert r['reason'] == f'read through SQL (pg_read_binary_file): log_file {log_file} on the database host'
    assert r['files'] == [log_file]
    assert_found(r, marker)
    # Without log_file the server names none: it runs without the logging collector.
    r = server_log({'database_url': reader, 'since': since, 'method': 'sql'})
    assert r['source'] == 'unavailable' and 'logging_collector = off' in r['reason']
    # EXECUTE without pg_read_server_files: the absolute path is refused by the server, the file is read here.
    assert admin_psql(f'REVOKE pg_read_server_files FROM {READER}')
    r = server_log({'database_url': reader, 'since': since, 'log_file': log_file})
    assert r['source'] == 'file' and 'absolute path not allowed' in r['reason']
    assert_found(r, marker)


# --- a scratch cluster with the logging collector ---------------------------------------------

def _bindir() -> Path | None:
    found = sorted(glob.glob('/usr/lib/postgresql/*/bin/initdb'))
    return Path(found[-1]).parent if found else None


def _as_owner(argv: list[str]) -> list[str]:
    return ['runuser', '-u', 'postgres', '--', *argv] if os.geteuid() == 0 else argv


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope='module')
def collector() -> Iterator[dict[str, Any]]:
    """A cluster logging through the collector to stderr, csvlog and jsonlog files under <data>/log."""
    bindir = _bindir()
    if bindir is None:
        pytest.skip('no PostgreSQL server binaries on this host for a scratch cluster')
    version = int(subprocess.run([str(bindir / 'postgres'), '--version'], capture_output=True, text=True,
                                 check=True).stdout.split()[-1].split('.')[0])
    work = Path(tempfile.mkdtemp(prefix='lm-test-log-', dir='/var/tmp'))
    data, port = work / 'data', _free_port()
    if os.geteuid() == 0:
        shutil.chown(work, 'postgres', 'postgres')
    init = subprocess.run(_as_owner([str(bindir / 'initdb'), '-D', str(data), '-U', 'postgres', '-A', 'trust',
                                     '-E', 'UTF8', '--locale=C.UTF-8', '-N']), capture_output=True, text=True,
                          check=False)
    assert init.returncode == 0, init.stdout + init.stderr
    formats = 'stderr,csvlog,jsonlog' if version >= 15 else 'stderr,csvlog'
    options = (f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={work} -c fsync=off "
               f"-c logging_collector=on -c log_destination={formats} -c log_directory=log "
               "-c log_filename=postgresql-%Y%m%d-%H%M%S.log -c log_rotation_age=0 -c log_timezone=Europe/Berlin "
               "-c log_line_prefix='%m [%p] %q%u@%d '")
    start = subprocess.run(_as_owner([str(bindir / 'pg_ctl'), '-D', str(data), '-l', str(work / 'start.log'), '-w',
                                      '-t', '60', '-o', options, 'start']), capture_output=True, text=True,
                           check=False)
    assert start.returncode == 0, start.stdout + start.stderr
    admin = f'postgresql://postgres@127.0.0.1:{port}/postgres'
    try:
        sql(admin, f"CREATE ROLE {READER} LOGIN PASSWORD '{READER_PASSWORD}' IN ROLE pg_monitor")
        sql(admin, 'CREATE DATABASE app')
        sql(admin.rsplit('/', 1)[0] + '/app', f"GRANT EXECUTE ON FUNCTION {', '.join(FILE_FUNCTIONS)}, "
                                              f"pg_catalog.pg_current_logfile(text) TO {READER}")
        yield {'admin': admin, 'reader': f'postgresql://{READER}:{READER_PASSWORD}@127.0.0.1:{port}/app',
               'data': data, 'formats': formats}
    finally:
        subprocess.run(_as_owner([str(bindir / 'pg_ctl'), '-D', str(data), '-m', 'immediate', '-w', 'stop']),
                       capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)


def test_collector_current_and_rotated_files_through_sql(collector: dict[str, Any], marker: str) -> None:
    admin, reader = collector['admin'], collector['reader']
    app_admin = admin.rsplit('/', 1)[0] + '/app'
    since = server_now(admin)
    make_lines(app_admin, marker + '_a')
    time.sleep(1.1)  # log_filename has seconds: the rotated file gets a name of its own
    sql(admin, 'SELECT pg_rotate_logfile()')
    time.sleep(0.5)
    make_lines(app_admin, marker + '_b')
    with pytest.raises(psycopg2.errors.DivisionByZero):  # another database's error
        sql(admin, f'SELECT 1/0 AS "{marker}_other"')
    expected = 'jsonlog' if 'jsonlog' in collector['formats'] else 'csvlog'
    r = server_log({'database_url': reader, 'since': since, 'only_this_database': True})
    assert not r.get('failed') and r['source'] == 'sql' and r['format'] == expected, r['reason']
    assert r['reason'].startswith('read through SQL (pg_read_binary_file): log/postgresql-')
    assert r['reason'].endswith('named by pg_current_logfile()')
    assert len(r['files']) == 2 and r['files'][0] != r['files'][1] and r['complete'] is True
    first, second = mine(r, marker + '_a'), mine(r, marker + '_b')
    assert [e['level'] for e in first + second] == ['ERROR', 'WARNING'] * 2
    assert {e['database'] for e in first + second} == {'app'} and first[0]['user'] == 'postgres'
    assert mine(r, marker + '_other') == [] and r['database'] == 'app'
    # The stderr file's Debian-style prefix parses too (Europe/Berlin abbreviations): the same entries.
    r_all = server_log({'database_url': admin.rsplit('/', 1)[0] + '/app', 'since': since, 'method': 'file'})
    if os.geteuid() == 0:
        assert r_all['source'] == 'file' and r_all['format'] == expected, r_all
        assert "named by the data directory's current_logfiles" in r_all['reason']
        assert len(mine(r_all, marker)) == 5  # both rounds, and the other database's error
        assert [e['time'] for e in mine(r_all, marker + '_a')] == [e['time'] for e in first]


def test_collector_stderr_format_with_a_debian_prefix(collector: dict[str, Any], marker: str) -> None:
    admin = collector['admin']
    app_admin = admin.rsplit('/', 1)[0] + '/app'
    since = server_now(admin)
    make_lines(app_admin, marker)
    current = sql(admin, "SELECT pg_current_logfile('stderr')")[0][0]
    log_file = str(Path(collector['data']) / current)
    r = server_log({'database_url': app_admin, 'since': since, 'log_file': log_file, 'only_this_database': True})
    assert not r.get('failed') and r['source'] == 'sql' and r['format'] == 'stderr'  # superuser: through SQL
    error, warning = mine(r, marker)
    assert (error['database'], error['user'], error['statement']) == ('app', 'postgres', f'SELECT 1/0 AS "{marker}"')
    assert warning['context'].startswith('PL/pgSQL function inline_code_block')
    assert r['notes'] == []
