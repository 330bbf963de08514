"""pg_write_log's decisions as tables: what state=present and state=absent do from what the database holds."""
from __future__ import annotations

import typing as t

import pytest

from ansible_collections.ledgermind.migrations.plugins.module_utils import _queries as q
from ansible_collections.ledgermind.migrations.plugins.modules import pg_write_log as m

HS = 'ledgermind_migrations'
FUNCTION = q.write_log_function_name('public', 'ml_features')
WANTED = dict(history_schema=HS, function=FUNCTION, body='BODY', run_id='run-1', column='tokens')


def trigger(run_id: str = 'run-1', column: str = 'tokens', **changes: t.Any) -> dict[str, t.Any]:
    row = dict(name=q.WRITE_LOG_TRIGGER, args=f'{run_id}\x00{column}\x00'.encode(), tgtype=q.WRITE_LOG_TGTYPE,
               enabled='O', has_when=True, function_schema=HS, function_name=FUNCTION)
    row.update(changes)
    return row


def found(schema: bool = True, log: bool = True, function: dict[str, t.Any] | None = None,
          trig: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
    return dict(schema_exists=schema, log_exists=log, log_columns=m.expected_log_columns(), function=function,
                trigger=trig)


GOOD_FUNCTION = dict(body='BODY', security_definer=True, triggers=1)


@pytest.mark.parametrize(('state', 'actions'), [
    (found(schema=False, log=False), ['create_schema', 'create_table', 'create_function', 'create_trigger']),
    (found(function=GOOD_FUNCTION, trig=trigger()), []),
    (found(log=False, function=GOOD_FUNCTION, trig=trigger()), ['create_table']),
    (found(function=dict(GOOD_FUNCTION, body='OLD BODY'), trig=trigger()), ['replace_function']),
    (found(function=dict(GOOD_FUNCTION, security_definer=False), trig=trigger()), ['replace_function']),
    (found(function=GOOD_FUNCTION), ['create_trigger']),
    (found(function=GOOD_FUNCTION, trig=trigger(column='other')), ['replace_trigger']),
    (found(function=GOOD_FUNCTION, trig=trigger(enabled='D')), ['replace_trigger']),
    (found(function=GOOD_FUNCTION, trig=trigger(tgtype=q.WRITE_LOG_TGTYPE | 2)), ['replace_trigger']),  # BEFORE
    (found(function=GOOD_FUNCTION, trig=trigger(has_when=False)), ['replace_trigger']),
    (found(function=GOOD_FUNCTION, trig=trigger(function_name='elsewhere')), ['replace_trigger']),
])
def test_present_actions(state: dict[str, t.Any], actions: list[str]) -> None:
    assert m.present_actions(state, WANTED) == actions


@pytest.mark.parametrize(('state', 'rows', 'actions'), [
    # The function always stays: a restore of an archive dumped with the trigger needs it.
    (found(function=GOOD_FUNCTION, trig=trigger()), 12, ['drop_trigger', 'delete_entries']),
    (found(function=GOOD_FUNCTION, trig=trigger()), 0, ['drop_trigger']),
    (found(), 0, []),
    (found(function=dict(GOOD_FUNCTION, triggers=0)), 3, ['delete_entries']),
])
def test_absent_actions(state: dict[str, t.Any], rows: int, actions: list[str]) -> None:
    assert m.absent_actions(state, 'run-1', rows) == actions


@pytest.mark.parametrize(('other_active', 'actions'), [
    # A running run's trigger stays; this run's entries go.
    (True, ['delete_entries']),
    # A finished run's trigger (restored with its table from a backup) goes with the run that found it.
    (False, ['drop_trigger', 'delete_entries']),
])
def test_absent_leaves_only_a_running_runs_trigger(other_active: bool, actions: list[str]) -> None:
    state = found(function=GOOD_FUNCTION, trig=trigger(run_id='run-0'))
    assert m.absent_actions(state, 'run-1', 5, other_active) == actions


@pytest.mark.parametrize(('trig', 'other'), [(None, None), (trigger(), None), (trigger(run_id='run-0'), 'run-0')])
def test_other_run(trig: dict[str, t.Any] | None, other: str | None) -> None:
    assert m.other_run(found(trig=trig), 'run-1') == other


def test_describe() -> None:
    names = dict(history_schema=HS, write_log=f'{HS}.write_log', function=f'{HS}.{FUNCTION}',
                 trigger=q.WRITE_LOG_TRIGGER, table='public.ml_features', run_id='run-1')
    assert m.describe('create_trigger', names) == 'create trigger ledgermind_write_log on public.ml_features'
    assert m.describe('delete_entries', names, 7) == \
        'delete 7 entries of run run-1 from ledgermind_migrations.write_log'
    assert m.expected_log_columns()[-2:] == ['xid xid8', 'logged_at timestamp with time zone']
