# Copyright (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The PostgreSQL server log, read from its end and parsed, for pg_server_log. Pure helpers, no database.

The three formats the server writes: C(stderr) (lines starting with ``log_line_prefix``, an entry's DETAIL,
HINT, CONTEXT, STATEMENT ... on lines of their own, and continuation lines starting with a tab), C(csvlog) and
C(jsonlog). A log is read backwards in chunks, from its end, until an entry older than the window's start (or
the read budget, or the file's start); only then is it decoded and parsed, once.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import os
import re
import typing as t

try:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
except ImportError:  # pragma: no cover - Python < 3.9: abbreviations and numeric offsets only
    ZoneInfo = None  # type: ignore[assignment,misc]
    ZoneInfoNotFoundError = KeyError  # type: ignore[assignment,misc]

UTC = datetime.UTC

# What error_severity() prints (DEBUG1..5 all print DEBUG), least severe first.
SEVERITIES = ('DEBUG', 'LOG', 'INFO', 'NOTICE', 'WARNING', 'ERROR', 'FATAL', 'PANIC')
DEFAULT_LEVELS = ('ERROR', 'FATAL', 'PANIC', 'WARNING')
# stderr lines that belong to the entry before them of the same process, and the entry field they fill.
DETAIL_FIELDS = {'DETAIL': 'detail', 'HINT': 'hint', 'QUERY': 'query', 'CONTEXT': 'context',
                 'STATEMENT': 'statement', 'LOCATION': 'location'}
FORMATS = ('stderr', 'csvlog', 'jsonlog')
# One field of one entry is cut after this many characters (a statement can be megabytes long).
FIELD_LIMIT = 4000
CUT_MARK = ' [...]'

_LEVEL_ALT = '|'.join(SEVERITIES + tuple(DETAIL_FIELDS))
# %m is "2026-12-02 04:45:04.854 UTC", %t the same without milliseconds; the zone is the log_timezone's
# abbreviation, or a numeric one (+03, -0330) where the zone has none.
_TS_BODY = r'\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d{1,6})?'
_TZ = r'(?:[A-Za-z][A-Za-z0-9_/+-]*|[+-]\d{2}(?::?\d{2})?)'
TS = rf'{_TS_BODY}(?: {_TZ})?'
_TS_PARTS = re.compile(rf'^(?P<body>{_TS_BODY})(?: (?P<zone>{_TZ}))?$')
_NUMERIC_ZONE = re.compile(r'^(?P<sign>[+-])(?P<hours>\d{2}):?(?P<minutes>\d{2})?$')
# Any line starting with a timestamp and carrying a severity: prefixes we could not translate exactly.
_FALLBACK = re.compile(rf'^(?P<time>{TS})(?: \[(?P<pid>\d+)\])?.*?\b(?P<level>{_LEVEL_ALT}):  (?P<text>.*)$')
_CSV_START = re.compile(rf'^{_TS_BODY}(?: {_TZ})?,')

# Common abbreviations, used when the log_timezone does not explain one (CST is taken as US Central).
_ABBREVIATIONS = {
    'UTC': 0, 'UCT': 0, 'GMT': 0, 'Z': 0, 'WET': 0, 'WEST': 60, 'BST': 60, 'CET': 60, 'CEST': 120, 'MET': 60,
    'MEST': 120, 'EET': 120, 'EEST': 180, 'MSK': 180, 'SAST': 120, 'EST': -300, 'EDT': -240, 'CST': -360,
    'CDT': -300, 'MST': -420, 'MDT': -360, 'PST': -480, 'PDT': -420, 'AKST': -540, 'AKDT': -480, 'HST': -600,
    'JST': 540, 'KST': 540, 'HKT': 480, 'AWST': 480, 'ACST': 570, 'ACDT': 630, 'AEST': 600, 'AEDT': 660,
    'NZST': 720, 'NZDT': 780,
}

