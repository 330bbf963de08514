"""Drop, recreate and seed a demo database at Alembic revision 20251109_add_user_name_picture.

Called by `scripts/stack reset --rows N [--db NAME]` (and `scripts/stack env DB` with
--print-url). DATABASE_URL names the server and credentials; --db picks another database
on that server (default: the one in the URL). Run with the project venv's python.

Errors (server unreachable, bad credentials, bad name...) print one line and exit 1.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import psycopg2
import psycopg2.errors
from psycopg2 import sql

BACKEND_DIR = Path(__file__).resolve().parent.parent / "examples" / "backend"
BASE_REVISION = "20251109_add_user_name_picture"
MAINTENANCE_DBS = ("postgres", "template1")  # where DROP/CREATE DATABASE run from
PROTECTED_DBS = frozenset({"postgres", "template0", "template1"})
# Conservative on purpose: names still go through sql.Identifier, this only keeps the
# URL and shell snippets (`scripts/stack env DB`) unsurprising.
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_$-]*")
PROG = "reset_demo_db"


class ResetError(Exception):
    """A failure worth one line on stderr, no traceback."""


def one_line(exc: BaseException | None) -> str:
    # libpq messages span lines ("...failed: Connection refused\n\tIs the server running").
    return " ".join(str(exc).split()) or type(exc).__name__ if exc is not None else "unknown error"


def database_url() -> str:
    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        raise ResetError('DATABASE_URL is not set (try: eval "$(scripts/stack env)")')
    parts = urlsplit(url)
    if parts.scheme.split("+", 1)[0] not in ("postgres", "postgresql"):
        raise ResetError(f"DATABASE_URL must be a postgresql:// URL, got scheme '{parts.scheme}'")
    return url


def url_database(url: str) -> str:
    name = unquote(urlsplit(url).path.lstrip("/"))
    if not name:
        raise ResetError("DATABASE_URL names no database; pass --db NAME")
    return name


def with_database(url: str, name: str) -> str:
    """The same URL (scheme, credentials, host, query such as sslmode) with database ``name``."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(name, safe="")))


def libpq_dsn(url: str) -> str:
    # libpq understands postgres:// and postgresql:// but not SQLAlchemy's +driver suffix.
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql"))


def check_name(name: str, *, to_drop: bool = True) -> str:
    if not NAME_RE.fullmatch(name) or len(name.encode()) > 63:
        raise ResetError(
            f"invalid database name '{name}': use letters, digits, _ $ -, start with a letter or _, at most 63 bytes"
        )
    if to_drop and name in PROTECTED_DBS:
        raise ResetError(f"refusing to drop the system database '{name}'")
    return name


def connect_maintenance(url: str) -> psycopg2.extensions.connection:
    last: psycopg2.Error | None = None
    for maintenance in MAINTENANCE_DBS:
        try:
            conn = psycopg2.connect(libpq_dsn(with_database(url, maintenance)), connect_timeout=10)
        except psycopg2.OperationalError as exc:
            last = exc
            # Only a missing/forbidden maintenance database is worth a second try;
            # an unreachable server or bad password fails the same way for template1.
            if f'database "{maintenance}"' not in str(exc):
                break
            continue
        conn.autocommit = True  # DROP/CREATE DATABASE refuse to run in a transaction block
        return conn
    raise ResetError(f"cannot connect to the server: {one_line(last)}")


def drop_database(cur, name: str, tries: int = 5) -> None:
    """Drop database ``name`` on an autocommit cursor, whoever is still connected to it.

    WITH (FORCE) (PostgreSQL 13+) ends sessions still connected, e.g. a previous demo's psql, but refuses, for a
    role without pg_signal_backend, to end an autovacuum worker still cleaning up; a plain DROP DATABASE stops
    autovacuum itself. So FORCE first, then this role's sessions ended and the plain DROP, a few times.
    """
    for attempt in range(1, tries + 1):
        try:
            if attempt == 1:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            else:
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s"
                            " AND pid <> pg_backend_pid() AND usename = current_user", (name,))
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            return
        except (psycopg2.errors.InsufficientPrivilege, psycopg2.errors.ObjectInUse):
            if attempt == tries:
                raise
            time.sleep(1)


def recreate_database(url: str, name: str) -> None:
    conn = connect_maintenance(url)
    try:
        with conn.cursor() as cur:
            drop_database(cur, name)
            # template0 + UTF8: the seed has non-ASCII tokens whatever template1's encoding is.
            cur.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(sql.Identifier(name)))
    except psycopg2.Error as exc:
        raise ResetError(f"cannot recreate database '{name}': {one_line(exc)}") from None
    finally:
        conn.close()


def migrate(url: str) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config(str(BACKEND_DIR / "alembic.ini"))
    cfg.attributes["configure_logger"] = False  # keep alembic's INFO lines out of the summary
    previous = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url  # alembic/env.py reads only this
    try:
        command.upgrade(cfg, BASE_REVISION)
    except Exception as exc:  # alembic raises driver and CommandError alike; report, no traceback
        raise ResetError(f"alembic upgrade {BASE_REVISION} failed: {one_line(exc)}") from None
    finally:
        if previous is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = previous


def seed_rows(url: str, rows: int) -> tuple[int, int, int]:
    from ledgermind_backend.seed import seed

    try:
        summary = seed(url, rows)
    except Exception as exc:  # ValueError from the seed's checks or a driver error
        raise ResetError(f"seeding failed: {one_line(getattr(exc, 'orig', None) or exc)}") from None
    return summary.rows, summary.null_rows, summary.empty_rows


def current_revision(url: str) -> str:
    try:
        conn = psycopg2.connect(libpq_dsn(url), connect_timeout=10)
    except psycopg2.Error as exc:
        raise ResetError(f"cannot connect to '{url_database(url)}': {one_line(exc)}") from None
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT string_agg(version_num, ',') FROM alembic_version")
            (revision,) = cur.fetchone()
    except psycopg2.Error as exc:
        raise ResetError(f"cannot read alembic_version: {one_line(exc)}") from None
    finally:
        conn.close()  # `with conn:` would only end the transaction, not close
    return revision or "(none)"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10000, help="rows to seed into ml_features (default 10000)")
    parser.add_argument("--db", help="database name on the DATABASE_URL server (default: the URL's)")
    parser.add_argument("--print-url", action="store_true", help="only print the URL of --db and exit")
    args = parser.parse_args(argv)
    if args.rows < 0:
        parser.error("--rows must be >= 0")
    return args


def run(args: argparse.Namespace) -> int:
    url = database_url()
    name = args.db if args.db is not None else url_database(url)
    if args.print_url:
        check_name(name, to_drop=False)  # printing a URL is harmless, even for postgres
        print(with_database(url, name))
        return 0
    target = with_database(url, check_name(name))
    sys.path.insert(0, str(BACKEND_DIR))  # ledgermind_backend and its alembic env.py
    recreate_database(url, name)
    migrate(target)
    rows, null_rows, empty_rows = seed_rows(target, args.rows)
    print(f"database: {name}")
    print(f"revision: {current_revision(target)}")
    print(f"rows:     {rows} (NULL tokens: {null_rows}, empty '{{}}': {empty_rows})")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(parse_args(argv))
    except ResetError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
