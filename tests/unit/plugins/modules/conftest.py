"""Run a module's ``main()`` in-process against a scripted fake psycopg2 connection."""
from __future__ import annotations

import json
import typing as t

import psycopg2
import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args
from psycopg2 import sql

from ansible_collections.ledgermind.migrations.plugins.module_utils import _connection


class ModuleExit(Exception):
    """exit_json was called."""

    def __init__(self, result: dict[str, t.Any]) -> None:
        super().__init__(result)
        self.result = result


class ModuleFail(ModuleExit):
    """fail_json was called."""


def sql_text(query: t.Any) -> str:
    """Readable text of a str or psycopg2.sql composition, without needing a connection."""
    if isinstance(query, str):
        return query
    if isinstance(query, sql.Composed):
        return ''.join(sql_text(part) for part in query.seq)
    if isinstance(query, sql.SQL):
        return query.string
    if isinstance(query, sql.Identifier):
        return '.'.join(f'"{s}"' for s in query.strings)
    return repr(query)


class PgError(psycopg2.OperationalError):
    """A psycopg2 error carrying a chosen SQLSTATE."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self._code = code

    @property
    def pgcode(self) -> str | None:  # type: ignore[override]
        return self._code


class FakeCursor:
    def __init__(self, conn: FakeConnection) -> None:
        self.conn = conn
        self._rows: list[dict[str, t.Any]] = []

    def __enter__(self) -> FakeCursor:
        return self

    def __exit__(self, *exc: t.Any) -> None:
        return None

    def execute(self, query: t.Any, params: t.Any = None) -> None:
        text = sql_text(query)
        self.conn.executed.append((text, params))
        for needle, answer in self.conn.script:
            if needle in text:
                if isinstance(answer, BaseException):
                    raise answer
                self._rows = [dict(r) for r in (answer(params) if callable(answer) else answer)]
                return
        raise AssertionError(f'unscripted query: {text[:300]}')

    def fetchone(self) -> dict[str, t.Any] | None:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[dict[str, t.Any]]:
        return list(self._rows)


class FakeConnection:
    def __init__(self, script: list[tuple[str, t.Any]]) -> None:
        self.script = [('set_config', [{'set_config': ''}])] + script
        self.executed: list[tuple[str, t.Any]] = []
        self.session: dict[str, t.Any] = {}
        self.closed = False

    def set_session(self, **kwargs: t.Any) -> None:
        self.session = kwargs

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    def rollback(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True

    def ran(self, needle: str) -> list[tuple[str, t.Any]]:
        return [(q, p) for q, p in self.executed if needle in q]


@pytest.fixture
def run_module(monkeypatch: pytest.MonkeyPatch) -> t.Callable[..., tuple[bool, dict[str, t.Any]]]:
    """run_module(main, args, script=None, connect_error=None) -> (failed, result).

    ``script`` is a list of (substring of the SQL, rows or exception or callable(params)).
    """

    def exit_json(self: basic.AnsibleModule, **kwargs: t.Any) -> t.NoReturn:
        raise ModuleExit(_roundtrip(kwargs))

    def fail_json(self: basic.AnsibleModule, msg: str, **kwargs: t.Any) -> t.NoReturn:
        kwargs.pop('exception', None)
        raise ModuleFail(_roundtrip(dict(kwargs, msg=msg, failed=True)))

    monkeypatch.setattr(basic.AnsibleModule, 'exit_json', exit_json)
    monkeypatch.setattr(basic.AnsibleModule, 'fail_json', fail_json)

    def run(main: t.Callable[[], None], args: dict[str, t.Any], script: list[tuple[str, t.Any]] | None = None,
            connect_error: BaseException | None = None) -> tuple[bool, dict[str, t.Any], FakeConnection]:
        conn = FakeConnection(script or [])

        def fake_connect(**kwargs: t.Any) -> FakeConnection:
            conn.session['connect_kwargs'] = kwargs
            if connect_error is not None:
                raise connect_error
            return conn

        monkeypatch.setattr(_connection.psycopg2, 'connect', fake_connect)
        with patch_module_args(args), pytest.raises(ModuleExit) as caught:
            main()
        return isinstance(caught.value, ModuleFail), caught.value.result, conn

    return run


def _roundtrip(result: dict[str, t.Any]) -> dict[str, t.Any]:
    """What the controller would see: JSON-serialisable or the test fails."""
    return json.loads(json.dumps(result))


@pytest.fixture
def pg_error() -> type[PgError]:
    """The PgError class: pg_error('message', 'SQLSTATE')."""
    return PgError
