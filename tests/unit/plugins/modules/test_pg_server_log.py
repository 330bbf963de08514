"""pg_server_log main() with a scripted connection (see conftest.py): which source, why, and what it returns."""
from __future__ import annotations

import datetime
import os
import typing as t

import pytest

from ansible_collections.ledgermind.migrations.plugins.modules import pg_server_log

UTC = datetime.UTC
URL = 'postgresql://ledgermind:hunter2-secret@db:5432/ledgermind'
SINCE = '2026-12-02T04:45:00Z'
BASE = {'database_url': URL, 'since': SINCE}

OLD = """\
2026-12-02 04:40:00.000 UTC [10] ERROR:  before the window
2026-12-02 04:45:30.000 UTC [11] ERROR:  in the rotated file
2026-12-02 04:45:30.000 UTC [11] STATEMENT:  SELECT 1/0
"""
CURRENT = """\
2026-12-02 04:46:00.000 UTC [12] LOG:  checkpoint starting: time
2026-12-02 04:46:01.000 UTC [13] WARNING:  there is no transaction in progress
2026-12-02 04:46:02.000 UTC [14] FATAL:  terminating connection due to administrator command
2026-12-02 04:46:03.000 UTC [15] ERROR:  canceling statement due to lock timeout
2026-12-02 04:46:03.000 UTC [15] STATEMENT:  ALTER TABLE ml_features ALTER COLUMN tokens TYPE jsonb
"""


def settings(**overrides: t.Any) -> dict[str, t.Any]:
    row = dict(database='ledgermind', role='ledgermind', backend_pid=4242,
               postmaster_start=datetime.datetime(2026, 12, 2, 4, 0, tzinfo=UTC),
               server_now=datetime.datetime(2026, 12, 2, 4, 50, tzinfo=UTC), server_version_num=150018,
               logging_collector='on', log_destination='stderr', log_line_prefix='%m [%p] ',
               log_timezone='Etc/UTC', lc_messages='C.UTF-8', superuser=False, read_server_files=False,
               read_all_settings=False, data_directory=None, log_directory=None, may_current_logfile=False,
               may_read_file=False, may_stat_file=False, may_ls_logdir=False)
    row.update(overrides)
    return row


def server_files(files: dict[str, str], denied: t.Container[str] = ()) -> list[tuple[str, t.Any]]:
    """Script answers for pg_stat_file / pg_read_binary_file over in-memory files on the 'database host'."""
    data = {path: text.encode() for path, text in files.items()}

    def stat(params: dict[str, t.Any]) -> list[dict[str, t.Any]]:
        if params['path'] in denied:
            raise PermissionError(f'absolute path not allowed: {params["path"]}')
        if params['path'] not in data:
            return [{'size': None, 'modification': None, 'isdir': None}]
        return [{'size': len(data[params['path']]), 'isdir': False,
                 'modification': datetime.datetime(2026, 12, 2, 4, 46, 3, tzinfo=UTC)}]

    def read(params: dict[str, t.Any]) -> list[dict[str, t.Any]]:
        body = data[params['path']]
        return [{'data': body[params['offset']:params['offset'] + params['length']]}]

    return [('pg_stat_file(%(path)s', stat), ('pg_read_binary_file(%(path)s', read)]


def script(row: dict[str, t.Any], *extra: tuple[str, t.Any]) -> list[tuple[str, t.Any]]:
    return [('AS may_ls_logdir', [row]), ('SAVEPOINT', []), *extra]


@pytest.fixture(autouse=True)
def no_proc(monkeypatch: pytest.MonkeyPatch, tmp_path: t.Any) -> None:
    """This host's /proc is an empty directory unless a test fills it: the server never 'runs here' by accident."""
    proc = tmp_path / 'proc'
    proc.mkdir()
    monkeypatch.setattr(pg_server_log, 'PROC', str(proc))


