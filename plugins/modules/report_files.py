#!/usr/bin/python
# Copyright (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: report_files
short_description: Write a run's report files into a directory in one step
version_added: 0.1.0
description:
  - Writes each of O(files) into O(path) atomically (a temporary file in the same directory, then a rename),
    so a reader never sees half a report and an interrupted run leaves no partial file.
  - Creates O(path) and any missing parent with O(directory_mode); never changes the mode of an existing
    directory (a shared one such as C(/tmp) keeps its own). Several hosts writing into one new directory at
    once (a play delegating the report to the controller) all succeed.
  - Each file is flushed to disk (fsync) before it takes its final name.
  - One module run writes all the files, so the sign-off writes its JSON and Markdown together.
  - A file that cannot be written (a full disk, a directory in its place, a directory that cannot be made) does
    not stop the others; the module then fails, listing in RV(errors) each file it did not write and why, and in
    RV(written) only the files it did write.
author:
  - LedgerMind SRE (@ledgermind)
options:
  path:
    description: Directory receiving the files.
    type: path
    required: true
  files:
    description: The files to write.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: File name inside O(path), without any directory part.
        type: str
        required: true
      content:
        description: The file's text, written as UTF-8.
        type: str
        required: true
  mode:
    description: Mode of the files written.
    type: raw
    default: '0640'
  directory_mode:
    description: Mode of O(path) when the module creates it.
    type: raw
    default: '0750'
attributes:
  check_mode:
    support: full
    details: Reports which files would be written or changed, and writes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
'''

EXAMPLES = r'''
- name: Write the sign-off report
  ledgermind.migrations.report_files:
    path: /var/log/ledgermind/reports
    files:
      - name: tokens_migrate_db1_20261129T020000Z.json
        content: "{{ report | to_nice_json }}"
      - name: tokens_migrate_db1_20261129T020000Z.md
        content: "{{ lookup('ansible.builtin.template', 'report.md.j2') }}"
'''

RETURN = r'''
paths:
  description:
    - Absolute paths of the files that hold their given content now (written by this run or already identical),
      in the order given. All of them on success; never a file that could not be written.
  returned: always
  type: list
  elements: str
  sample: [/var/log/ledgermind/reports/tokens_migrate_db1_20261129T020000Z.json]
written:
  description: The files this run wrote, their content new or different (in check mode, those it would write).
  returned: always
  type: list
  elements: str
errors:
  description: Each file that could not be written, with the reason (empty on success).
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: Absolute path of the file.
      type: str
    error:
      description: Why it was not written.
      type: str
  sample:
    - path: /var/log/ledgermind/reports/tokens_migrate_db1_20261129T020000Z.md
      error: "[Errno 28] No space left on device"
created_directory:
  description: Whether O(path) was missing and this run created it (in check mode, would create it).
  returned: always
  type: bool
