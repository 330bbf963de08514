"""Alembic environment of the stand-in backend: the database comes from DATABASE_URL only."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from alembic.util import CommandError

from ledgermind_backend.db import DatabaseUrlMissing, database_url_from_env, make_engine
from ledgermind_backend.models import Base

config = context.config

# Callers embedding alembic (scripts/reset_demo_db.py, tests) set configure_logger=False
# to keep their own logging; the CLI gets the ini's logging, i.e. the runbook's INFO lines.
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    # disable_existing_loggers=False: do not silence loggers of an embedding program.
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _database_url() -> str:
    try:
        return database_url_from_env()
    except DatabaseUrlMissing as exc:
        # CommandError: the alembic CLI prints "FAILED: <message>" and exits 1, no traceback.
        raise CommandError(str(exc)) from None


def run_migrations_offline() -> None:
    """`alembic upgrade --sql`: emit the SQL instead of running it (a dry run to review)."""
    context.configure(
        url=_database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(_database_url())
    try:
        with engine.connect() as connection:
            # One transaction per revision: 502d44cd70ab commits its type change before
            # building the index CONCURRENTLY, which must not drag earlier revisions along.
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                transaction_per_migration=True,
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