# log_line_prefix escapes: (entry field or None, regex). Unknown escapes print nothing, as in the server.
_PREFIX_ESCAPES: dict[str, tuple[str | None, str]] = {
    'a': ('application', r'.*?'), 'u': ('user', r'.*?'), 'd': ('database', r'.*?'), 'r': ('remote', r'.*?'),
    'h': ('remote', r'.*?'), 'b': ('backend_type', r'.*?'), 'p': ('pid', r'\d+'), 'P': (None, r'\d*'),
    't': ('time', TS), 'm': ('time', TS), 'n': ('epoch', r'\d+(?:\.\d+)?'), 'i': (None, r'.*?'),
    'e': ('sqlstate', r'[0-9A-Z]{5}'), 'c': (None, r'[0-9a-f]+\.[0-9a-f]+'), 'l': (None, r'\d+'), 's': (None, TS),
    'v': (None, r'(?:\d+/\d+)?'), 'x': (None, r'\d+'), 'Q': (None, r'-?\d+'),
}

# csvlog columns (PostgreSQL 13+ adds backend_type, 14+ leader_pid and query_id); None: not kept.
_CSV_COLUMNS: tuple[str | None, ...] = (
    'time', 'user', 'database', 'pid', 'remote', None, None, None, None, None, None, 'level', 'sqlstate',
    'message', 'detail', 'hint', 'query', None, 'context', 'statement', None, 'location', 'application',
    'backend_type')
_JSON_KEYS = {'timestamp': 'time', 'user': 'user', 'dbname': 'database', 'pid': 'pid', 'remote_host': 'remote',
              'error_severity': 'level', 'state_code': 'sqlstate', 'message': 'message', 'detail': 'detail',
              'hint': 'hint', 'internal_query': 'query', 'context': 'context', 'statement': 'statement',
              'application_name': 'application', 'backend_type': 'backend_type'}
# Entry fields in the order they are returned.
ENTRY_FIELDS = ('time', 'level', 'message', 'detail', 'hint', 'context', 'query', 'statement', 'location',
                'sqlstate', 'pid', 'database', 'user', 'application', 'backend_type', 'remote')

Entry = dict[str, t.Any]


# ---------------------------------------------------------------------------------------------
# Times
# ---------------------------------------------------------------------------------------------

def parse_window_time(value: str) -> datetime.datetime:
    """An ISO 8601 timestamp (``2026-12-02T04:45:04Z``, ``2026-12-02 04:45:04+02:00``, ``... UTC``) as aware UTC.

    Without a zone it is taken as UTC. Raises ValueError with the reason.
    """
    text = str(value).strip()
    if not text:
        raise ValueError('empty timestamp')
    upper = text.upper()
    for suffix in (' UTC', ' GMT', 'UTC', 'Z'):
        if upper.endswith(suffix) and len(text) > len(suffix):
            text = text[:-len(suffix)].rstrip() + '+00:00'
            break
    # Python < 3.11 wants exactly 3 or 6 fraction digits and no "+HHMM" without colon.
    match = re.match(r'^(.*?[T ]\d{2}:\d{2}(?::\d{2})?)(?:\.(\d+))?([+-]\d{2}:?\d{2}|[+-]\d{2})?$', text)
    if match:
        head, fraction, zone = match.groups()
        fraction = '.' + (fraction + '000000')[:6] if fraction else ''
        if zone and ':' not in zone:
            zone = zone[:3] + ':' + (zone[3:] or '00')
        text = head + fraction + (zone or '')
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f'{value!r} is not an ISO 8601 timestamp (for example 2026-12-02T04:45:04Z)') from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def iso(value: datetime.datetime) -> str:
    """UTC, ISO 8601, milliseconds: ``2026-12-02T04:45:04.854+00:00``."""
    return value.astimezone(UTC).isoformat(timespec='milliseconds')


