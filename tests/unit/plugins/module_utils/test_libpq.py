"""ledgermind_db settings to PG* environment and URLs, and password redaction."""
from __future__ import annotations

import pytest

from ansible_collections.ledgermind.migrations.plugins.module_utils._libpq import (
    LibpqSettingsError,
    redact,
    to_env,
    to_url,
)


@pytest.mark.parametrize(
    ("connection", "env"),
    [
        ("postgresql://u%40x:p%3Aw@db:6543/ledger?sslmode=require",
         {"PGHOST": "db", "PGPORT": "6543", "PGUSER": "u@x", "PGPASSWORD": "p:w", "PGDATABASE": "ledger",
          "PGSSLMODE": "require"}),
        ({"url": "postgresql://u:p@db/ledger", "port": 7000, "password": "override"},
         {"PGHOST": "db", "PGPORT": "7000", "PGUSER": "u", "PGPASSWORD": "override", "PGDATABASE": "ledger"}),
        ({"host": "/var/run/postgresql", "user": "app", "ca_cert": "/ca.pem", "ssl_mode": "verify-full"},
         {"PGHOST": "/var/run/postgresql", "PGUSER": "app", "PGSSLROOTCERT": "/ca.pem", "PGSSLMODE": "verify-full"}),
        ({"url": "", "host": "db"}, {"PGHOST": "db"}),
        (None, {}),
    ],
)
def test_to_env(connection: object, env: dict[str, str]) -> None:
    assert to_env(connection) == env  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("connection", "url"),
    [
        ({"host": "db", "user": "u@x", "password": "p:w/", "name": "ledger", "ssl_mode": "require"},
         "postgresql://u%40x:p%3Aw%2F@db/ledger?sslmode=require"),
        ({"host": "/var/run/postgresql", "port": 5433, "name": "x y"},
         "postgresql:///x%20y?host=/var/run/postgresql&port=5433"),
        ({"host": "::1", "port": 5432, "name": "d"}, "postgresql://[::1]:5432/d"),
    ],
)
def test_to_url(connection: dict[str, object], url: str) -> None:
    assert to_url(connection) == url


def test_url_round_trips_through_env() -> None:
    original = "postgresql://user:s%40cret@db.internal:5432/ledgermind?sslmode=verify-full&sslrootcert=/ca.pem"
    assert to_env(to_url(original)) == to_env(original)


@pytest.mark.parametrize(
    ("connection", "message"),
    [
        ("mysql://u@h/db", "must start with postgresql://"),
        ("postgresql://u@h:notaport/db", "invalid port"),
        ("postgresql://u@h/db?application_name=x", "does not pass on"),
        ({"hostname": "db"}, "unknown connection setting"),
        (42, "must be a URL or a mapping"),
    ],
)
def test_bad_settings_say_what_to_fix(connection: object, message: str) -> None:
    with pytest.raises(LibpqSettingsError, match=message):
        to_env(connection)  # type: ignore[arg-type]


def test_redact_hides_only_the_password() -> None:
    assert redact("postgresql://u:secret@h:5432/db") == "postgresql://u:********@h:5432/db"
    assert redact("postgresql://u@h/db") == "postgresql://u@h/db"
