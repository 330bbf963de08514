"""The server log's parser and backwards reader (module_utils/_server_log.py), on real-looking log text."""
from __future__ import annotations

import csv
import datetime
import io
import json
import os

import pytest

from ansible_collections.ledgermind.migrations.plugins.module_utils import _server_log as sl

UTC = datetime.UTC


def at(text: str) -> datetime.datetime:
    return sl.parse_window_time(text)


# A PostgreSQL 15 log with the default log_line_prefix '%m [%p] ', as the local stack writes it.
STDERR = """\
2026-12-02 04:44:59.990 UTC [2234] LOG:  checkpoint complete: wrote 7 buffers (0.0%); 0 WAL file(s) added
2026-12-02 04:45:00.100 UTC [13600] ERROR:  relation "nope" does not exist at character 15
2026-12-02 04:45:00.100 UTC [13600] STATEMENT:  SELECT * FROM nope
2026-12-02 04:45:04.046 UTC [13603] ERROR:  cannot drop constraint ml_features_pkey on table public.ml_features because other objects depend on it
2026-12-02 04:45:04.046 UTC [13603] DETAIL:  constraint labels_txn_id_fkey on table public.labels depends on index public.ml_features_pkey
2026-12-02 04:45:04.046 UTC [13603] HINT:  Use DROP ... CASCADE to drop the dependent objects too.
2026-12-02 04:45:04.046 UTC [13603] STATEMENT:  ALTER TABLE IF EXISTS ONLY public.ml_features DROP CONSTRAINT IF EXISTS ml_features_pkey;
\t
2026-12-02 04:45:05.324 UTC [16202] ERROR:  type of parameter 15 (jsonb) does not match that when preparing the plan (text[])
2026-12-02 04:45:05.324 UTC [16202] CONTEXT:  SQL statement "INSERT INTO log VALUES (OLD.id::text, 'naive')"
\tPL/pgSQL function naive() line 2 at SQL statement
2026-12-02 04:45:05.324 UTC [16202] STATEMENT:  UPDATE t SET tokens = tokens WHERE id = 2
2026-12-02 04:45:06.000 UTC [2234] LOG:  checkpoint starting: time
2026-12-02 04:45:08.451 UTC [2868] FATAL:  password authentication failed for user "ledgermind"
2026-12-02 04:45:08.451 UTC [2868] DETAIL:  Connection matched pg_hba.conf line 91: "host all all 127.0.0.1/32 scram-sha-256"
2026-12-02 04:45:09.979 UTC [3411] ERROR:  canceling statement due to lock timeout at character 907
2026-12-02 04:45:09.979 UTC [3411] STATEMENT:  \n\tSELECT count(*) AS total,
\t       count(*) FILTER (WHERE s.v IS NULL) AS nulls
\tFROM ml_features AS s
2026-12-02 04:45:10.500 UTC [3500] WARNING:  there is no transaction in progress
2026-12-02 04:45:11.000 UTC [3600] NOTICE:  table "gone" does not exist, skipping
2026-12-02 04:46:00.303 UTC [21230] ERROR:  division by zero
2026-12-02 04:46:00.303 UTC [21230] STATEMENT:  SELECT 1/0
"""  # noqa: E501 - real lines are long


def stderr_parser(prefix: str = '%m [%p] ', zone: str | None = 'Etc/UTC') -> sl.Parser:
    return sl.Parser('stderr', prefix, zone)