class LogTimes:
    """Parses the server's log timestamps, whose zone is an abbreviation of ``log_timezone``.

    The abbreviation is matched against the zone (both sides of a DST change), then against a table of common
    ones; a numeric abbreviation is an offset. One that nothing explains is read in log_timezone (or UTC) and
    named in ``unknown``.
    """

    def __init__(self, log_timezone: str | None = None) -> None:
        self.zone: datetime.tzinfo | None = None
        if log_timezone and ZoneInfo is not None:
            try:
                self.zone = ZoneInfo(log_timezone)
            except (ZoneInfoNotFoundError, ValueError, OSError):
                self.zone = None
        self.offsets: dict[str, datetime.timedelta] = {}
        self.unknown: set[str] = set()

    def parse(self, text: str | None) -> datetime.datetime | None:
        if not text:
            return None
        match = _TS_PARTS.match(text.strip())
        if not match:
            return None
        body, abbreviation = match.group('body'), match.group('zone') or ''
        date, _sep, clock = body.partition(' ')
        clock, _dot, fraction = clock.partition('.')
        try:
            naive = datetime.datetime.fromisoformat(f'{date} {clock}').replace(
                microsecond=int((fraction + '000000')[:6]) if fraction else 0)
        except ValueError:
            return None
        offset = self._offset(abbreviation, naive)
        if offset is None:
            if self.zone is not None:
                return naive.replace(tzinfo=self.zone).astimezone(UTC)
            return naive.replace(tzinfo=UTC)
        return (naive - offset).replace(tzinfo=UTC)

    def _offset(self, abbreviation: str, naive: datetime.datetime) -> datetime.timedelta | None:
        if abbreviation in self.offsets:
            return self.offsets[abbreviation]
        offset: datetime.timedelta | None = None
        numeric = _NUMERIC_ZONE.match(abbreviation)
        if numeric:
            minutes = int(numeric.group('hours')) * 60 + int(numeric.group('minutes') or 0)
            offset = datetime.timedelta(minutes=-minutes if numeric.group('sign') == '-' else minutes)
        elif self.zone is not None and abbreviation:
            for fold in (0, 1):
                local = naive.replace(tzinfo=self.zone, fold=fold)
                if local.tzname() == abbreviation:
                    offset = local.utcoffset()
                    break
        if offset is None and abbreviation.upper() in _ABBREVIATIONS:
            offset = datetime.timedelta(minutes=_ABBREVIATIONS[abbreviation.upper()])
        if offset is None:
            if abbreviation:
                self.unknown.add(abbreviation)
            return None
        self.offsets[abbreviation] = offset
        return offset


# ---------------------------------------------------------------------------------------------
# Formats
# ---------------------------------------------------------------------------------------------

def prefix_regex(prefix: str) -> tuple[re.Pattern[str], bool]:
    """The regex of a whole stderr line for this ``log_line_prefix``, and whether the prefix has a timestamp.

    Groups: the prefix's fields (``time``, ``pid``, ``database``, ...), then ``level`` and ``text``. What follows
    ``%q`` is optional (processes that are not sessions stop there); ``%-10u``-style padding is allowed.
    """
    parts: list[str] = []
    named: set[str] = set()
    optional_from: int | None = None
    i = 0
    while i < len(prefix):
        char = prefix[i]
        if char != '%' or i + 1 >= len(prefix):
            parts.append(re.escape(char))
            i += 1
            continue
        pad = re.match(r'-?\d+', prefix[i + 1:])
        j = i + 1 + (pad.end() if pad else 0)
        if j >= len(prefix):
            break
        code = prefix[j]
        i = j + 1
        if code == '%':
            parts.append('%')
            continue
        if code == 'q':
            if optional_from is None:
                optional_from = len(parts)
            continue
        if code not in _PREFIX_ESCAPES:
            continue
        name, rx = _PREFIX_ESCAPES[code]
        group = f'(?P<{name}>{rx})' if name and name not in named else f'(?:{rx})'
        if name:
            named.add(name)
        parts.append(rf' *{group} *' if pad else group)
    if optional_from is not None:
        parts = parts[:optional_from] + ['(?:' + ''.join(parts[optional_from:]) + ')?']
    pattern = '^' + ''.join(parts) + rf'(?P<level>{_LEVEL_ALT}):  (?P<text>.*)$'
    return re.compile(pattern), bool(named & {'time', 'epoch'})


