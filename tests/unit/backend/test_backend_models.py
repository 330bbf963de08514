"""The head model on SQLite: tokens is plain JSON there, which is why the migration exists."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateTable

from ledgermind_backend.models import Base, MlFeature, User
from ledgermind_backend.seed import TRICKY_TOKENS


@pytest.fixture
def engine() -> Iterator[Engine]:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


def test_row_needs_only_txn_id_and_tokens(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(MlFeature), [{"txn_id": 1, "tokens": ["pos", "starbucks"]}])
    with Session(engine) as session:
        row = session.get_one(MlFeature, 1)
        assert row.tokens == ["pos", "starbucks"]
        assert (row.merchant, row.amount, row.label) == (None, None, None)
        assert row.created_at is not None  # server default


@pytest.mark.parametrize(
    "tokens",
    [
        [],
        ["pos", "card", "seattle"],
        list(TRICKY_TOKENS),
        ["a", None, "NULL", ""],
        [None],
    ],
    ids=["empty", "plain", "tricky", "null-element", "only-null"],
)
def test_json_list_round_trips(engine: Engine, tokens: list[str | None]) -> None:
    with Session(engine) as session:
        session.add(MlFeature(txn_id=7, tokens=tokens))
        session.commit()
    with Session(engine) as session:
        assert session.scalars(select(MlFeature.tokens)).one() == tokens


def test_none_tokens_is_sql_null_not_json_null(engine: Engine) -> None:
    with Session(engine) as session:
        session.add_all([MlFeature(txn_id=1, tokens=None), MlFeature(txn_id=2, tokens=[])])
        session.commit()
        assert session.get_one(MlFeature, 1).tokens is None
    with engine.connect() as conn:
        # `tokens IS NULL` must keep meaning "no tokens", as with text[]; [] is not NULL.
        assert conn.execute(text("SELECT txn_id FROM ml_features WHERE tokens IS NULL")).scalars().all() == [1]


def test_tokens_type_is_json_on_sqlite_and_jsonb_on_postgresql() -> None:
    table = MlFeature.__table__
    assert "tokens JSONB" in str(CreateTable(table).compile(dialect=postgresql.dialect()))
    assert "tokens JSON" in str(CreateTable(table).compile(dialect=sqlite.dialect()))


def test_user_email_is_unique_and_name_picture_optional(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(User(email="ada@example.com"))
        session.commit()
        user = session.scalars(select(User)).one()
        assert (user.name, user.picture) == (None, None)
        session.add(User(email="ada@example.com", name="Ada", picture="https://example.com/a.png"))
        with pytest.raises(IntegrityError):
            session.commit()
