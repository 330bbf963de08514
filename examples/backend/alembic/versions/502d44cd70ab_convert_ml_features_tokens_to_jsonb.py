"""convert_ml_features_tokens_to_jsonb

Convert ``ml_features.tokens`` from PostgreSQL ``text[]`` to ``jsonb`` (the model maps it as
JSON on SQLite and JSONB on PostgreSQL) and add the GIN index ``ix_ml_features_tokens_gin``
(``jsonb_ops``) for ``?`` and ``@>`` queries.

Safe to re-run after a partial failure, because every step first looks at the catalog:

* the type change runs only while the column is still ``text[]``; it commits on its own
  before the index build, so a failed build leaves a jsonb column and no version bump;
* ``CREATE INDEX CONCURRENTLY`` cannot run in a transaction and, when it fails or is
  cancelled, leaves an INVALID index behind; that one is dropped concurrently and rebuilt;
  a valid index is kept as it is.

Downgrade drops the index and converts back to exactly the original ``text[]``: order kept,
NULL stays NULL, ``[]`` becomes ``'{}'``, JSON null elements become NULL elements.

Revision ID: 502d44cd70ab
Revises: 20251109_add_user_name_picture
Create Date: 2025-11-12 09:30:00

"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import sqlalchemy as sa
from alembic import op
from alembic.util import CommandError

# revision identifiers, used by Alembic.
revision: str = "502d44cd70ab"
down_revision: str | Sequence[str] | None = "20251109_add_user_name_picture"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "ml_features"
COLUMN = "tokens"
INDEX = "ix_ml_features_tokens_gin"
# PostgreSQL rejects subqueries in ALTER ... USING ("cannot use subquery in transform
# expression"), so the jsonb -> text[] conversion lives in a session-local SQL function.
# STRICT: a NULL column value stays NULL without running the body.
TO_TEXT_ARRAY = "pg_temp.ml_features_tokens_to_text_array"
CREATE_TO_TEXT_ARRAY = f"""
CREATE OR REPLACE FUNCTION {TO_TEXT_ARRAY}(jsonb) RETURNS text[]
LANGUAGE sql STRICT IMMUTABLE AS $$
    SELECT coalesce(array_agg(e ORDER BY i), '{{}}')
    FROM jsonb_array_elements_text($1) WITH ORDINALITY AS t(e, i)
$$
"""


class IndexState(NamedTuple):
    valid: bool
    table: str
    method: str
    columns: str
    opclasses: str


def _require_postgresql() -> None:
    dialect = op.get_context().dialect.name
    if dialect != "postgresql":
        raise CommandError(
            f"revision {revision} converts a PostgreSQL text[] column and only runs on PostgreSQL, not {dialect}"
        )


def _tokens_type(conn: sa.Connection) -> str:
    """The column's type as PostgreSQL spells it: 'text[]', 'jsonb', ..."""
    found = conn.execute(
        sa.text(
            "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
            " WHERE a.attrelid = to_regclass(:table) AND a.attname = :column"
            " AND a.attnum > 0 AND NOT a.attisdropped"
        ),
        {"table": TABLE, "column": COLUMN},
    ).scalar_one_or_none()
    if found is None:
        raise CommandError(f"column {TABLE}.{COLUMN} not found (is search_path right?)")
    return str(found)


def _index_state(conn: sa.Connection) -> IndexState | None:
    row = conn.execute(
        sa.text(
            "SELECT i.indisvalid, t.relname, am.amname,"
            "  (SELECT string_agg(a.attname, ',' ORDER BY k.n)"
            "     FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)"
            "     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum),"
            "  (SELECT string_agg(oc.opcname, ',' ORDER BY k.n)"
            "     FROM unnest(i.indclass) WITH ORDINALITY AS k(opc, n)"
            "     JOIN pg_opclass oc ON oc.oid = k.opc)"
            " FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid"
            " JOIN pg_class t ON t.oid = i.indrelid"
            " JOIN pg_am am ON am.oid = c.relam"
            " WHERE i.indexrelid = to_regclass(:index)"
        ),
        {"index": INDEX},
    ).one_or_none()
    return None if row is None else IndexState(*row)


