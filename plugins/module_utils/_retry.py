# Copyright (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one home of the collection's retry back-off (lock budgets, HTTP probes) and of the lock-budget runner.

A lock budget: each try waits at most ``lock_timeout`` for its lock (so no query queues behind it for longer),
then gives way, backs off and tries again, a bounded number of times; on giving up it names the sessions that
held the lock.
"""

from __future__ import annotations

import time
import typing as t

T = t.TypeVar('T')

# lock_not_available (lock_timeout), deadlock_detected: another try can succeed once the other session is gone.
RETRYABLE_SQLSTATES = ('55P03', '40P01')


def backoff_delays(retries: int, first: float, maximum: float) -> list[float]:
    """Waits between tries: doubling from ``first``, capped at ``maximum``; one fewer than the tries."""
    return [min(first * (2**attempt), maximum) for attempt in range(max(retries - 1, 0))]


class LockBusy(Exception):
    """A try that must give way and be tried again: its lock was not granted in time, or what it checked before
    taking the lock changed while it waited (the message says which)."""


def lock_busy(error: BaseException) -> bool:
    """Whether another try can succeed: a LockBusy, or a database error of lock_timeout or a broken deadlock."""
    return isinstance(error, LockBusy) or getattr(error, 'pgcode', None) in RETRYABLE_SQLSTATES


def lock_budget_message(relation: str, doing: str, tries: int, lock_timeout_ms: int, holders: list[str]) -> str:
    """Why the lock budget gave up, naming the sessions that held the lock and what to do."""
    return ('{} stayed locked by another session while {} it: {}. {} tries, each waiting at most {} ms so that no '
            'query queues behind it for longer, all gave up. Nothing was changed by the failed step; retry once that '
            'session finishes (a re-run continues where this one stopped), or raise the retries.'.format(
                relation, doing, '; '.join(holders) or 'see pg_stat_activity where wait_event_type = Lock', tries,
                lock_timeout_ms))


def run_under_lock_budget(attempt: t.Callable[[int], T], tries: int, first_delay: float, max_delay: float,
                          give_up: t.Callable[[BaseException, int], T],
                          sleep: t.Callable[[float], t.Any] = time.sleep) -> T:
    """``attempt(number)`` (1-based) until it returns. A try that could not get its lock (see ``lock_busy``)
    backs off (``backoff_delays``) and tries again, ``tries`` times in all; then ``give_up(error, tries)`` with the
    last try's error: it fails the module naming the blockers, or returns what stands for the budget's result (the
    restore's last try, whose failure its verdict explains). Any other error goes through unchanged."""
    delays = backoff_delays(tries, first_delay, max_delay)
    for number in range(1, tries + 1):
        try:
            return attempt(number)
        except Exception as error:  # noqa: BLE001 - only lock waits are retried; everything else is re-raised
            if not lock_busy(error):
                raise
            if number >= tries:
                return give_up(error, number)
            sleep(delays[number - 1])
    raise AssertionError('unreachable: the last try gives up')