def test_sql_current_file_and_a_rotated_one(run_module) -> None:
    row = settings(superuser=True, read_server_files=True)
    answers = script(row, ("pg_current_logfile(%(format)s)",
                           lambda p: [{'path': 'log/postgresql-0446.log' if p['format'] == 'stderr' else None}]),
                     ('FROM pg_catalog.pg_ls_logdir()', [
                         {'name': 'postgresql-0446.log', 'size': 1, 'modification': None},
                         {'name': 'postgresql-0446.csv', 'size': 1, 'modification': None},
                         {'name': 'postgresql-0440.log', 'size': 1, 'modification': None}]),
                     *server_files({'log/postgresql-0446.log': CURRENT, 'log/postgresql-0440.log': OLD}))
    failed, result, conn = run_module(pg_server_log.main, BASE, answers)
    assert not failed and result['changed'] is False
    assert result['source'] == 'sql' and result['format'] == 'stderr'
    assert result['files'] == ['log/postgresql-0446.log', 'log/postgresql-0440.log']
    assert result['reason'] == ('read through SQL (pg_read_binary_file): log/postgresql-0446.log, named by '
                                'pg_current_logfile()')
    assert [(e['level'], e['message']) for e in result['entries']] == [
        ('ERROR', 'in the rotated file'), ('WARNING', 'there is no transaction in progress'),
        ('FATAL', 'terminating connection due to administrator command'),
        ('ERROR', 'canceling statement due to lock timeout')]
    assert result['entries'][0] == {'time': '2026-12-02T04:45:30.000+00:00', 'level': 'ERROR',
                                    'message': 'in the rotated file', 'statement': 'SELECT 1/0', 'pid': 11}
    assert result['counts'] == {'ERROR': 2, 'FATAL': 1, 'PANIC': 0, 'WARNING': 1} and result['total'] == 4
    assert result['complete'] is True and result['truncated'] is False and result['notes'] == []
    assert result['window'] == {'since': '2026-12-02T04:45:00.000+00:00', 'until': None}
    assert result['server_time'] == '2026-12-02T04:50:00.000+00:00'
    assert result['bytes_read'] == len(CURRENT) + len(OLD)
    # Every read in a savepoint; the transaction is the read-only one of connect().
    assert conn.session['readonly'] is True and conn.closed
    savepoints = [q for q, _p in conn.executed if q == 'SAVEPOINT pg_server_log']
    assert savepoints and len(savepoints) == len(conn.ran('RELEASE SAVEPOINT')) + len(conn.ran('ROLLBACK TO'))


def test_sql_without_pg_current_logfile_reads_current_logfiles_and_says_rotation_is_not_looked_for(run_module) -> None:
    row = settings(may_read_file=True, may_stat_file=True, log_destination='stderr,csvlog')
    csv_current = ('2026-12-02 04:46:03.000 UTC,"ledgermind","ledgermind",15,"127.0.0.1:5000",a.b,1,"ALTER",'
                   '2026-12-02 04:46:00 UTC,3/1,0,ERROR,55P03,"canceling statement due to lock timeout",,,,,,'
                   '"ALTER TABLE ml_features",,,"alembic","client backend",,0\n')
    answers = script(row, *server_files({'current_logfiles': 'stderr log/a.log\ncsvlog log/a.csv\n',
                                         'log/a.csv': csv_current, 'log/a.log': CURRENT}))
    failed, result, _ = run_module(pg_server_log.main, dict(BASE, until='2026-12-02T04:47:00Z'), answers)
    assert not failed and result['source'] == 'sql' and result['format'] == 'csvlog'
    assert result['files'] == ['log/a.csv']
    assert "named by the data directory's current_logfiles" in result['reason']
    (entry,) = result['entries']
    assert entry['sqlstate'] == '55P03' and entry['database'] == 'ledgermind' and entry['statement'] == \
        'ALTER TABLE ml_features'
    assert result['complete'] is False
    assert any('pg_monitor' in n for n in result['notes'])


