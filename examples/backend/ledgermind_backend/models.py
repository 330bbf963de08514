"""SQLAlchemy 2 models of the LedgerMind backend at head (tokens stored as JSON)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# JSON on SQLite (tests, local dev), JSONB on PostgreSQL. This is the reason for revision
# 502d44cd70ab: a PostgreSQL-only text[] column cannot be mapped portably.
# none_as_null: Python None must become SQL NULL ("no tokens computed"), not JSON 'null',
# so `tokens IS NULL` keeps meaning what it meant for text[].
TokensType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True, nullable=False)
    name: Mapped[str | None] = mapped_column(String(255))
    picture: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)

    def __repr__(self) -> str:
        return f"User(id={self.id!r}, email={self.email!r})"


class MlFeature(Base):
    """Per-transaction features for the categoriser; one row per ledger transaction."""

    __tablename__ = "ml_features"
    __table_args__ = (
        # Created CONCURRENTLY by revision 502d44cd70ab; declared here so autogenerate sees
        # it. The postgresql_* options are ignored on SQLite (a plain index there).
        Index(
            "ix_ml_features_tokens_gin",
            "tokens",
            postgresql_using="gin",
            postgresql_ops={"tokens": "jsonb_ops"},
        ),
    )

    # The ledger assigns transaction ids; the feature row reuses it, so no sequence.
    txn_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    # Tokenised transaction description, e.g. ["pos", "starbucks", "seattle", "wa"].
    tokens: Mapped[list[Any] | None] = mapped_column(TokensType)
    merchant: Mapped[str | None] = mapped_column(String(128))
    amount: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    label: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)

    def __repr__(self) -> str:
        return f"MlFeature(txn_id={self.txn_id!r}, tokens={self.tokens!r})"
