"""The lock-budget runner every DDL of the online conversion and the write log and every restore try go through."""
from __future__ import annotations

import typing as t

import pytest

from ansible_collections.ledgermind.migrations.plugins.module_utils._retry import (
    LockBusy,
    backoff_delays,
    lock_budget_message,
    lock_busy,
    run_under_lock_budget,
)


class LockTimeout(Exception):
    pgcode = '55P03'


class Deadlock(Exception):
    pgcode = '40P01'


class Syntax(Exception):
    pgcode = '42601'


class GaveUp(Exception):
    pass


def runner(outcomes: list[t.Any], tries: int) -> tuple[t.Any, list[int], list[float], list[tuple[t.Any, int]]]:
    """Runs the budget over ``outcomes`` (an exception to raise or a value to return, one per try)."""
    calls: list[int] = []
    slept: list[float] = []
    given_up: list[tuple[t.Any, int]] = []

    def attempt(number: int) -> t.Any:
        calls.append(number)
        outcome = outcomes[number - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def give_up(error: BaseException, count: int) -> t.NoReturn:
        given_up.append((error, count))
        raise GaveUp()

    try:
        value = run_under_lock_budget(attempt, tries, 0.5, 3.0, give_up, sleep=slept.append)
    except GaveUp:
        value = 'gave up'
    return value, calls, slept, given_up


def test_gives_up_after_the_tries_with_back_off_between_them() -> None:
    busy = [LockTimeout() for _ in range(20)]
    value, calls, slept, given_up = runner(busy, 20)
    assert value == 'gave up' and calls == list(range(1, 21))
    assert slept == backoff_delays(20, 0.5, 3.0) and slept[:4] == [0.5, 1.0, 2.0, 3.0] and len(slept) == 19
    assert given_up == [(busy[-1], 20)]


def test_a_later_try_that_gets_its_lock_returns() -> None:
    value, calls, slept, given_up = runner([LockTimeout(), Deadlock(), LockBusy('changed'), 'swapped'], 5)
    assert value == 'swapped' and calls == [1, 2, 3, 4] and slept == [0.5, 1.0, 2.0] and given_up == []


def test_other_errors_are_not_retried() -> None:
    with pytest.raises(Syntax):
        runner([Syntax(), 'never'], 5)


def test_one_try() -> None:
    value, calls, slept, given_up = runner([LockTimeout()], 1)
    assert value == 'gave up' and calls == [1] and slept == [] and given_up[0][1] == 1


def test_a_give_up_that_returns_makes_the_budgets_result() -> None:
    """pg_backup_restore's: the last try's failure is returned for its verdict to explain, not raised."""
    busy = [LockTimeout(), LockTimeout(), LockTimeout()]
    slept: list[float] = []

    def attempt(number: int) -> t.Any:
        raise busy[number - 1]

    value = run_under_lock_budget(attempt, 3, 0.5, 3.0, lambda error, count: ('last', error, count),
                                  sleep=slept.append)
    assert value == ('last', busy[-1], 3) and slept == [0.5, 1.0]


def test_what_counts_as_a_busy_lock() -> None:
    assert lock_busy(LockTimeout()) and lock_busy(Deadlock()) and lock_busy(LockBusy('x'))
    assert not lock_busy(Syntax()) and not lock_busy(ValueError())


def test_the_message_names_the_blockers_and_the_budget() -> None:
    message = lock_budget_message('public.ml_features', 'swapping the column of', 20, 500,
                                  ['pid 42 (app, RowShareLock, idle in transaction): SELECT 1 FOR UPDATE'])
    assert message.startswith('public.ml_features stayed locked by another session while swapping the column of it: '
                              'pid 42 (app, RowShareLock')
    assert '20 tries, each waiting at most 500 ms' in message and 'Nothing was changed' in message
    assert 'pg_stat_activity' in lock_budget_message('t', 'x', 1, 1, [])