def test_no_privileges_and_a_local_log_file(run_module, tmp_path) -> None:
    log = tmp_path / 'postgres.log'
    log.write_text(OLD + CURRENT)
    failed, result, _ = run_module(pg_server_log.main, dict(BASE, log_file=str(log)),
                                   script(settings(logging_collector='off')))
    assert not failed and result['source'] == 'file' and result['files'] == [str(log)]
    assert result['reason'] == (
        f'read on this host: log_file {log}; not through SQL: the role ledgermind may not read the server log '
        'through SQL (it is not superuser; it needs EXECUTE on pg_read_binary_file and pg_stat_file, and '
        'pg_read_server_files for a log outside the data directory)')
    assert result['total'] == 4 and result['complete'] is True


def test_a_log_file_the_server_may_not_read_is_read_here(run_module, tmp_path) -> None:
    """EXECUTE without pg_read_server_files: the absolute path is refused through SQL, read locally instead."""
    log = tmp_path / 'postgres.log'
    log.write_text(CURRENT)
    row = settings(may_read_file=True, may_stat_file=True, logging_collector='off')
    failed, result, conn = run_module(pg_server_log.main, dict(BASE, log_file=str(log)),
                                      script(row, *server_files({}, denied={str(log)})))
    assert not failed and result['source'] == 'file'
    assert f'not through SQL: pg_stat_file({log}) failed: absolute path not allowed' in result['reason']
    assert conn.ran('ROLLBACK TO SAVEPOINT pg_server_log')


def test_the_stderr_log_and_its_rotated_copy(run_module, tmp_path) -> None:
    log = tmp_path / 'postgres.log'
    log.write_text(CURRENT)
    (tmp_path / 'postgres.log.1').write_text(OLD)
    failed, result, _ = run_module(pg_server_log.main, dict(BASE, log_file=str(log), method='file'),
                                   script(settings(superuser=True)))
    assert not failed and result['source'] == 'file' and result['files'] == [str(log), str(log) + '.1']
    assert result['reason'] == f'read on this host: log_file {log}'
    assert result['entries'][0]['message'] == 'in the rotated file' and result['complete'] is True


def test_unavailable_without_privileges_or_log_file(run_module) -> None:
    failed, result, _ = run_module(pg_server_log.main, BASE, script(settings(logging_collector='off')))
    assert not failed and result['source'] == 'unavailable'
    assert result['reason'] == (
        'the role ledgermind may not read the server log through SQL (it is not superuser; it needs EXECUTE on '
        'pg_read_binary_file and pg_stat_file, and pg_read_server_files for a log outside the data directory); and '
        'no log_file was given and the log was not found on this host: the server writes its log to its standard '
        'error (logging_collector = off), and it does not run on this host or this user may not see its process')
    assert result['entries'] == [] and result['total'] == 0 and result['files'] == []
    assert result['counts'] == {'ERROR': 0, 'FATAL': 0, 'PANIC': 0, 'WARNING': 0}
    assert result['truncated'] is False and result['complete'] is False


def test_unavailable_reasons_sql_only_and_missing_log_file(run_module, tmp_path) -> None:
    failed, result, _ = run_module(pg_server_log.main, dict(BASE, method='sql'),
                                   script(settings(superuser=True, logging_collector='off')))
    assert not failed and result['source'] == 'unavailable'
    assert result['reason'].startswith('the server runs without the logging collector (logging_collector = off)')
    missing = str(tmp_path / 'nope.log')
    failed, result, _ = run_module(pg_server_log.main, dict(BASE, log_file=missing, method='file'),
                                   script(settings()))
    assert not failed and result['source'] == 'unavailable'
    assert result['reason'] == (f'log_file cannot be read on this host ({missing}: No such file or directory); the '
                                'module reads it where it runs: run it on the database host (delegate_to) as a user '
                                'that may read it')
    failed, result, _ = run_module(pg_server_log.main, dict(BASE, method='sql'),
                                   script(settings(superuser=True, log_destination='syslog')))
    assert result['reason'] == 'the server logs to syslog only, not to a file it can name'


