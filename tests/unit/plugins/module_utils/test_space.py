"""_space: the archive's size estimate, the room asked for, and where the free space is read (or why it is not)."""
from __future__ import annotations

import os
import struct
import typing as t
from pathlib import Path

import pytest

from ansible_collections.ledgermind.migrations.plugins.module_utils import _space as s

MIB = 1024 * 1024


@pytest.mark.parametrize(('n', 'text'), [
    (None, 'unknown'),
    (0, '0.0 MiB'),
    (1, '0.1 MiB'),  # anything above zero shows, so a shortfall never reads 0
    (MIB, '1.0 MiB'),
    (int(1.25 * MIB), '1.3 MiB'),  # rounded up, never down
    (1536 * MIB, '1536.0 MiB'),
])
def test_mib(n: int | None, text: str) -> None:
    assert s.mib(n) == text


@pytest.mark.parametrize(('level', 'factor'), [(0, 0.7), (1, 0.2), (6, 0.2), (9, 0.2)])
def test_archive_factor_by_compression(level: int, factor: float) -> None:
    assert s.archive_factor(level) == factor


def test_factors_cover_the_measured_demo_ratios() -> None:
    """Archive / pg_total_relation_size measured on the demo table (text[] and jsonb, 10K and 200K rows)."""
    measured_compressed = [291759 / 1867776, 5797062 / 36175872, 6191463 / 33824768]
    measured_plain = [19423064 / 36175872, 22934370 / 33824768]
    assert max(measured_compressed) < s.ARCHIVE_FACTOR_COMPRESSED
    assert max(measured_plain) < s.ARCHIVE_FACTOR_UNCOMPRESSED


@pytest.mark.parametrize(('basis', 'level', 'estimate'), [
    (36175872, 1, 7235175),  # the 200K-row demo table: its archive took 5797062 bytes
    (36175872, 0, 25323111),  # uncompressed, it took 19423064
    (0, 1, 0),
    (-5, 1, 0),  # never negative
    (3, 1, 1),  # rounded up
])
def test_estimate_archive_bytes(basis: int, level: int, estimate: int) -> None:
    assert s.estimate_archive_bytes(basis, level) == estimate


@pytest.mark.parametrize(('estimate', 'margin', 'needed'), [
    (7235175, 2.0, 14470350),
    (100, 1.5, 150),
    (101, 1.5, 152),  # rounded up
    (100, 0, 0),
])
def test_needed_bytes(estimate: int, margin: float, needed: int) -> None:
    assert s.needed_bytes(estimate, margin) == needed


@pytest.mark.parametrize(('free', 'needed', 'expected'), [
    (None, 10, None),  # unknown is never "too little"
    (10, 10, True),
    (11, 10, True),
    (9, 10, False),
])
def test_verdict(free: int | None, needed: int, expected: bool | None) -> None:
    assert s.verdict(free, needed) is expected


def test_shortfall() -> None:
    assert (s.shortfall(4, 10), s.shortfall(10, 10), s.shortfall(12, 10)) == (6, 0, 0)


def test_existing_directory_climbs_to_the_parent_that_exists(tmp_path: Path) -> None:
    assert s.existing_directory(str(tmp_path)) == str(tmp_path)
    assert s.existing_directory(str(tmp_path / 'a' / 'b')) == str(tmp_path)
    assert s.existing_directory('relative/not/there') == os.getcwd()


class Stat(t.NamedTuple):
    f_bavail: int
    f_frsize: int


def test_directory_free_measures_the_nearest_existing_directory(tmp_path: Path, monkeypatch) -> None:
    seen: list[str] = []

    def statvfs(path: str) -> Stat:
        seen.append(path)
        return Stat(f_bavail=10, f_frsize=4096)

    monkeypatch.setattr(s.os, 'statvfs', statvfs)
    assert s.directory_free(str(tmp_path / 'backups')) == (40960, str(tmp_path), '')
    assert seen == [str(tmp_path)]


def test_directory_free_says_why_it_is_unknown(tmp_path: Path, monkeypatch) -> None:
    def statvfs(path: str) -> Stat:
        raise PermissionError(13, 'Permission denied')

    monkeypatch.setattr(s.os, 'statvfs', statvfs)
    free, where, why = s.directory_free(str(tmp_path))
    assert (free, where) == (None, str(tmp_path))
    assert why == f'the file system of {tmp_path} could not be read (Permission denied)'


def data_directory(tmp_path: Path, identifier: int | None) -> str:
    (tmp_path / 'global').mkdir()
    if identifier is not None:
        (tmp_path / 'global' / 'pg_control').write_bytes(struct.pack('=Q', identifier) + b'\0' * 100)
    return str(tmp_path)


