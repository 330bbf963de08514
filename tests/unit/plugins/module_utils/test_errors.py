"""The one error helper (module_utils/_errors.py) and the connection's use of it."""
from __future__ import annotations

import typing as t

import pytest

from ansible_collections.ledgermind.migrations.plugins.module_utils import _connection, _errors


class Failed(Exception):
    pass


class Module:
    def __init__(self, params: dict[str, t.Any] | None = None) -> None:
        self.params = params or {}
        self.failed: dict[str, t.Any] = {}

    def fail_json(self, **kwargs: t.Any) -> t.NoReturn:
        self.failed = kwargs
        raise Failed()


def test_fail_hides_passwords_in_the_message_and_string_results() -> None:
    module = Module()
    with pytest.raises(Failed):
        _errors.fail(module, 'cannot reach postgresql://u:s3cret@h/db (token abc)', secrets=['abc'],
                     url='https://u:pw@host/x', count=3)
    assert module.failed == dict(msg='cannot reach postgresql://u:********@h/db (token ********)',
                                 url='https://u:********@host/x', count=3, changed=False)


def test_fail_keeps_a_change_the_caller_read() -> None:
    module = Module()
    with pytest.raises(Failed):
        _errors.fail(module, 'half-applied', changed=True)
    assert module.failed['changed'] is True


def test_the_connection_hides_its_password_however_given() -> None:
    module = Module(dict(login_password='p@ss word', database_url=None, connect_params=None))
    with pytest.raises(Failed):
        _connection.fail(module, 'said p@ss word, then p%40ss%20word')
    assert module.failed['msg'] == 'said ********, then ********'


@pytest.mark.parametrize(('params', 'setting', 'budget'), [
    (dict(lock_timeout=5), '5s', 5),
    (dict(lock_timeout=0), '0', 0),
    (dict(lock_timeout_ms=1500), '1500ms', 'lock_timeout_ms=1500'),  # alembic_migrate: one budget, in ms
    (dict(lock_timeout=2, lock_timeout_ms=1500), '2s', 2),
])
def test_the_module_lock_budget(params: dict[str, t.Any], setting: str, budget: t.Any) -> None:
    assert _connection.lock_timeout_setting(params) == setting
    assert _connection.lock_budget(params) == budget