def test_multi_line_entries_keep_their_detail_hint_context_and_statement() -> None:
    entries = stderr_parser().parse(STDERR)
    assert [e['level'] for e in entries] == ['LOG', 'ERROR', 'ERROR', 'ERROR', 'LOG', 'FATAL', 'ERROR', 'WARNING',
                                             'NOTICE', 'ERROR']
    drop = entries[2]
    assert drop['message'].startswith('cannot drop constraint ml_features_pkey')
    assert drop['detail'] == ('constraint labels_txn_id_fkey on table public.labels depends on index '
                              'public.ml_features_pkey')
    assert drop['hint'] == 'Use DROP ... CASCADE to drop the dependent objects too.'
    # The lone tab line after the statement is an empty continuation, trimmed away.
    assert drop['statement'] == ('ALTER TABLE IF EXISTS ONLY public.ml_features '
                                 'DROP CONSTRAINT IF EXISTS ml_features_pkey;')
    assert drop['pid'] == 13603 and drop['time'] == datetime.datetime(2026, 12, 2, 4, 45, 4, 46000, UTC)
    plan = entries[3]
    assert plan['context'] == ('SQL statement "INSERT INTO log VALUES (OLD.id::text, \'naive\')"\n'
                               'PL/pgSQL function naive() line 2 at SQL statement')
    assert plan['statement'] == 'UPDATE t SET tokens = tokens WHERE id = 2'
    lock = entries[6]
    assert lock['statement'] == ('SELECT count(*) AS total,\n       count(*) FILTER (WHERE s.v IS NULL) AS nulls\n'
                                 'FROM ml_features AS s')
    assert entries[5]['detail'].startswith('Connection matched pg_hba.conf line 91')


def test_window_and_levels_select_and_count() -> None:
    entries = stderr_parser().parse(STDERR)
    chosen = sl.select(entries, at('2026-12-02T04:45:04Z'), at('2026-12-02T04:45:59Z'), sl.DEFAULT_LEVELS, None)
    # Before the window: the 04:45:00 error; after it: the 04:46:00 one; LOG and NOTICE are other levels.
    assert [(e['level'], e['time'].second) for e in chosen] == [('ERROR', 4), ('ERROR', 5), ('FATAL', 8),
                                                                ('ERROR', 9), ('WARNING', 10)]
    assert sl.counts(chosen, sl.DEFAULT_LEVELS) == {'ERROR': 3, 'FATAL': 1, 'PANIC': 0, 'WARNING': 1}
    everything_after = sl.select(entries, at('2026-12-02T04:45:10Z'), None, ['ERROR', 'NOTICE'], None)
    assert [e['level'] for e in everything_after] == ['NOTICE', 'ERROR']


def test_entries_of_another_process_in_between_go_to_their_own_entry() -> None:
    text = ('2026-12-02 04:45:04.046 UTC [100] ERROR:  deadlock detected\n'
            '2026-12-02 04:45:04.047 UTC [200] WARNING:  oops\n'
            '2026-12-02 04:45:04.048 UTC [100] DETAIL:  Process 100 waits for ShareLock on transaction 7\n'
            '\tProcess 300 waits for ShareLock on transaction 8.\n'
            '2026-12-02 04:45:04.049 UTC [100] HINT:  See server log for query details.\n'
            '2026-12-02 04:45:04.050 UTC [400] DETAIL:  belongs to nothing read\n')
    deadlock, warning = stderr_parser().parse(text)
    assert deadlock['detail'] == ('Process 100 waits for ShareLock on transaction 7\n'
                                  'Process 300 waits for ShareLock on transaction 8.')
    assert deadlock['hint'] == 'See server log for query details.'
    assert 'detail' not in warning


def test_a_chunk_s_partial_first_line_and_orphan_details_are_dropped() -> None:
    cut = STDERR[STDERR.index('on table public.labels'):]  # the middle of a DETAIL line
    entries = stderr_parser().parse(cut, at_file_start=False)
    assert entries[0]['level'] == 'ERROR' and entries[0]['message'].startswith('type of parameter 15')
    assert not any('labels_txn_id_fkey' in str(e) for e in entries)
    assert stderr_parser().first_time(cut, at_file_start=False) == at('2026-12-02T04:45:04.046Z')