def upgrade() -> None:
    _require_postgresql()
    context = op.get_context()
    if context.as_sql:
        # `alembic upgrade --sql` cannot look at the catalog: show the fresh-run statements.
        op.execute(f"ALTER TABLE {TABLE} ALTER COLUMN {COLUMN} TYPE jsonb USING to_jsonb({COLUMN})")
        with context.autocommit_block():
            op.execute(f"CREATE INDEX CONCURRENTLY {INDEX} ON {TABLE} USING gin ({COLUMN} jsonb_ops)")
        return

    current = _tokens_type(op.get_bind())
    if current == "text[]":
        # Rewrites the table under ACCESS EXCLUSIVE; to_jsonb keeps order and NULL elements.
        op.execute(f"ALTER TABLE {TABLE} ALTER COLUMN {COLUMN} TYPE jsonb USING to_jsonb({COLUMN})")
    elif current != "jsonb":
        raise CommandError(f"{TABLE}.{COLUMN} is {current}; expected text[] or jsonb")

    # Commits the type change, then runs outside any transaction (CONCURRENTLY requires it).
    with context.autocommit_block():
        conn = op.get_bind()
        state = _index_state(conn)
        if state is not None and not state.valid:
            # Left behind by a failed or cancelled CREATE INDEX CONCURRENTLY: it is maintained
            # on writes but never used, and IF NOT EXISTS would keep it forever.
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")
            state = None
        if state is None:
            op.execute(f"CREATE INDEX CONCURRENTLY {INDEX} ON {TABLE} USING gin ({COLUMN} jsonb_ops)")
        elif (state.table, state.method, state.columns, state.opclasses) != (
            TABLE,
            "gin",
            COLUMN,
            "jsonb_ops",
        ):
            raise CommandError(
                f"index {INDEX} already exists but is {state.method} ({state.columns} "
                f"{state.opclasses}) on {state.table}; expected gin ({COLUMN} jsonb_ops) on "
                f"{TABLE}. Drop or rename it, then upgrade again."
            )


def _unconvertible_rows(conn: sa.Connection) -> int:
    # text[] holds flat lists of strings and NULLs; anything else written since the upgrade
    # (objects, numbers, nested arrays) would be lost or mangled by the conversion.
    return conn.execute(
        sa.text(
            f"SELECT count(*) FROM {TABLE} WHERE {COLUMN} IS NOT NULL AND ("
            f" jsonb_typeof({COLUMN}) <> 'array' OR EXISTS ("
            f"  SELECT 1 FROM jsonb_array_elements({COLUMN}) AS e(v)"
            "   WHERE jsonb_typeof(e.v) NOT IN ('string', 'null')))"
        )
    ).scalar_one()


def downgrade() -> None:
    _require_postgresql()
    context = op.get_context()
    # Same transaction as the type change: a failed downgrade leaves the index in place.
    op.execute(f"DROP INDEX IF EXISTS {INDEX}")
    if context.as_sql:
        op.execute(CREATE_TO_TEXT_ARRAY)
        op.execute(f"ALTER TABLE {TABLE} ALTER COLUMN {COLUMN} TYPE text[] USING {TO_TEXT_ARRAY}({COLUMN})")
        op.execute(f"DROP FUNCTION {TO_TEXT_ARRAY}(jsonb)")
        return

    conn = op.get_bind()
    current = _tokens_type(conn)
    if current == "text[]":
        return
    if current != "jsonb":
        raise CommandError(f"{TABLE}.{COLUMN} is {current}; expected jsonb or text[]")
    bad = _unconvertible_rows(conn)
    if bad:
        raise CommandError(
            f"{bad} row(s) of {TABLE}.{COLUMN} are not flat arrays of strings/nulls and "
            "cannot become text[] without loss; fix them first"
        )
    op.execute(CREATE_TO_TEXT_ARRAY)
    op.execute(f"ALTER TABLE {TABLE} ALTER COLUMN {COLUMN} TYPE text[] USING {TO_TEXT_ARRAY}({COLUMN})")
    op.execute(f"DROP FUNCTION {TO_TEXT_ARRAY}(jsonb)")
