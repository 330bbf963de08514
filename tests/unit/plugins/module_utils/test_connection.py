"""Pure helpers of plugins/module_utils/_connection.py: no database needed."""
from __future__ import annotations

import psycopg2.extensions
import pytest

from ansible_collections.ledgermind.migrations.plugins.module_utils import _connection as c
from ansible_collections.ledgermind.migrations.plugins.module_utils import _redact


def test_argument_spec_defaults_and_secrets() -> None:
    spec = c.postgres_connection_argument_spec()
    for name in ('database_url', 'login_host', 'login_port', 'login_user', 'login_password', 'login_db',
                 'login_unix_socket', 'ssl_mode', 'ca_cert', 'connect_params'):
        assert spec[name].get('default') is None, name
    assert spec['database_url']['no_log'] is True
    assert spec['login_password']['no_log'] is True
    assert spec['login_port']['type'] == 'int'
    assert spec['connect_params']['type'] == 'dict'
    assert spec['ssl_mode']['choices'] == ['allow', 'disable', 'prefer', 'require', 'verify-ca', 'verify-full']
    assert (spec['connect_timeout']['default'], spec['query_timeout']['default'],
            spec['lock_timeout']['default']) == (10, 300, 5)


@pytest.mark.parametrize(('text', 'redacted'), [
    ('postgresql://u:s3cret@h:5432/db', 'postgresql://u:********@h:5432/db'),
    ('at postgres://u:p%40ss@h/db now', 'at postgres://u:********@h/db now'),
    ('postgresql://u@h/db', 'postgresql://u@h/db'),
    ('postgresql://h:5432/db', 'postgresql://h:5432/db'),
    ("host=h password=s3cret user=u", 'host=h password=******** user=u'),
    ("password='a b' user=u", 'password=******** user=u'),
    ('nothing to see', 'nothing to see'),
])
def test_redact_url(text: str, redacted: str) -> None:
    assert _redact.redact_url(text) == redacted


def test_redact_known_secrets_longest_first() -> None:
    assert _redact.redact('pw=abc and abcdef', ['abc', 'abcdef', None, '']) == 'pw=******** and ********'


@pytest.mark.parametrize(('params', 'expected'), [
    ({}, {'application_name': 'ledgermind.migrations'}),
    ({'database_url': 'postgresql://u:p@h:1/db', 'connect_timeout': 10},
     {'dsn': 'postgresql://u:p@h:1/db', 'connect_timeout': 10, 'application_name': 'ledgermind.migrations'}),
    ({'login_host': 'db', 'login_port': 6432, 'login_user': 'u', 'login_password': 'p', 'login_db': 'd',
      'ssl_mode': 'require', 'ca_cert': '/ca.pem'},
     {'host': 'db', 'port': 6432, 'user': 'u', 'password': 'p', 'dbname': 'd', 'sslmode': 'require',
      'sslrootcert': '/ca.pem', 'application_name': 'ledgermind.migrations'}),
    ({'login_unix_socket': '/run/pg'}, {'host': '/run/pg', 'application_name': 'ledgermind.migrations'}),
    ({'login_unix_socket': '/run/pg', 'login_host': 'localhost'},
     {'host': '/run/pg', 'application_name': 'ledgermind.migrations'}),
    ({'login_unix_socket': '/run/pg', 'login_host': 'db'}, {'host': 'db', 'application_name': 'ledgermind.migrations'}),
    ({'login_host': '', 'connect_params': {'application_name': 'mine', 'options': '-c x=1'}},
     {'application_name': 'mine', 'options': '-c x=1'}),
])
def test_build_connect_kwargs(params: dict, expected: dict) -> None:
    assert c.build_connect_kwargs(params) == expected


def test_login_options_override_database_url() -> None:
    kwargs = c.build_connect_kwargs({'database_url': 'postgresql://u:p@h:1/db', 'login_db': 'other',
                                     'login_port': 2})
    dsn = kwargs.pop('dsn')
    merged = psycopg2.extensions.parse_dsn(psycopg2.extensions.make_dsn(dsn, **kwargs))
    assert (merged['host'], merged['port'], merged['dbname'], merged['user'], merged['password']) == \
        ('h', '2', 'other', 'u', 'p')


@pytest.mark.parametrize(('conninfo', 'shown'), [
    ({'user': 'u', 'host': 'h', 'port': '1', 'dbname': 'd', 'password': 'secret'}, 'u@h:1/d'),
    ({}, '(default user)@(default socket):5432/(default database)'),
])
def test_describe_target(conninfo: dict, shown: str) -> None:
    assert c.describe_target(conninfo) == shown


def test_target_of_never_shows_password() -> None:
    target = c.target_of({'database_url': 'postgresql://u:topsecret@h:1/db', 'connect_timeout': 10})
    assert target == 'u@h:1/db'


@pytest.mark.parametrize(('error', 'starts'), [
    ('connection to server at "h", port 1 failed: FATAL:  password authentication failed for user "u"',
     'Cannot log in to PostgreSQL as T: authentication failed'),
    ('fe_sendauth: no password supplied', 'Cannot log in'),
    ('FATAL:  role "ghost" does not exist', 'Cannot log in'),
    ('connection to server at "h", port 55432 failed: FATAL:  database "nodb" does not exist',
     'The database in T does not exist'),
    ('connection to server at "10.0.0.1", port 5432 failed: timeout expired', 'Timed out connecting'),
    ('connection to server at "127.0.0.1", port 1 failed: Connection refused\n\tIs the server running',
     'Cannot reach PostgreSQL at T'),
    ('could not translate host name "nope" to address: Name or service not known', 'Cannot reach'),
    ('invalid dsn: missing "=" after "garbage" in connection info string', 'The connection parameters are invalid'),
    ('SSL error: certificate verify failed', 'SSL negotiation'),
    ('something else', 'Cannot connect to PostgreSQL at T: something else'),
])
def test_connection_error_message(error: str, starts: str) -> None:
    msg = c.connection_error_message(error, 'T')
    assert msg.startswith(starts)
    assert '\n' not in msg and '\t' not in msg


@pytest.mark.parametrize(('code', 'starts'), [
    ('55P03', 'public.ml_features is locked by another session: pid 7 (x)'),
    ('57014', 'The query on public.ml_features was cancelled after query_timeout=300s'),
    ('42501', 'Permission denied while inspecting public.ml_features'),
    ('25006', 'This module only reads'),
    ('XX000', 'PostgreSQL error while inspecting public.ml_features: boom'),
    (None, 'PostgreSQL error while inspecting public.ml_features: boom'),
])
def test_query_error_message(code: str | None, starts: str) -> None:
    msg = c.query_error_message(code, 'boom', 5, 300, 'public.ml_features', ['pid 7 (x)'])
    assert msg.startswith(starts)


def test_lock_message_without_known_holder_says_where_to_look() -> None:
    msg = c.query_error_message('55P03', 'canceling statement due to lock timeout', 5, 300, 'public.t')
    assert 'pg_stat_activity' in msg and 'lock_timeout=5s' in msg


@pytest.mark.parametrize(('value', 'duration'), [(300, '300s'), (5, '5s'), (0, '0'), (None, '0')])
def test_seconds(value: int | None, duration: str) -> None:
    assert c._seconds(value) == duration