def detect_format(text: str) -> str:
    """C(jsonlog), C(csvlog) or C(stderr), from the first complete lines of a log."""
    lines = text.split('\n')[1:40] or text.split('\n')[:1]
    for line in lines:
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith('{') and '"timestamp"' in stripped:
            return 'jsonlog'
        if _CSV_START.match(stripped):
            return 'csvlog'
    return 'stderr'


def _clean(value: t.Any) -> t.Any:
    if isinstance(value, str):
        value = value.strip()
        if len(value) > FIELD_LIMIT:
            value = value[:FIELD_LIMIT] + CUT_MARK
    return value


def _known(value: t.Any) -> t.Any:
    """None for what the server prints when it does not know (empty, ``[unknown]``)."""
    if value is None or (isinstance(value, str) and value.strip() in ('', '[unknown]')):
        return None
    return value


class Parser:
    """Parses one log format into entries ``{time, level, message, detail, ..., pid, database, user}``."""

    def __init__(self, fmt: str, line_prefix: str = '%m [%p] ', log_timezone: str | None = None) -> None:
        if fmt not in FORMATS:
            raise ValueError(f'unknown log format {fmt!r}')
        self.format = fmt
        self.line_prefix = line_prefix
        self.pattern, self.has_time = prefix_regex(line_prefix)
        if fmt != 'stderr':
            self.has_time = True
        self.times = LogTimes(log_timezone)

    # -- the first entry of a chunk: where reading backwards may stop -----------------------------

    def first_time(self, text: str, at_file_start: bool) -> datetime.datetime | None:
        """The time of the first entry starting in ``text`` (whose first line is partial unless at the file's start)."""
        lines = text.split('\n')
        if not at_file_start:
            lines = lines[1:]
        for line in lines:
            when = self._line_time(line)
            if when is not None:
                return when
        return None

    def _line_time(self, line: str) -> datetime.datetime | None:
        if self.format == 'stderr':
            match = self.pattern.match(line) or _FALLBACK.match(line)
            return self._time_of(match.groupdict()) if match else None
        if self.format == 'csvlog':
            if not _CSV_START.match(line):
                return None
            return self.times.parse(line.split(',', 1)[0])
        if line.startswith('{'):
            try:
                record = json.loads(line)
            except ValueError:
                return None
            return self.times.parse(record.get('timestamp')) if isinstance(record, dict) else None
        return None

    def _time_of(self, groups: dict[str, t.Any]) -> datetime.datetime | None:
        if groups.get('time'):
            return self.times.parse(groups['time'])
        if groups.get('epoch'):
            return datetime.datetime.fromtimestamp(float(groups['epoch']), UTC)
        return None

    # -- whole texts --------------------------------------------------------------------------------

    def parse(self, text: str, at_file_start: bool = True) -> list[Entry]:
        """Every entry that starts in ``text``, in the order logged (a partial first line is dropped)."""
        if not at_file_start:
            text = text.partition('\n')[2]
        if self.format == 'csvlog':
            entries = self._parse_csv(text)
        elif self.format == 'jsonlog':
            entries = self._parse_json(text)
        else:
            entries = self._parse_stderr(text)
        return [{k: _clean(v) for k, v in entry.items() if v is not None} for entry in entries]

    def _parse_stderr(self, text: str) -> list[Entry]:
        entries: list[Entry] = []
        by_pid: dict[str, Entry] = {}
        target: tuple[Entry, str] | None = None  # where a continuation line goes
        for raw in text.split('\n'):
            line = raw.rstrip('\r')
            match = self.pattern.match(line) or _FALLBACK.match(line)
            if match is None:
                if target is not None:
                    entry, field = target
                    entry[field] = (entry.get(field) or '') + '\n' + (line[1:] if line.startswith('\t') else line)
                continue
            groups = match.groupdict()
            level, pid = groups['level'], groups.get('pid')
            if level in DETAIL_FIELDS:
                owner = by_pid.get(pid) if pid else None
                if owner is None and entries and (not pid or entries[-1].get('pid') in (None, int(pid))):
                    owner = entries[-1]
                if owner is None:  # its entry began before what was read
                    target = None
                    continue
                field = DETAIL_FIELDS[level]
                owner[field] = (owner[field] + '\n' + groups['text']) if owner.get(field) else groups['text']
                target = (owner, field)
                continue
            new: Entry = {'time': self._time_of(groups), 'level': level, 'message': groups['text']}
            if pid:
                new['pid'] = int(pid)
            for key in ('database', 'user', 'application', 'sqlstate', 'remote', 'backend_type'):
                if _known(groups.get(key)) is not None:
                    new[key] = groups[key].strip()
            entries.append(new)
            if pid:
                by_pid[pid] = new
            target = (new, 'message')
        return entries

    def _parse_csv(self, text: str) -> list[Entry]:
        start = next((m.start() for m in re.finditer(r'(?m)^', text) if _CSV_START.match(text, m.start())), None)
        if start is None:
            return []
        entries: list[Entry] = []
        for row in csv.reader(io.StringIO(text[start:], newline='')):
            if len(row) < 14 or not _CSV_START.match(row[0] + ','):
                continue
            entry: Entry = {}
            for name, value in zip(_CSV_COLUMNS, row, strict=False):
                if name and _known(value) is not None:
                    entry[name] = value
            self._finish(entry)
            if entry.get('level'):
                entries.append(entry)
        return entries

    def _parse_json(self, text: str) -> list[Entry]:
        entries: list[Entry] = []
        for line in text.split('\n'):
            if not line.startswith('{'):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if not isinstance(record, dict):
                continue
            entry = {_JSON_KEYS[k]: v for k, v in record.items() if k in _JSON_KEYS and _known(v) is not None}
            self._finish(entry)
            if entry.get('level'):
                entries.append(entry)
        return entries

    def _finish(self, entry: Entry) -> None:
        entry['time'] = self.times.parse(entry.get('time'))
        if 'pid' in entry:
            try:
                entry['pid'] = int(entry['pid'])
            except (TypeError, ValueError):
                del entry['pid']
        entry.setdefault('message', '')


