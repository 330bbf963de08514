# Copyright (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Turn the collection's connection settings into what libpq clients read.

The playbooks describe a database once, as ``ledgermind_db``: either ``url`` (a libpq URI, the
runbook's ``$DATABASE_URL``) or ``host``/``port``/``user``/``password``/``name``, plus
``ssl_mode``/``ca_cert``; explicit keys override the URL's parts. Command-line clients (pg_dump,
pg_restore, psql, Alembic) get them as ``PG*`` environment variables so that no password ever
appears on a command line or in a process listing.
"""

from __future__ import annotations

import typing as t
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from ansible_collections.ledgermind.migrations.plugins.module_utils._redact import redact_url

URL_SCHEMES = ('postgresql', 'postgres')

# libpq connection parameter -> the environment variable libpq reads it from
# (https://www.postgresql.org/docs/current/libpq-envars.html). Parameters missing here (keepalives*,
# tcp_user_timeout, sslpassword, replication, ...) have none, so they cannot reach a client without
# its command line. A libpq older than a parameter ignores its variable: require_auth, sslcertmode,
# gssdelegation and load_balance_hosts need libpq 16, sslnegotiation libpq 17.
PARAM_ENV_NAMES = {
    'host': 'PGHOST',
    'hostaddr': 'PGHOSTADDR',
    'port': 'PGPORT',
    'dbname': 'PGDATABASE',
    'user': 'PGUSER',
    'password': 'PGPASSWORD',
    'passfile': 'PGPASSFILE',
    'require_auth': 'PGREQUIREAUTH',
    'channel_binding': 'PGCHANNELBINDING',
    'service': 'PGSERVICE',
    'options': 'PGOPTIONS',
    'application_name': 'PGAPPNAME',
    'connect_timeout': 'PGCONNECT_TIMEOUT',
    'client_encoding': 'PGCLIENTENCODING',
    'target_session_attrs': 'PGTARGETSESSIONATTRS',
    'load_balance_hosts': 'PGLOADBALANCEHOSTS',
    'sslmode': 'PGSSLMODE',
    'sslnegotiation': 'PGSSLNEGOTIATION',
    'sslcompression': 'PGSSLCOMPRESSION',
    'sslcert': 'PGSSLCERT',
    'sslkey': 'PGSSLKEY',
    'sslcertmode': 'PGSSLCERTMODE',
    'sslrootcert': 'PGSSLROOTCERT',
    'sslcrl': 'PGSSLCRL',
    'sslcrldir': 'PGSSLCRLDIR',
    'sslsni': 'PGSSLSNI',
    'ssl_min_protocol_version': 'PGSSLMINPROTOCOLVERSION',
    'ssl_max_protocol_version': 'PGSSLMAXPROTOCOLVERSION',
    'requirepeer': 'PGREQUIREPEER',
    'gssencmode': 'PGGSSENCMODE',
    'krbsrvname': 'PGKRBSRVNAME',
    'gsslib': 'PGGSSLIB',
    'gssdelegation': 'PGGSSDELEGATION',
}

# libpq URI query parameter -> ledgermind_db key
QUERY_KEYS = {
    'host': 'host',
    'port': 'port',
    'user': 'user',
    'password': 'password',
    'dbname': 'name',
    'sslmode': 'ssl_mode',
    'sslrootcert': 'ca_cert',
}

# ledgermind_db key -> libpq environment variable
ENV_NAMES = {key: PARAM_ENV_NAMES[param] for param, key in QUERY_KEYS.items()}


class LibpqSettingsError(ValueError):
    """The connection settings cannot be understood; the message says how to fix them."""


def parse_url(url: str) -> dict[str, str]:
    """Split a libpq URI into ledgermind_db keys (unknown query parameters are refused)."""
    parts = urlsplit(url)
    if parts.scheme not in URL_SCHEMES:
        raise LibpqSettingsError(
            f'the database URL must start with postgresql:// (got a URL with scheme {parts.scheme!r})'
        )
    settings: dict[str, str] = {}
    if parts.hostname:
        settings['host'] = unquote(parts.hostname)
    try:
        port = parts.port
    except ValueError as exc:
        raise LibpqSettingsError(f'the database URL has an invalid port: {exc}') from None
    if port:
        settings['port'] = str(port)
    if parts.username:
        settings['user'] = unquote(parts.username)
    if parts.password is not None:
        settings['password'] = unquote(parts.password)
    if parts.path.strip('/'):
        settings['name'] = unquote(parts.path.lstrip('/'))
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in QUERY_KEYS:
            raise LibpqSettingsError(
                'the database URL has a parameter {!r} that this collection does not pass on; '
                'use one of {}'.format(key, ', '.join(sorted(QUERY_KEYS)))
            )
        settings[QUERY_KEYS[key]] = value
    return settings


def merge(connection: dict[str, t.Any] | str | None) -> dict[str, str]:
    """The effective settings: the URL's parts, overridden by explicit keys."""
    if connection is None or connection == '':
        return {}
    if isinstance(connection, str):
        connection = {'url': connection}
    if not isinstance(connection, dict):
        raise LibpqSettingsError(f'the connection settings must be a URL or a mapping, got {type(connection).__name__}')
    unknown = set(connection) - set(ENV_NAMES) - {'url'}
    if unknown:
        raise LibpqSettingsError(
            'unknown connection setting(s) {}; use url or {}'.format(', '.join(sorted(unknown)), ', '.join(ENV_NAMES))
        )
    settings = parse_url(connection['url']) if connection.get('url') else {}
    for key in ENV_NAMES:
        value = connection.get(key)
        if value is not None and value != '':
            settings[key] = str(value)
    return settings


