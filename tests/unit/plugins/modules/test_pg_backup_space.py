"""pg_backup_archive's free space check: the archive's estimate against the backup directory's room, refused with
the numbers and what to do before pg_dump starts."""
from __future__ import annotations

import pytest

from ansible_collections.ledgermind.migrations.plugins.modules import pg_backup_archive as m

MIB = 1024 * 1024
BASIS = 'pg_total_relation_size(public.ml_features)'


def test_space_check_compares_the_estimate_times_the_margin() -> None:
    space = m.space_check(10 * MIB, '/b', '', BASIS, 100 * MIB, 1, 2.0)
    assert space == {
        'checked': True, 'enough': False, 'directory': '/b', 'free_bytes': 10 * MIB, 'basis': BASIS,
        'basis_bytes': 100 * MIB, 'factor': 0.2, 'estimated_bytes': 20 * MIB, 'margin': 2.0, 'needed_bytes': 40 * MIB,
        'summary': 'free space in /b: 10.0 MiB, 40.0 MiB needed (archive ~20.0 MiB x2)',
    }


def test_uncompressed_archives_are_expected_larger() -> None:
    space = m.space_check(10 * MIB, '/b', '', BASIS, 100 * MIB, 0, 1.0)
    assert (space['factor'], space['estimated_bytes'], space['needed_bytes']) == (0.7, 70 * MIB, 70 * MIB)


@pytest.mark.parametrize(('free', 'margin', 'summary'), [
    (None, 2.0, 'free space could not be checked: the file system of /b could not be read (Permission denied); '
                'the archive needs about 40.0 MiB'),
    (0, 0, 'free space not checked (free_space_margin 0)'),
])
def test_space_not_compared_is_never_refused(free: int | None, margin: float, summary: str) -> None:
    space = m.space_check(free, '/b', 'the file system of /b could not be read (Permission denied)', BASIS,
                          100 * MIB, 1, margin)
    assert (space['checked'], space['enough'], space['summary']) == (False, None, summary)
    assert m.space_refusal(space, '/b', 1) is None


def test_room_enough_is_not_refused() -> None:
    assert m.space_refusal(m.space_check(40 * MIB, '/b', '', BASIS, 100 * MIB, 1, 2.0), '/b', 1) is None


def test_refusal_names_the_numbers_and_what_to_do() -> None:
    space = m.space_check(10 * MIB, '/var/backups/ledgermind', '', BASIS, 100 * MIB, 1, 2.0)
    assert m.space_refusal(space, '/var/backups/ledgermind', 1) == (
        'Not enough free space for the backup in /var/backups/ledgermind: the archive is expected to take about '
        '20.0 MiB (pg_total_relation_size(public.ml_features) 100.0 MiB x0.2 at compress_level 1), x2 margin = '
        '40.0 MiB needed, and its file system has 10.0 MiB free. Free 30.0 MiB in /var/backups/ledgermind or set '
        'ledgermind_backup_dir (dest_dir) to a directory with room; free_space_margin (pg_backup_free_space_margin) '
        'sets the margin. Nothing was changed.')


def test_refusal_says_where_a_missing_directory_was_measured() -> None:
    space = m.space_check(10 * MIB, '/var/backups', '', 'pg_database_size(ledgermind)', 100 * MIB, 1, 2.0)
    refusal = m.space_refusal(space, '/var/backups/ledgermind', 1)
    assert refusal is not None
    assert refusal.startswith('Not enough free space for the backup in /var/backups/ledgermind (measured at '
                              '/var/backups, it does not exist yet): ')
    assert '(pg_database_size(ledgermind) 100.0 MiB x0.2' in refusal