DEBIAN_PREFIX = '%m [%p] %q%u@%d '
DEBIAN = """\
2026-12-02 05:00:00.001 CET [900] LOG:  database system is ready to accept connections
2026-12-02 05:00:01.002 CET [901] ledgermind@ledgermind ERROR:  division by zero
2026-12-02 05:00:01.002 CET [901] ledgermind@ledgermind STATEMENT:  SELECT 1/0
2026-12-02 05:00:02.003 CET [902] app@other_db ERROR:  permission denied for table secrets
2026-12-02 05:00:03.004 CET [903] [unknown]@[unknown] LOG:  connection received: host=127.0.0.1 port=5000
2026-12-02 05:00:04.005 CET [904] ledgermind@ledgermind FATAL:  terminating connection due to administrator command
2026-12-02 05:00:05.006 CET [905] PANIC:  could not write to file "pg_wal/xlogtemp.905": No space left on device
"""


def test_debian_prefix_with_q_and_database_filter() -> None:
    parser = stderr_parser(DEBIAN_PREFIX, 'Europe/Berlin')
    entries = parser.parse(DEBIAN)
    assert [(e['level'], e.get('user'), e.get('database')) for e in entries] == [
        ('LOG', None, None), ('ERROR', 'ledgermind', 'ledgermind'), ('ERROR', 'app', 'other_db'),
        ('LOG', None, None), ('FATAL', 'ledgermind', 'ledgermind'), ('PANIC', None, None)]
    assert entries[1]['statement'] == 'SELECT 1/0'
    assert entries[1]['time'] == datetime.datetime(2026, 12, 2, 4, 0, 1, 2000, UTC)  # CET is UTC+1
    mine = sl.select(entries, at('2026-12-02T00:00:00Z'), None, sl.DEFAULT_LEVELS, 'ledgermind')
    # other_db's error left out; the PANIC of no database kept.
    assert [e['level'] for e in mine] == ['ERROR', 'FATAL', 'PANIC']


def test_other_prefix_escapes_padding_and_literal_percent() -> None:
    prefix = '%t %% [%-6p] %e %a/%h: '
    line = '2026-07-01 10:00:00 CEST %% [4242  ] 22012 psql/127.0.0.1: ERROR:  division by zero'
    line = line.replace('%%', '%')
    (entry,) = stderr_parser(prefix, 'Europe/Berlin').parse(line + '\n')
    assert entry['pid'] == 4242 and entry['sqlstate'] == '22012' and entry['application'] == 'psql'
    assert entry['remote'] == '127.0.0.1' and entry['time'] == datetime.datetime(2026, 7, 1, 8, 0, 0, tzinfo=UTC)


def test_epoch_prefix_and_a_prefix_without_time() -> None:
    parser = stderr_parser('%n [%p] ')
    (entry,) = parser.parse('1796186704.854 [77] ERROR:  boom\n')
    assert entry['time'] == datetime.datetime.fromtimestamp(1796186704.854, UTC)
    assert parser.has_time and not stderr_parser('[%p] ').has_time


def test_lines_of_another_prefix_that_start_with_a_timestamp_still_parse() -> None:
    # The prefix changed since these lines were written (a reload): the fallback reads them.
    (entry,) = stderr_parser('%m [%p] %q%u@%d ').parse(
        '2026-12-02 04:45:04.046 UTC [13603] app=psql,db=x ERROR:  boom\n')
    assert entry['message'] == 'boom' and entry['pid'] == 13603


@pytest.mark.parametrize(('text', 'expected'), [
    ('2026-12-02 04:45:04.046 UTC', datetime.datetime(2026, 12, 2, 4, 45, 4, 46000, UTC)),
    ('2026-12-02 04:45:04 GMT', datetime.datetime(2026, 12, 2, 4, 45, 4, tzinfo=UTC)),
    ('2026-12-02 10:15:04.000 +0530', datetime.datetime(2026, 12, 2, 4, 45, 4, tzinfo=UTC)),
    ('2026-12-02 01:45:04.000 -03', datetime.datetime(2026, 12, 2, 4, 45, 4, tzinfo=UTC)),
    ('2026-07-02 06:45:04.000 CEST', datetime.datetime(2026, 7, 2, 4, 45, 4, tzinfo=UTC)),
    ('2026-12-01 23:45:04.000 EST', datetime.datetime(2026, 12, 2, 4, 45, 4, tzinfo=UTC)),
])
def test_log_timestamps_with_zones(text: str, expected: datetime.datetime) -> None:
    assert sl.LogTimes('Europe/Berlin').parse(text) == expected


