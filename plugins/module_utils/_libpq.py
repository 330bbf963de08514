# Copyright: (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn the collection's connection settings into what libpq clients read.

The playbooks describe a database once, as ``ledgermind_db``: either ``url`` (a libpq URI, the
runbook's ``$DATABASE_URL``) or ``host``/``port``/``user``/``password``/``name``, plus
``ssl_mode``/``ca_cert``; explicit keys override the URL's parts. Command-line clients (pg_dump,
pg_restore, psql, Alembic) get them as ``PG*`` environment variables so that no password ever
appears on a command line or in a process listing.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

URL_SCHEMES = ("postgresql", "postgres")

# ledgermind_db key -> libpq environment variable
ENV_NAMES = {
    "host": "PGHOST",
    "port": "PGPORT",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "name": "PGDATABASE",
    "ssl_mode": "PGSSLMODE",
    "ca_cert": "PGSSLROOTCERT",
}

# libpq URI query parameter -> ledgermind_db key
QUERY_KEYS = {
    "host": "host",
    "port": "port",
    "user": "user",
    "password": "password",
    "dbname": "name",
    "sslmode": "ssl_mode",
    "sslrootcert": "ca_cert",
}


class LibpqSettingsError(ValueError):
    """The connection settings cannot be understood; the message says how to fix them."""


def parse_url(url: str) -> dict[str, str]:
    """Split a libpq URI into ledgermind_db keys (unknown query parameters are refused)."""
    parts = urlsplit(url)
    if parts.scheme not in URL_SCHEMES:
        raise LibpqSettingsError(
            f"the database URL must start with postgresql:// (got a URL with scheme {parts.scheme!r})"
        )
    settings: dict[str, str] = {}
    if parts.hostname:
        settings["host"] = unquote(parts.hostname)
    try:
        port = parts.port
    except ValueError as exc:
        raise LibpqSettingsError(f"the database URL has an invalid port: {exc}") from None
    if port:
        settings["port"] = str(port)
    if parts.username:
        settings["user"] = unquote(parts.username)
    if parts.password is not None:
        settings["password"] = unquote(parts.password)
    if parts.path.strip("/"):
        settings["name"] = unquote(parts.path.lstrip("/"))
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in QUERY_KEYS:
            raise LibpqSettingsError(
                "the database URL has a parameter {!r} that this collection does not pass on; "
                "use one of {}".format(key, ", ".join(sorted(QUERY_KEYS)))
            )
        settings[QUERY_KEYS[key]] = value
    return settings


def merge(connection: dict[str, Any] | str | None) -> dict[str, str]:
    """The effective settings: the URL's parts, overridden by explicit keys."""
    if connection is None or connection == "":
        return {}
    if isinstance(connection, str):
        connection = {"url": connection}
    if not isinstance(connection, dict):
        raise LibpqSettingsError(f"the connection settings must be a URL or a mapping, got {type(connection).__name__}")
    unknown = set(connection) - set(ENV_NAMES) - {"url"}
    if unknown:
        raise LibpqSettingsError(
            "unknown connection setting(s) {}; use url or {}".format(", ".join(sorted(unknown)), ", ".join(ENV_NAMES))
        )
    settings = parse_url(connection["url"]) if connection.get("url") else {}
    for key in ENV_NAMES:
        value = connection.get(key)
        if value is not None and value != "":
            settings[key] = str(value)
    return settings


def to_env(connection: dict[str, Any] | str | None) -> dict[str, str]:
    """``PG*`` environment variables for pg_dump, pg_restore, psql and libpq-based drivers."""
    return {ENV_NAMES[key]: value for key, value in merge(connection).items()}


def to_url(connection: dict[str, Any] | str | None) -> str:
    """A libpq URI carrying every setting, e.g. for an application's ``DATABASE_URL``."""
    settings = merge(connection)
    userinfo = ""
    if "user" in settings:
        userinfo = quote(settings["user"], safe="")
        if "password" in settings:
            userinfo += ":" + quote(settings["password"], safe="")
        userinfo += "@"
    host = settings.get("host", "")
    # A unix-socket directory cannot sit in the authority part; libpq takes it as a parameter.
    query = []
    if host.startswith("/"):
        query.append("host=" + quote(host, safe="/"))
        host = ""
    elif ":" in host:
        host = f"[{host}]"
    port = ":" + settings["port"] if "port" in settings and host else ""
    if "port" in settings and not host:
        query.append("port=" + settings["port"])
    for key, param in (("ssl_mode", "sslmode"), ("ca_cert", "sslrootcert")):
        if key in settings:
            query.append(param + "=" + quote(settings[key], safe="/"))
    url = "postgresql://{}{}{}/{}".format(userinfo, host, port, quote(settings.get("name", ""), safe=""))
    return url + ("?" + "&".join(query) if query else "")


def redact(url: str) -> str:
    """The URL with its password replaced, safe to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":********@", 1)
    return parts._replace(netloc=netloc).geturl()
