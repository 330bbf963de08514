"""The PostgreSQL server the integration tests use, shared by every suite under tests/integration.

``DATABASE_URL`` when set (``make test`` sets it from ``scripts/stack env``), else the local stack's URL.
An unreachable server fails the tests that need it with the fix; it never skips them.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg2
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import reset_demo_db  # noqa: E402  (the one way the project drops a test database)


def server_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        out = subprocess.run([REPO / "scripts" / "stack", "env"], capture_output=True, text=True, check=True).stdout
        url = out.strip().removeprefix("export DATABASE_URL=").strip("\"'")
    return url


def reachable_server_url() -> str:
    """server_url(), after checking that the server answers (through its maintenance database, so a
    database a suite creates itself need not exist yet)."""
    url = server_url()
    try:
        psycopg2.connect(with_db(url, "postgres"), connect_timeout=5).close()
    except psycopg2.Error as exc:
        pytest.fail(f"PostgreSQL does not answer at DATABASE_URL (start the local stack: scripts/stack up): "
                    f"{' '.join(str(exc).split())}", pytrace=False)
    return url


def with_db(url: str, name: str, user: str | None = None, password: str | None = None) -> str:
    """``url`` pointing at database ``name``, optionally as another user or with another password."""
    parts = urlsplit(url)
    if user is None and password is None:
        return urlunsplit(parts._replace(path="/" + name))
    userinfo, _sep, hostport = parts.netloc.rpartition("@")
    old_user, _sep, old_password = userinfo.partition(":")
    user = old_user if user is None else quote(user, safe="")
    password = old_password if password is None else quote(password, safe="")
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{hostport}", path="/" + name))


def query(url: str, statement: str, params: Any = None, application_name: str = "lm_test_probe") -> list[tuple]:
    """One statement on its own autocommit connection: an idle-in-transaction probe would hold a snapshot
    that CREATE INDEX CONCURRENTLY waits for."""
    conn = psycopg2.connect(url, connect_timeout=10, application_name=application_name)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def scalar(url: str, statement: str, params: Any = None, application_name: str = "lm_test_probe") -> Any:
    rows = query(url, statement, params, application_name)
    return rows[0][0] if rows else None


def drop_database(admin_url: str, name: str) -> None:
    """Drop database ``name`` from the server's maintenance database, as scripts/reset_demo_db.py does."""
    conn = psycopg2.connect(with_db(admin_url, "postgres"), connect_timeout=10)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            reset_demo_db.drop_database(cur, name)
    finally:
        conn.close()
