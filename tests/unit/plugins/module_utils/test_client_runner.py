"""The clients run through ``module.run_command`` (module_utils/_pg_clients.py): arguments literal, the
environment added, timeouts, and pg_dump's stream to the archive, SHA-256 and pg_restore's stdin at once."""
from __future__ import annotations

import hashlib
import os
import stat
import typing as t
from pathlib import Path

import pytest

from ansible_collections.ledgermind.migrations.plugins.module_utils import _pg_clients as pc


def script(path: Path, body: str) -> str:
    path.write_text('#!/bin/sh\n' + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_arguments_are_taken_literally_and_the_environment_is_added() -> None:
    result = pc.run_client(['/bin/sh', '-c', 'printf "%s|%s" "$1" "$PGAPPNAME"', 'sh', '$HOME ~ *'],
                           {'PGAPPNAME': 'lm-test'})
    assert (result.rc, result.stdout) == (0, '$HOME ~ *|lm-test')


def test_a_client_past_its_timeout_is_stopped() -> None:
    with pytest.raises(pc.ClientError, match='did not finish within 0.3s'):
        pc.run_client(['/bin/sleep', '5'], timeout=0.3)


def test_a_missing_client_is_a_client_error() -> None:
    with pytest.raises(pc.ClientError, match='could not run /nonexistent/pg_dump'):
        pc.run_client(['/nonexistent/pg_dump', '--version'])


def test_a_module_runs_its_clients_itself() -> None:
    calls: list[list[str]] = []

    class Module:
        def run_command(self, argv: list[str], **kwargs: t.Any) -> tuple[int, str, str]:
            calls.append(argv)
            assert kwargs['expand_user_and_vars'] is False and kwargs['handle_exceptions'] is False
            return 0, 'pg_dump (PostgreSQL) 15.18\n', ''

    assert pc.client_version('/usr/bin/pg_dump', module=Module()) == (15, '15.18')
    assert calls == [['/usr/bin/pg_dump', '--version']]


def test_stdin_from_passes_the_path_and_arguments_as_positional_parameters(tmp_path: Path) -> None:
    source = tmp_path / 'in; rm -rf x'
    source.write_bytes(b'archive bytes')
    rc, out, _err = pc.run_command(None, pc.stdin_from(str(source), ['/bin/cat']))
    assert (rc, out) == (0, 'archive bytes')


def test_the_stream_reaches_the_file_the_digest_and_pg_restore_alike(tmp_path: Path) -> None:
    payload = os.urandom(3 * pc.CHUNK_SIZE + 123)
    (tmp_path / 'payload').write_bytes(payload)
    dump = script(tmp_path / 'pg_dump', f'cat {tmp_path / "payload"}; echo "pg_dump: warning" >&2\n')
    received = tmp_path / 'received'
    restore = script(tmp_path / 'pg_restore', f'[ "$1" = --file=/dev/null ] || exit 9; cat > {received}\n')
    archive = tmp_path / 'a.dump.partial'
    archive.touch()
    streamed = pc.stream_verified_archive([dump], {}, restore, str(archive))
    assert archive.read_bytes() == payload and received.read_bytes() == payload
    assert streamed.sha256 == hashlib.sha256(payload).hexdigest() and streamed.size == len(payload)
    assert (streamed.dump_rc, streamed.dump_stderr) == (0, 'pg_dump: warning\n')


def test_pg_restore_failing_on_the_stream_fails_verification(tmp_path: Path) -> None:
    dump = script(tmp_path / 'pg_dump', 'head -c 300000 /dev/zero\n')
    restore = script(tmp_path / 'pg_restore', 'head -c 10 > /dev/null; echo "pg_restore: error: bad" >&2; exit 1\n')
    archive = tmp_path / 'a.dump.partial'
    archive.touch()
    with pytest.raises(pc.ClientError, match='failed verification.*pg_restore: error: bad'):
        pc.stream_verified_archive([dump], {}, restore, str(archive))
    assert archive.stat().st_size == 300000  # the whole dump was still read and written


def test_a_failed_dump_is_returned_for_the_caller_to_explain(tmp_path: Path) -> None:
    dump = script(tmp_path / 'pg_dump', 'echo "pg_dump: error: connection refused" >&2; exit 1\n')
    restore = script(tmp_path / 'pg_restore', 'cat > /dev/null; exit 1\n')
    archive = tmp_path / 'a.dump.partial'
    archive.touch()
    streamed = pc.stream_verified_archive([dump], {}, restore, str(archive))
    assert (streamed.dump_rc, streamed.dump_stderr.strip()) == (1, 'pg_dump: error: connection refused')