def test_a_read_that_fails_midway_falls_back(run_module, tmp_path) -> None:
    row = settings(superuser=True)

    def refuse(params: dict[str, t.Any]) -> list[dict[str, t.Any]]:
        raise PermissionError('could not open file "log/a.log" for reading: Permission denied')

    answers = script(row, ("pg_current_logfile(%(format)s)", [{'path': 'log/a.log'}]),
                     ('FROM pg_catalog.pg_ls_logdir()', []),
                     ('pg_stat_file(%(path)s', [{'size': 10, 'modification': None, 'isdir': False}]),
                     ('pg_read_binary_file(%(path)s', refuse))
    log = tmp_path / 'postgres.log'
    log.write_text(CURRENT)
    failed, result, _ = run_module(pg_server_log.main, dict(BASE, log_file=str(log)), answers)
    assert not failed and result['source'] == 'file'
    failed, result, _ = run_module(pg_server_log.main, dict(BASE, method='sql'), answers)
    assert not failed and result['source'] == 'unavailable'
    assert result['reason'] == ('pg_read_binary_file(log/a.log) failed: could not open file "log/a.log" for reading: '
                                'Permission denied')


def test_found_on_this_host_through_proc(run_module, tmp_path) -> None:
    """Without the collector: the file our backend's standard error goes to (pg_ctl -l), proven ours by its cwd."""
    data = tmp_path / 'data'
    data.mkdir()
    log = tmp_path / 'postgres.log'
    log.write_text(CURRENT)
    backend = tmp_path / 'proc' / '4242'
    (backend / 'fd').mkdir(parents=True)
    (backend / 'cmdline').write_bytes(b'postgres: ledgermind ledgermind [local] idle in transaction\0')
    os.symlink(data, backend / 'cwd')
    os.symlink(log, backend / 'fd' / '2')
    row = settings(logging_collector='off', read_all_settings=True, data_directory=str(data))
    failed, result, _ = run_module(pg_server_log.main, BASE, script(row))
    assert not failed and result['source'] == 'file' and result['files'] == [str(log)]
    assert f"read on this host: {log}, the server's standard error (found through {backend})" in result['reason']
    # Another server's process with our pid: not ours, not read.
    os.unlink(backend / 'cwd')
    os.symlink(tmp_path, backend / 'cwd')
    failed, result, _ = run_module(pg_server_log.main, BASE, script(row))
    assert result['source'] == 'unavailable'


def test_found_on_this_host_through_the_collector_s_current_logfiles(run_module, tmp_path) -> None:
    data = tmp_path / 'data'
    (data / 'log').mkdir(parents=True)
    (data / 'postmaster.pid').write_text('99\n{}\n{}\n5432\n'.format(data, int(datetime.datetime(
        2026, 12, 2, 4, 0, tzinfo=UTC).timestamp())))
    (data / 'current_logfiles').write_text('stderr log/b.log\n')
    (data / 'log' / 'b.log').write_text(CURRENT)
    (data / 'log' / 'a.log').write_text(OLD)
    row = settings(read_all_settings=True, data_directory=str(data))
    failed, result, _ = run_module(pg_server_log.main, BASE, script(row))
    assert not failed and result['source'] == 'file'
    assert result['files'] == [str(data / 'log' / 'b.log'), str(data / 'log' / 'a.log')]
    assert result['total'] == 4 and result['complete'] is True
    # A data directory of another server (another start time) is not taken for ours.
    (data / 'postmaster.pid').write_text(f'99\n{data}\n12345\n5432\n')
    failed, result, _ = run_module(pg_server_log.main, BASE, script(row))
    assert result['source'] == 'unavailable' and f'the data directory {data} is not on this host' in result['reason']


def test_max_lines_keeps_the_most_severe_and_says_truncated(run_module, tmp_path) -> None:
    log = tmp_path / 'postgres.log'
    log.write_text(CURRENT)
    failed, result, _ = run_module(pg_server_log.main, dict(BASE, log_file=str(log), max_lines=2, method='file'),
                                   script(settings()))
    assert not failed and result['truncated'] is True and result['total'] == 3
    assert [e['level'] for e in result['entries']] == ['FATAL', 'ERROR']  # the WARNING left out, time order kept