def test_the_hour_repeated_when_daylight_saving_time_ends() -> None:
    times = sl.LogTimes('Europe/Berlin')
    # 2026-10-25 02:30 happens twice in Berlin: first as CEST (00:30 UTC), then as CET (01:30 UTC).
    assert times.parse('2026-10-25 02:30:00.000 CEST') == datetime.datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert times.parse('2026-10-25 02:30:00.000 CET') == datetime.datetime(2026, 10, 25, 1, 30, tzinfo=UTC)


def test_an_unknown_abbreviation_is_read_in_log_timezone_and_named() -> None:
    times = sl.LogTimes('Asia/Tokyo')
    assert times.parse('2026-12-02 13:45:04.000 XYZT') == datetime.datetime(2026, 12, 2, 4, 45, 4, tzinfo=UTC)
    assert times.unknown == {'XYZT'}
    assert sl.LogTimes(None).parse('2026-12-02 04:45:04.000 XYZT') == datetime.datetime(2026, 12, 2, 4, 45, 4,
                                                                                       tzinfo=UTC)


@pytest.mark.parametrize(('text', 'expected'), [
    ('2026-12-02T04:45:04Z', datetime.datetime(2026, 12, 2, 4, 45, 4, tzinfo=UTC)),
    ('2026-12-02T04:45:04.123456+00:00', datetime.datetime(2026, 12, 2, 4, 45, 4, 123456, UTC)),
    ('2026-12-02 06:45:04+02:00', datetime.datetime(2026, 12, 2, 4, 45, 4, tzinfo=UTC)),
    ('2026-12-02 06:45:04+0200', datetime.datetime(2026, 12, 2, 4, 45, 4, tzinfo=UTC)),
    ('2026-12-02 04:45:04.5 UTC', datetime.datetime(2026, 12, 2, 4, 45, 4, 500000, UTC)),
    ('2026-12-02T04:45:04', datetime.datetime(2026, 12, 2, 4, 45, 4, tzinfo=UTC)),
])
def test_window_times(text: str, expected: datetime.datetime) -> None:
    assert sl.parse_window_time(text) == expected


@pytest.mark.parametrize('text', ['', 'yesterday', '2026-13-02T04:45:04Z'])
def test_window_times_refused(text: str) -> None:
    with pytest.raises(ValueError):
        sl.parse_window_time(text)


# csvlog (PostgreSQL 15's 26 columns), a statement with a newline and a quote inside.
def csv_line(time: str, level: str, message: str, *, db: str = 'ledgermind', pid: int = 21230, detail: str = '',
             statement: str = '') -> str:
    row = [time, 'ledgermind', db, str(pid), '127.0.0.1:41234', '674d3a1b.52ee', '3', 'SELECT',
           '2026-12-02 04:45:00 UTC', '3/17', '0', level, '22012' if level == 'ERROR' else '00000', message, detail,
           '', '', '', '', statement, '', '', 'psql', 'client backend', '', '0']
    out = io.StringIO()
    csv.writer(out, lineterminator='\n').writerow(row)
    return out.getvalue()


