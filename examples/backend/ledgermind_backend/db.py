"""Database URL handling shared by Alembic's env.py, the seed CLI and the demo scripts."""

from __future__ import annotations

import os

from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import NullPool


class DatabaseUrlMissing(RuntimeError):
    """DATABASE_URL is not set (or empty)."""


def normalize_database_url(url: str) -> str:
    """Return ``url`` in a form SQLAlchemy 2.1 connects with, using psycopg2.

    * Heroku-style ``postgres://`` is not a SQLAlchemy dialect name; ``postgresql`` is.
    * A bare ``postgresql://`` means psycopg (3) since SQLAlchemy 2.1, but this project
      ships psycopg2 (requirements.txt), so pick it explicitly. An explicit
      ``postgresql+driver://`` is left alone.
    """
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    return url


def database_url_from_env(environ: dict[str, str] | None = None) -> str:
    """Read DATABASE_URL, raising :class:`DatabaseUrlMissing` with a usable hint if unset."""
    env = os.environ if environ is None else environ
    url = env.get("DATABASE_URL", "").strip()
    if not url:
        raise DatabaseUrlMissing(
            "DATABASE_URL is not set; export it, e.g. 'eval \"$(scripts/stack env)\"' for the local stack"
        )
    return normalize_database_url(url)


def make_engine(url: str) -> Engine:
    # NullPool: migrations and seeding are one-shot jobs; a pool would only keep idle
    # sessions around that CREATE INDEX CONCURRENTLY or DROP DATABASE then wait on.
    return create_engine(normalize_database_url(url), poolclass=NullPool)
