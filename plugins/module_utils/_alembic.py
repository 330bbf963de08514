# Copyright (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pure helpers for driving an application's own Alembic from a module.

Alembic runs in the application's virtualenv, not in the module's interpreter, so it is driven
through its command line; these helpers read its output and decide what to do.
"""

from __future__ import annotations

import re
import typing as t
from dataclasses import dataclass, field

BASE = 'base'
# `alembic history` lines: "<base> -> 20251109_x, message" / "a -> b (head), message" /
# "(a, b) -> c (mergepoint), message" / "a -> b (branchpoint), message".
_HISTORY_LINE = re.compile(
    r'^(?P<parents><base>|\([^)]*\)|[\w.-]+) -> (?P<revision>[\w.-]+)(?: \([^)]*\))*, ?(?P<message>.*)$'
)
# Errors after which another try can succeed once the competing session is gone.
_RETRYABLE = (
    'lock timeout',
    'deadlock detected',
    'could not obtain lock',
    'could not serialize access',
)
_RUNNING_LINE = re.compile(r'Running (?:upgrade|downgrade) .*$')


@dataclass
class Revision:
    revision: str
    parents: tuple[str, ...]
    message: str


@dataclass
class History:
    revisions: dict[str, Revision] = field(default_factory=dict)

    def known(self, revision: str) -> bool:
        return revision == BASE or revision in self.revisions

    def ancestors(self, revision: str) -> set[str]:
        """Every revision below ``revision`` (not itself), ``base`` included."""
        seen: set[str] = set()
        stack = [revision]
        while stack:
            current = stack.pop()
            entry = self.revisions.get(current)
            parents = entry.parents if entry else ()
            if not parents and current != BASE:
                seen.add(BASE)
            for parent in parents:
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        return seen

    def direction(self, current: str, target: str) -> str | None:
        """``upgrade``, ``downgrade`` or None when already there; ValueError when unrelated."""
        if current == target:
            return None
        if current in self.ancestors(target):
            return 'upgrade'
        if target in self.ancestors(current):
            return 'downgrade'
        raise ValueError(f'revision {target} is neither an ancestor nor a descendant of {current}')

    def path(self, current: str, target: str) -> list[str]:
        """The revisions applied (upgrade) or undone (downgrade) between current and target."""
        low, high = (current, target) if self.direction(current, target) == 'upgrade' else (target, current)
        between = self.ancestors(high) - self.ancestors(low) - {low}
        return sorted(between | {high}, key=lambda rev: len(self.ancestors(rev)))


def parse_history(output: str) -> History:
    history = History()
    for line in output.splitlines():
        match = _HISTORY_LINE.match(line.strip())
        if not match:
            continue
        parents_text = match.group('parents')
        if parents_text == '<base>':
            parents: tuple[str, ...] = ()
        else:
            parents = tuple(p.strip() for p in parents_text.strip('()').split(',') if p.strip())
        rev = match.group('revision')
        history.revisions[rev] = Revision(rev, parents, match.group('message'))
    return history


def is_retryable(stderr: str) -> bool:
    text = stderr.lower()
    return any(marker in text for marker in _RETRYABLE)


def running_lines(output: str) -> list[str]:
    """The "Running upgrade a -> b, message" lines the runbook quotes."""
    return [m.group(0) for m in (_RUNNING_LINE.search(line) for line in output.splitlines()) if m]


def last_error_line(result: t.Any) -> str:
    """The line worth showing from a failed Alembic run: its ``FAILED:`` line (Alembic prints
    those on stdout) or the last exception line of a traceback on stderr."""
    lines = [line.strip() for line in (result.stderr + '\n' + result.stdout).splitlines() if line.strip()]
    # A failed statement is often followed by SQLAlchemy's PendingRollbackError, which hides the cause:
    # the database's own error (psycopg2.errors.QueryCanceled: canceling statement ...) says what happened.
    for line in lines:
        if line.startswith(('psycopg2.errors.', 'psycopg2.OperationalError', 'psycopg.errors.')):
            return line
    for line in reversed(lines):
        if line.startswith('FAILED:') or 'Error' in line.split(':', 1)[0]:
            return line
    return lines[-1] if lines else ''


def session_options(settings: dict[str, t.Any], existing: str = '') -> str:
    """PGOPTIONS carrying our session settings after any options the caller already set (the last wins).

    Values are integers (milliseconds) or plain words; a space or backslash would need libpq's escaping.
    """
    options = []
    for name, value in settings.items():
        text = str(int(value)) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)
        if not re.fullmatch(r'[\w.:-]+', text):
            raise ValueError(f'session setting {name}={text!r} has characters PGOPTIONS cannot carry')
        options.append(f'-c {name}={text}')
    return ' '.join(([existing.strip()] if existing.strip() else []) + options)
