"""report_files: atomic writes, a created directory's mode, an existing directory left as it is."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ansible_collections.ledgermind.migrations.plugins.modules import report_files

FILES = [{'name': 'run.json', 'content': '{"verdict": "PASSED"}\n'}, {'name': 'run.md', 'content': '# Sign-off ☕\n'}]


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_creates_the_directory_and_writes_every_file(run_module, tmp_path: Path) -> None:
    target = tmp_path / 'reports' / 'nested'
    failed, result, _ = run_module(report_files.main, dict(path=str(target), files=FILES))
    assert not failed and result['changed'] and result['created_directory']
    assert result['paths'] == [str(target / 'run.json'), str(target / 'run.md')] == result['written']
    assert (target / 'run.md').read_text(encoding='utf-8') == '# Sign-off ☕\n'
    assert mode_of(target) == 0o750 and mode_of(target / 'run.json') == 0o640
    assert sorted(os.listdir(target)) == ['run.json', 'run.md']  # no temporary file left behind


def test_an_existing_directory_keeps_its_mode_and_same_content_is_no_change(run_module, tmp_path: Path) -> None:
    tmp_path.chmod(0o1777)
    failed, first, _ = run_module(report_files.main, dict(path=str(tmp_path), files=FILES))
    assert not failed and first['changed'] and not first['created_directory']
    assert mode_of(tmp_path) == 0o1777
    failed, again, _ = run_module(report_files.main, dict(path=str(tmp_path), files=FILES))
    assert not failed and not again['changed'] and again['written'] == []


def test_check_mode_writes_nothing(run_module, tmp_path: Path) -> None:
    target = tmp_path / 'never'
    failed, result, _ = run_module(report_files.main, dict(path=str(target), files=FILES, _ansible_check_mode=True))
    assert not failed and result['changed'] and result['created_directory'] and not target.exists()


@pytest.mark.parametrize(('files', 'message'), [
    ([{'name': '../escape.md', 'content': 'x'}], 'plain names inside path'),
    ([{'name': 'a.md', 'content': 'x'}, {'name': 'a.md', 'content': 'y'}], 'distinct'),
])
def test_bad_names_are_refused_before_anything_is_written(run_module, tmp_path: Path, files, message) -> None:
    failed, result, _ = run_module(report_files.main, dict(path=str(tmp_path / 'r'), files=files))
    assert failed and message in result['msg'] and not (tmp_path / 'r').exists()


@pytest.mark.parametrize('check_mode', [False, True])
def test_a_file_in_the_way_is_a_clear_error(run_module, tmp_path: Path, check_mode: bool) -> None:
    (tmp_path / 'reports').write_text('not a directory')
    failed, result, _ = run_module(report_files.main, dict(path=str(tmp_path / 'reports'), files=FILES,
                                                           _ansible_check_mode=check_mode))
    assert failed and 'is not a directory' in result['msg'] and result['written'] == []


def test_a_bad_mode_is_a_clear_error(run_module, tmp_path: Path) -> None:
    failed, result, _ = run_module(report_files.main, dict(path=str(tmp_path), files=FILES, mode='rw-r'))
    assert failed and "octal mode such as '0640'" in result['msg']


def test_missing_parents_get_the_directory_mode_too(run_module, tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    target = tmp_path / 'a' / 'b' / 'reports'
    failed, result, _ = run_module(report_files.main, dict(path=str(target), files=FILES, directory_mode='0700'))
    assert not failed and result['created_directory']
    assert [mode_of(d) for d in (tmp_path / 'a', tmp_path / 'a' / 'b', target)] == [0o700, 0o700, 0o700]
    assert mode_of(tmp_path) == 0o755  # the existing parent is untouched


def _make(path: str) -> list[str]:
    return report_files.make_directories(path, 0o750)


def test_hosts_creating_one_new_directory_at_once_all_succeed(tmp_path: Path) -> None:
    """A play delegating its sign-off to the controller runs one module per host at the same moment."""
    # Threads, not a forked pool: forking a pytest worker that runs threads can deadlock the child (it hung CI).
    import threading
    from concurrent.futures import ThreadPoolExecutor

    target = str(tmp_path / 'shared' / 'reports')
    start = threading.Barrier(16)

    def make_together(path: str) -> list[str]:
        start.wait(timeout=30)
        return _make(path)

    with ThreadPoolExecutor(16) as pool:
        created = list(pool.map(make_together, [target] * 16))
    assert os.path.isdir(target) and mode_of(Path(target)) == 0o750
    assert sorted(p for run in created for p in run) == sorted([str(tmp_path / 'shared'), target])


def test_a_file_that_cannot_be_written_is_not_listed_as_written(run_module, tmp_path: Path) -> None:
    """A directory where the Markdown file should go: the JSON is written, the Markdown is not, and says why."""
    (tmp_path / 'run.md').mkdir()
    failed, result, _ = run_module(report_files.main, dict(path=str(tmp_path), files=FILES))
    assert failed
    assert result['written'] == [str(tmp_path / 'run.json')] == result['paths']
    assert [e['path'] for e in result['errors']] == [str(tmp_path / 'run.md')]
    assert 'Is a directory' in result['errors'][0]['error']
    assert result['msg'] == f"cannot write 1 of 2 report files into {tmp_path}: run.md: {result['errors'][0]['error']}"
    assert (tmp_path / 'run.json').read_text(encoding='utf-8') == FILES[0]['content']
    assert sorted(os.listdir(tmp_path)) == ['run.json', 'run.md']  # no temporary file left behind


@pytest.mark.parametrize('blocker', ['reports', 'parent'])
def test_a_directory_that_cannot_be_made_lists_nothing_written(run_module, tmp_path: Path, blocker: str) -> None:
    """A file where the directory (or one of its parents) should be: no file written, each one's error given."""
    if blocker == 'reports':
        (tmp_path / 'reports').write_text('not a directory')
        target = tmp_path / 'reports'
    else:
        (tmp_path / 'parent').write_text('not a directory')
        target = tmp_path / 'parent' / 'reports'
    failed, result, _ = run_module(report_files.main, dict(path=str(target), files=FILES))
    assert failed and result['written'] == [] and result['paths'] == [] and not result['changed']
    assert [e['path'] for e in result['errors']] == [str(target / 'run.json'), str(target / 'run.md')]
    assert all('not a directory' in e['error'].lower() for e in result['errors']), result['errors']
    assert result['msg'].startswith(f'cannot write 2 of 2 report files into {target}: run.json, run.md: ')


def test_unchanged_files_are_listed_in_paths_but_not_written(run_module, tmp_path: Path) -> None:
    failed, _first, _ = run_module(report_files.main, dict(path=str(tmp_path), files=FILES[:1]))
    assert not failed
    failed, result, _ = run_module(report_files.main, dict(path=str(tmp_path), files=FILES))
    assert not failed and result['errors'] == []
    assert result['written'] == [str(tmp_path / 'run.md')]
    assert result['paths'] == [str(tmp_path / 'run.json'), str(tmp_path / 'run.md')]