def test_csvlog() -> None:
    text = (csv_line('2026-12-02 04:44:00.000 UTC', 'ERROR', 'too early')
            + csv_line('2026-12-02 04:46:00.303 UTC', 'ERROR', 'division by zero', statement='SELECT 1/0,\n  "x"')
            + csv_line('2026-12-02 04:46:01.000 UTC', 'LOG', 'checkpoint starting: time', db='', pid=2234)
            + csv_line('2026-12-02 04:46:02.000 UTC', 'WARNING', 'it\'s "quoted"', detail='two\nlines'))
    assert sl.detect_format('partial line\n' + text) == 'csvlog'
    parser = sl.Parser('csvlog', '%m [%p] ', 'Etc/UTC')
    entries = parser.parse(text)
    assert [e['level'] for e in entries] == ['ERROR', 'ERROR', 'LOG', 'WARNING']
    zero = entries[1]
    assert (zero['message'], zero['statement'], zero['database'], zero['pid'], zero['sqlstate'],
            zero['application']) == ('division by zero', 'SELECT 1/0,\n  "x"', 'ledgermind', 21230, '22012', 'psql')
    assert entries[3]['detail'] == 'two\nlines' and entries[3]['message'] == 'it\'s "quoted"'
    assert 'database' not in entries[2]
    # Read from the middle of a record: the partial one is skipped.
    assert [e['message'] for e in parser.parse(text[10:], at_file_start=False)][0] == 'division by zero'
    assert parser.first_time(text[10:], at_file_start=False) == at('2026-12-02T04:46:00.303Z')


def test_jsonlog() -> None:
    records = [
        {'timestamp': '2026-12-02 04:46:00.303 UTC', 'user': 'ledgermind', 'dbname': 'ledgermind', 'pid': 21230,
         'remote_host': '127.0.0.1', 'session_id': '674d3a1b.52ee', 'line_num': 3, 'ps': 'SELECT',
         'error_severity': 'ERROR', 'state_code': '22012', 'message': 'division by zero', 'statement': 'SELECT 1/0',
         'application_name': 'psql', 'backend_type': 'client backend', 'query_id': 0},
        {'timestamp': '2026-12-02 04:46:05.000 UTC', 'pid': 2234, 'error_severity': 'LOG',
         'message': 'checkpoint starting: time', 'backend_type': 'checkpointer', 'query_id': 0},
    ]
    text = ''.join(json.dumps(r) + '\n' for r in records)
    assert sl.detect_format('{"timesta\n' + text) == 'jsonlog'
    entries = sl.Parser('jsonlog', '', 'Etc/UTC').parse(text)
    assert entries[0] == {'time': at('2026-12-02T04:46:00.303Z'), 'level': 'ERROR', 'message': 'division by zero',
                          'statement': 'SELECT 1/0', 'user': 'ledgermind', 'database': 'ledgermind', 'pid': 21230,
                          'remote': '127.0.0.1', 'sqlstate': '22012', 'application': 'psql',
                          'backend_type': 'client backend'}
    assert entries[1]['backend_type'] == 'checkpointer'
    assert sl.detect_format(STDERR) == 'stderr'


def test_public_entries_are_json_and_long_fields_are_cut() -> None:
    text = '2026-12-02 04:46:00.303 UTC [1] ERROR:  big\n2026-12-02 04:46:00.303 UTC [1] STATEMENT:  ' + 'x' * 9000
    (entry,) = stderr_parser().parse(text)
    public = sl.public_entry(entry)
    assert public['time'] == '2026-12-02T04:46:00.303+00:00'
    assert len(public['statement']) == sl.FIELD_LIMIT + len(sl.CUT_MARK) and public['statement'].endswith('[...]')
    assert list(public) == ['time', 'level', 'message', 'statement', 'pid']
    json.dumps(public)


def test_prefix_regex_names_each_field_once() -> None:
    pattern, has_time = sl.prefix_regex('%m %t [%p-%p] %z %q%d ')  # %z is no escape: it prints nothing
    assert has_time and set(pattern.groupindex) >= {'time', 'pid', 'database', 'level', 'text'}
    assert pattern.match('2026-12-02 04:46:00.303 UTC 2026-12-02 04:46:00 UTC [5-5]  db ERROR:  x')


# ---------------------------------------------------------------------------------------------
# Reading backwards
# ---------------------------------------------------------------------------------------------