# ---------------------------------------------------------------------------------------------
# Reading backwards
# ---------------------------------------------------------------------------------------------

class TailRead(t.NamedTuple):
    data: bytes  # from ``offset`` to the size the file had
    offset: int
    reached_since: bool  # an entry older than the window's start was read: the window starts in ``data``
    at_file_start: bool
    budget_spent: bool


def read_tail(read: t.Callable[[int, int], bytes], size: int, since: datetime.datetime, parser: Parser,
              chunk: int = 1 << 16, budget: int = 32 << 20, max_chunk: int = 4 << 20) -> TailRead:
    """Read a log backwards from ``size`` until an entry older than ``since`` starts in what was read.

    ``read(offset, length)`` returns that many bytes. Steps start at ``chunk`` bytes and double up to
    ``max_chunk`` (a short window costs one small read, a long one few round trips). Stops at the file's start or
    when ``budget`` bytes were read. Only the first entry of each new piece is parsed on the way.
    """
    offset, data, reached = size, b'', False
    while offset > 0 and len(data) < budget:
        step = min(chunk, offset, budget - len(data))
        offset -= step
        piece = read(offset, step)
        data = piece + data
        # The first entry starting in the new piece; the piece's end may cut a line, so look a little further.
        first = parser.first_time(data[:step + 8192].decode('utf-8', 'replace'), at_file_start=offset == 0)
        if first is not None and first < since:
            reached = True
            break
        chunk = min(chunk * 2, max_chunk)
    return TailRead(data, offset, reached, offset == 0, offset > 0 and not reached)