def to_env(connection: dict[str, t.Any] | str | None) -> dict[str, str]:
    """``PG*`` environment variables for pg_dump, pg_restore, psql and libpq-based drivers."""
    return {ENV_NAMES[key]: value for key, value in merge(connection).items()}


def params_to_env(params: dict[str, t.Any] | None) -> dict[str, str]:
    """``PG*`` variables for libpq connection parameters (e.g. a module's ``connect_params``).

    A parameter libpq reads from no environment variable is refused by name rather than dropped.
    Booleans become libpq's ``1``/``0``; empty values are left out."""
    params = params or {}
    unknown = sorted(set(params) - set(PARAM_ENV_NAMES))
    if unknown:
        raise LibpqSettingsError(
            'connection parameter(s) {} cannot be passed to the PostgreSQL clients: libpq has no environment '
            'variable for them, and the clients take no connection settings on their command line; '
            'use one of {}'.format(', '.join(unknown), ', '.join(sorted(PARAM_ENV_NAMES)))
        )
    return {
        PARAM_ENV_NAMES[key]: ('1' if value else '0') if isinstance(value, bool) else str(value)
        for key, value in params.items() if value is not None and value != ''
    }


def to_url(connection: dict[str, t.Any] | str | None) -> str:
    """A libpq URI carrying every setting, e.g. for an application's ``DATABASE_URL``."""
    settings = merge(connection)
    userinfo = ''
    if 'user' in settings:
        userinfo = quote(settings['user'], safe='')
        if 'password' in settings:
            userinfo += ':' + quote(settings['password'], safe='')
        userinfo += '@'
    host = settings.get('host', '')
    # A unix-socket directory cannot sit in the authority part; libpq takes it as a parameter.
    query = []
    if host.startswith('/'):
        query.append('host=' + quote(host, safe='/'))
        host = ''
    elif ':' in host:
        host = f'[{host}]'
    port = ':' + settings['port'] if 'port' in settings and host else ''
    if 'port' in settings and not host:
        query.append('port=' + settings['port'])
    for key, param in (('ssl_mode', 'sslmode'), ('ca_cert', 'sslrootcert')):
        if key in settings:
            query.append(param + '=' + quote(settings[key], safe='/'))
    url = 'postgresql://{}{}{}/{}'.format(userinfo, host, port, quote(settings.get('name', ''), safe=''))
    return url + ('?' + '&'.join(query) if query else '')


def redact(url: str) -> str:
    """The URL with its password replaced, safe to print (the collection's one redaction, in _redact)."""
    return redact_url(url)