def big_log(lines: int = 20000, start: datetime.datetime = datetime.datetime(2026, 12, 2, 4, 0, tzinfo=UTC)) -> bytes:
    out = []
    for i in range(lines):
        when = (start + datetime.timedelta(seconds=i)).strftime('%Y-%m-%d %H:%M:%S.000 UTC')
        level = 'ERROR' if i % 1000 == 0 else 'LOG'
        out.append(f'{when} [{i}] {level}:  line {i} ünïcødé\n')
    return ''.join(out).encode()


def test_read_tail_reads_only_back_to_the_window() -> None:
    data = big_log()
    calls: list[tuple[int, int]] = []

    def read(offset: int, length: int) -> bytes:
        calls.append((offset, length))
        return data[offset:offset + length]

    since = datetime.datetime(2026, 12, 2, 4, 0, tzinfo=UTC) + datetime.timedelta(seconds=19000)
    parser = stderr_parser()
    tail = sl.read_tail(read, len(data), since, parser, chunk=4096)
    assert tail.reached_since and not tail.at_file_start and not tail.budget_spent
    assert len(tail.data) < len(data) / 5  # about the last 1000 lines, not the whole file
    assert [length for _o, length in calls][:3] == [4096, 8192, 16384]  # doubling steps
    entries = parser.parse(tail.data.decode('utf-8', 'replace'), tail.at_file_start)
    chosen = sl.select(entries, since, None, ['ERROR'], None)
    assert [e['message'] for e in chosen] == ['line 19000 ünïcødé']
    assert all('\ufffd' not in e['message'] for e in entries)  # a character cut at a chunk's edge is dropped


def test_read_tail_stops_at_the_budget_or_the_file_start() -> None:
    data = big_log(2000)
    read = lambda offset, length: data[offset:offset + length]  # noqa: E731
    early = datetime.datetime(2026, 12, 1, tzinfo=UTC)
    tail = sl.read_tail(read, len(data), early, stderr_parser(), chunk=4096, budget=10000)
    assert tail.budget_spent and not tail.reached_since and len(tail.data) == 10000
    tail = sl.read_tail(read, len(data), early, stderr_parser(), chunk=4096)
    assert tail.at_file_start and not tail.reached_since and tail.data == data
    assert sl.read_tail(read, 0, early, stderr_parser()).data == b''


# ---------------------------------------------------------------------------------------------
# Rotation and the collector's files
# ---------------------------------------------------------------------------------------------

def test_rotated_files(tmp_path) -> None:
    since = datetime.datetime(2026, 12, 2, 4, 0, tzinfo=UTC)
    log_dir = tmp_path / 'log'
    log_dir.mkdir()
    for name, minutes in (('postgresql-0300.log', -60), ('postgresql-0400.log', 10), ('postgresql-0400.csv', 10),
                          ('postgresql-0500.log', 70)):
        path = log_dir / name
        path.write_text('x')
        stamp = (since + datetime.timedelta(minutes=minutes)).timestamp()
        os.utime(path, (stamp, stamp))
    current = str(log_dir / 'postgresql-0500.log')
    assert sl.same_kind_files(str(log_dir), current, since) == [str(log_dir / 'postgresql-0400.log')]
    stderr_file = tmp_path / 'postgres.log'
    stderr_file.write_text('x')
    assert sl.rotated_siblings(str(stderr_file), since) == []
    (tmp_path / 'postgres.log.1').write_text('x')
    assert sl.rotated_siblings(str(stderr_file), since) == [str(stderr_file) + '.1']
    assert sl.rotated_siblings(str(stderr_file), datetime.datetime(2100, 1, 1, tzinfo=UTC)) == []
    assert sl.current_logfiles('stderr log/postgresql-0500.log\ncsvlog log/postgresql-0500.csv\n') == {
        'stderr': 'log/postgresql-0500.log', 'csvlog': 'log/postgresql-0500.csv'}
    assert sl.preferred_format(['stderr', 'csvlog']) == 'csvlog' and sl.preferred_format([]) is None
    assert sl.destinations('stderr, CSVlog') == ['stderr', 'csvlog']