def local_reader(path: str) -> tuple[int, float, t.Callable[[int, int], bytes]]:
    """(size, mtime, read(offset, length)) of a file on this host; OSError when it cannot be read."""
    with open(path, 'rb'):
        pass  # fails now, with the reason, rather than in the middle of reading
    stat = os.stat(path)

    def read(offset: int, length: int) -> bytes:
        with open(path, 'rb') as handle:
            handle.seek(offset)
            return handle.read(length)

    return stat.st_size, stat.st_mtime, read


# ---------------------------------------------------------------------------------------------
# Selection
# ---------------------------------------------------------------------------------------------

def in_window(entry: Entry, since: datetime.datetime, until: datetime.datetime | None) -> bool:
    when = entry.get('time')
    return when is not None and when >= since and (until is None or when <= until)


def select(entries: list[Entry], since: datetime.datetime, until: datetime.datetime | None,
           levels: t.Sequence[str], database: str | None) -> list[Entry]:
    """Entries of the window and levels, in time order. With ``database``, entries of other databases are left out
    (entries that name none, such as the postmaster's or the checkpointer's, are kept)."""
    wanted = set(levels)
    chosen = [e for e in entries if e.get('level') in wanted and in_window(e, since, until)
              and (database is None or e.get('database') in (None, database))]
    return sorted(chosen, key=lambda e: e['time'])


def counts(entries: list[Entry], levels: t.Sequence[str]) -> dict[str, int]:
    result = {level: 0 for level in levels}
    for entry in entries:
        result[entry['level']] = result.get(entry['level'], 0) + 1
    return result


def public_entry(entry: Entry) -> Entry:
    """An entry as returned: JSON-friendly, fields in a fixed order, the time as ISO 8601 UTC."""
    out = {k: entry[k] for k in ENTRY_FIELDS if entry.get(k) not in (None, '')}
    out['time'] = iso(entry['time'])
    out.setdefault('message', '')
    return out


# File times may be whole seconds (pg_stat_file, some file systems): a file last written in the window's first
# second must not look older than the window.
_MTIME_SLACK = datetime.timedelta(seconds=1)


def rotated_siblings(path: str, since: datetime.datetime) -> list[str]:
    """The rotated copy ``<path>.1`` (logrotate, copytruncate) when it was written to within the window."""
    sibling = path + '.1'
    try:
        mtime = os.stat(sibling).st_mtime
    except OSError:
        return []
    return [sibling] if datetime.datetime.fromtimestamp(mtime, UTC) >= since - _MTIME_SLACK else []


def same_kind_files(directory: str, current: str, since: datetime.datetime) -> list[str]:
    """Other files of ``directory`` with ``current``'s suffix written to since ``since``, newest first (rotation)."""
    suffix = os.path.splitext(current)[1]
    found: list[tuple[float, str]] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    for name in names:
        path = os.path.join(directory, name)
        if name == os.path.basename(current) or os.path.splitext(name)[1] != suffix:
            continue
        try:
            stat = os.stat(path)
        except OSError:
            continue
        if os.path.isfile(path) and datetime.datetime.fromtimestamp(stat.st_mtime, UTC) >= since - _MTIME_SLACK:
            found.append((stat.st_mtime, path))
    return [p for _m, p in sorted(found, reverse=True)]


def current_logfiles(text: str) -> dict[str, str]:
    """The data directory's C(current_logfiles) (``stderr log/postgresql-....log`` lines) as {format: path}."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        fmt, _sep, path = line.strip().partition(' ')
        if fmt in FORMATS and path:
            result[fmt] = path
    return result


def preferred_format(available: t.Iterable[str]) -> str | None:
    """The format to read among those the server writes: jsonlog, then csvlog (whole fields), then stderr."""
    have = set(available)
    return next((fmt for fmt in ('jsonlog', 'csvlog', 'stderr') if fmt in have), None)


def destinations(log_destination: str | None) -> list[str]:
    return [d.strip().lower() for d in (log_destination or '').split(',') if d.strip()]