'''

import errno
import os
import tempfile
import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ledgermind.migrations.plugins.module_utils._errors import fail


def parse_mode(module: AnsibleModule, value: t.Any, option: str) -> int:
    try:
        return int(str(value), 8) if isinstance(value, str) else int(value)
    except ValueError:
        fail(module, f"{option} must be an octal mode such as '0640', got {value!r}.")
        raise  # not reached: fail exits the module


def bad_name(name: str) -> bool:
    return not name or name in ('.', '..') or os.sep in name or '\0' in name


def unchanged(path: str, data: bytes, mode: int) -> bool:
    try:
        with open(path, 'rb') as handle:
            same = handle.read() == data
        return same and (os.stat(path).st_mode & 0o7777) == mode
    except OSError:
        return False


def write_atomically(path: str, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix='.' + os.path.basename(path) + '.')
    try:
        with os.fdopen(fd, 'wb') as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def make_directories(directory: str, mode: int) -> list[str]:
    """Create ``directory`` and its missing parents with ``mode``; returns those this call created.

    Another process creating one of them at the same moment is fine: an existing directory is left as
    it is (and not re-moded), whoever made it.
    """
    missing = []
    current = directory
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    created = []
    for path in reversed(missing):
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            if not os.path.isdir(path):
                raise NotADirectoryError(errno.ENOTDIR, 'Not a directory (a file is in the way)', path) from None
            continue
        os.chmod(path, mode)  # mkdir's mode is filtered by the umask
        created.append(path)
    return created


def describe_errors(errors: dict[str, str]) -> str:
    """``a.json, a.md: reason; b.md: other reason``: files sharing a reason named together, in order."""
    by_reason: dict[str, list[str]] = {}
    for path, reason in errors.items():
        by_reason.setdefault(reason, []).append(os.path.basename(path))
    return '; '.join(f"{', '.join(names)}: {reason}" for reason, names in by_reason.items())


def argument_spec() -> dict[str, t.Any]:
    return dict(
        path=dict(type='path', required=True),
        files=dict(type='list', elements='dict', required=True, options=dict(
            name=dict(type='str', required=True),
            content=dict(type='str', required=True),
        )),
        mode=dict(type='raw', default='0640'),
        directory_mode=dict(type='raw', default='0750'),
    )


def check_names(module: AnsibleModule) -> None:
    names = [f['name'] for f in module.params['files']]
    bad = [n for n in names if bad_name(n)]
    if bad:
        fail(module, f"file names must be plain names inside path, not {', '.join(map(repr, bad))}.")
    if len(set(names)) != len(names):
        fail(module, 'file names must be distinct.')


def plan(
    directory: str, files: list[dict[str, t.Any]], mode: int,
) -> tuple[list[tuple[str, bytes]], list[str], bool, dict[str, str]]:
    """Every file's path and bytes, those that differ from what is there, whether the directory is missing, and
    the files that cannot be written whatever happens (the path is not a directory)."""
    planned = [(os.path.join(directory, f['name']), f['content'].encode('utf-8')) for f in files]
    missing = not os.path.isdir(directory)
    pending = [path for path, data in planned if missing or not unchanged(path, data, mode)]
    errors: dict[str, str] = {}
    if os.path.exists(directory) and not os.path.isdir(directory):
        errors = dict.fromkeys(pending, f'{directory} exists and is not a directory; choose another report directory')
    return planned, pending, missing, errors


def write(directory: str, planned: list[tuple[str, bytes]], pending: list[str], missing: bool,
          errors: dict[str, str], mode: int, directory_mode: int) -> tuple[list[str], bool]:
    """Creates the directory when missing and writes the pending files atomically; the files written and whether
    the directory was created (``errors`` gains what failed)."""
    created = False
    if missing and not errors:
        try:
            created = bool(make_directories(directory, directory_mode))
        except OSError as exc:
            errors.update(dict.fromkeys(pending, f'cannot create {directory}: {exc}'))
    written = []
    for path, data in planned:
        if path in pending and path not in errors:
            try:
                write_atomically(path, data, mode)
            except OSError as exc:
                errors[path] = str(exc)
            else:
                written.append(path)
    return written, created


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    mode = parse_mode(module, p['mode'], 'mode')
    directory_mode = parse_mode(module, p['directory_mode'], 'directory_mode')
    directory = os.path.abspath(p['path'])
    check_names(module)
    planned, pending, missing, errors = plan(directory, p['files'], mode)
    if module.check_mode and not errors:
        module.exit_json(changed=bool(pending) or missing, paths=[path for path, _data in planned], written=pending,
                         errors=[], created_directory=missing)
    written, created = write(directory, planned, pending, missing, errors, mode, directory_mode)
    result = dict(changed=bool(written) or created, paths=[path for path, _data in planned if path not in errors],
                  written=written, errors=[dict(path=path, error=error) for path, error in errors.items()],
                  created_directory=created)
    if errors:
        fail(module, f'cannot write {len(errors)} of {len(planned)} report files into {directory}: '
                     f'{describe_errors(errors)}', **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
