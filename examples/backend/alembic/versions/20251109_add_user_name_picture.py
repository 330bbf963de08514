"""add_user_name_picture

Baseline of the stand-in backend as production has it before the tokens migration:
``users`` (with the name and picture columns this revision is named after) and
``ml_features`` whose ``tokens`` column is still a PostgreSQL-only ``text[]``.

Revision ID: 20251109_add_user_name_picture
Revises:
Create Date: 2025-11-09 12:00:00

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from alembic.util import CommandError
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "20251109_add_user_name_picture"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _require_postgresql() -> None:
    # text[] only exists on PostgreSQL; the schema this stand-in reproduces is Postgres-only.
    dialect = op.get_context().dialect.name
    if dialect != "postgresql":
        raise CommandError(f"revision {revision} needs PostgreSQL, not {dialect}")


def upgrade() -> None:
    _require_postgresql()
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("picture", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.UniqueConstraint("email", name="uq_users_email"),
    )
    op.create_table(
        "ml_features",
        sa.Column("txn_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("tokens", postgresql.ARRAY(sa.Text()), nullable=True),
        sa.Column("merchant", sa.String(length=128), nullable=True),
        sa.Column("amount", sa.Numeric(12, 2), nullable=True),
        sa.Column("label", sa.String(length=64), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
    )


def downgrade() -> None:
    _require_postgresql()
    op.drop_table("ml_features")
    op.drop_table("users")