def test_budget_stops_the_read(run_module, tmp_path) -> None:
    log = tmp_path / 'postgres.log'
    log.write_text(OLD + CURRENT)
    failed, result, _ = run_module(pg_server_log.main, dict(BASE, log_file=str(log), max_read_bytes=100,
                                                            method='file'), script(settings()))
    assert not failed and result['truncated'] is True and result['complete'] is False
    assert result['bytes_read'] == 100
    assert any('max_read_bytes=100' in n for n in result['notes'])


def test_only_this_database(run_module, tmp_path) -> None:
    log = tmp_path / 'postgres.log'
    log.write_text('2026-12-02 04:46:00.000 UTC [1] a@ledgermind ERROR:  mine\n'
                   '2026-12-02 04:46:01.000 UTC [2] a@other ERROR:  theirs\n'
                   '2026-12-02 04:46:02.000 UTC [3] PANIC:  the server\'s\n')
    row = settings(log_line_prefix='%m [%p] %q%u@%d ')
    args = dict(BASE, log_file=str(log), method='file')
    failed, result, _ = run_module(pg_server_log.main, dict(args, only_this_database=True), script(row))
    assert not failed and [e['message'] for e in result['entries']] == ['mine', "the server's"]
    failed, result, _ = run_module(pg_server_log.main, args, script(row))
    assert result['total'] == 3
    # A prefix without %d cannot tell databases apart: all kept, and said.
    failed, result, _ = run_module(pg_server_log.main, dict(args, only_this_database=True),
                                   script(settings(log_line_prefix='%m [%p] ')))
    assert result['total'] == 3 and any('has no %d' in n for n in result['notes'])


def test_levels_are_chosen_and_checked(run_module, tmp_path) -> None:
    log = tmp_path / 'postgres.log'
    log.write_text(CURRENT)
    args = dict(BASE, log_file=str(log), method='file')
    failed, result, _ = run_module(pg_server_log.main, dict(args, levels=['log', 'Error']), script(settings()))
    assert not failed and result['counts'] == {'LOG': 1, 'ERROR': 1}
    failed, result, _ = run_module(pg_server_log.main, dict(args, levels=['ERR']), script(settings()))
    assert failed and result['msg'] == ("levels: unknown level 'ERR'; choose among DEBUG, LOG, INFO, NOTICE, "
                                        'WARNING, ERROR, FATAL, PANIC.')


@pytest.mark.parametrize(('args', 'message'), [
    ({'since': 'yesterday'}, "since: 'yesterday' is not an ISO 8601 timestamp (for example 2026-12-02T04:45:04Z)."),
    ({'until': '2026-12-02T04:00:00Z'}, 'until (2026-12-02T04:00:00Z) is before since (2026-12-02T04:45:00Z).'),
    ({'max_lines': -1}, 'max_lines must be 0 or more.'),
    ({'levels': []}, 'levels must name at least one level.'),
])
def test_bad_options_fail_clearly_before_connecting(run_module, args: dict[str, t.Any], message: str) -> None:
    failed, result, conn = run_module(pg_server_log.main, dict(BASE, **args), [])
    assert failed and result['msg'] == message and conn.executed == []


def test_connection_failure_is_a_clear_error(run_module, pg_error) -> None:
    failed, result, _ = run_module(pg_server_log.main, BASE, [],
                                   connect_error=pg_error('FATAL:  password authentication failed for user "x"'))
    assert failed and result['msg'].startswith('Cannot log in to PostgreSQL as')
    assert 'hunter2-secret' not in str(result)


def test_settings_query_error_is_explained(run_module, pg_error) -> None:
    failed, result, _ = run_module(pg_server_log.main, BASE,
                                   [('AS may_ls_logdir', pg_error('canceling statement', '57014'))])
    assert failed and result['msg'].startswith('The query on the server settings was cancelled after '
                                               'query_timeout=300s')


def test_check_mode_reads_the_same(run_module, tmp_path) -> None:
    log = tmp_path / 'postgres.log'
    log.write_text(CURRENT)
    failed, result, _ = run_module(pg_server_log.main, dict(BASE, log_file=str(log), _ansible_check_mode=True),
                                   script(settings()))
    assert not failed and result['changed'] is False and result['total'] == 3