def test_data_directory_free_unknown_without_the_setting() -> None:
    assert s.data_directory_free(None) == (None, 'the role may not read data_directory (pg_read_all_settings)')
    assert s.data_directory_free('') == (None, 'the role may not read data_directory (pg_read_all_settings)')


def test_data_directory_free_unknown_when_not_on_this_host(tmp_path: Path) -> None:
    path = str(tmp_path / 'elsewhere' / 'main')
    assert s.data_directory_free(path) == (None, f'the data directory {path} is not visible from this host')


def test_data_directory_free_of_the_servers_own_directory(tmp_path: Path) -> None:
    path = data_directory(tmp_path, 7301234567890123456)
    free, source = s.data_directory_free(path, '7301234567890123456')
    assert free is not None and free > 0
    assert source == f'free on the file system of {path}'


def test_data_directory_free_refuses_another_clusters_directory(tmp_path: Path) -> None:
    """The same path on this host belongs to a local cluster: its room says nothing about the server's."""
    path = data_directory(tmp_path, 42)
    free, source = s.data_directory_free(path, '7301234567890123456')
    assert free is None
    assert source == (f"the data directory {path} on this host is another cluster's (system identifier 42, the "
                      "server's 7301234567890123456); the server's is not visible from this host")


@pytest.mark.parametrize('identifier', [None, '7301234567890123456'])
def test_data_directory_free_without_a_readable_control_file(tmp_path: Path, identifier: str | None) -> None:
    """Unreadable control file (not the server's owner) or unknown server identifier: the directory is trusted."""
    path = data_directory(tmp_path, None)
    free, source = s.data_directory_free(path, identifier)
    assert free is not None and source == f'free on the file system of {path}'


class Cursor:
    def __init__(self, data_directory: str | None) -> None:
        self.data_directory = data_directory
        self.executed: list[str] = []

    def execute(self, query: str, params: t.Any = None) -> None:
        self.executed.append(query)

    def fetchone(self) -> dict[str, t.Any]:
        return {'data_directory': self.data_directory}


def test_free_space_of_a_table_in_its_own_tablespace_is_unknown_without_a_query() -> None:
    cur = Cursor('/var/lib/postgresql/15/main')
    assert s.free_space(cur, {'own_tablespace': True}) == (
        None, 'the table lives in a tablespace of its own; check its free space by hand')
    assert cur.executed == []


def test_free_space_reads_the_data_directory_guarded(tmp_path: Path) -> None:
    cur = Cursor(str(tmp_path))
    free, source = s.free_space(cur, {'own_tablespace': False})
    assert free is not None and source == f'free on the file system of {tmp_path}'
    assert "pg_has_role('pg_read_all_settings', 'USAGE')" in cur.executed[0]
    assert s.free_space(Cursor(None), {'own_tablespace': False})[0] is None


class SizeCursor:
    """Answers table_size's queries; ``exact`` is the pg_total_relation_size row, or the exception it raises."""

    def __init__(self, exact: t.Any) -> None:
        self.exact = exact
        self.executed: list[tuple[str, t.Any]] = []
        self.row: dict[str, t.Any] | None = None

    def execute(self, query: str, params: t.Any = None) -> None:
        self.executed.append((query, params))
        if 'pg_total_relation_size' in query:
            if isinstance(self.exact, BaseException):
                raise self.exact
            self.row = self.exact
        elif 'relpages' in query:
            self.row = {'relid': 1, 'total_bytes': 8192, 'own_tablespace': False}
        elif "current_setting('lock_timeout')" in query:
            self.row = {'lock_timeout': '5s'}
        else:
            self.row = None

    def fetchone(self) -> dict[str, t.Any] | None:
        return self.row


class Locked(Exception):
    pgcode = '55P03'


class Denied(Exception):
    pgcode = '42501'


def test_table_size_exact() -> None:
    cur = SizeCursor({'relid': 1, 'total_bytes': 123, 'own_tablespace': False})
    assert s.table_size(cur, 'public', 't') == ({'relid': 1, 'total_bytes': 123, 'own_tablespace': False},
                                               'pg_total_relation_size')
    assert [q for q, _p in cur.executed][-1] == 'RELEASE SAVEPOINT ledgermind_space'


def test_table_size_from_page_counts_while_locked() -> None:
    cur = SizeCursor(Locked())
    assert s.table_size(cur, 'public', 't') == ({'relid': 1, 'total_bytes': 8192, 'own_tablespace': False},
                                               'pg_class.relpages')
    assert 'ROLLBACK TO SAVEPOINT ledgermind_space' in [q for q, _p in cur.executed]


def test_table_size_missing_table() -> None:
    assert s.table_size(SizeCursor(None), 'public', 'nope') == (None, 'pg_total_relation_size')


def test_table_size_lets_other_errors_through() -> None:
    with pytest.raises(Denied):
        s.table_size(SizeCursor(Denied()), 'public', 't')
