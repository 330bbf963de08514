"""The seed's vocabularies and parameters (the data itself is checked on PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine

from ledgermind_backend import seed as seed_module
from ledgermind_backend.db import DatabaseUrlMissing, database_url_from_env, normalize_database_url


def all_tokens() -> list[str]:
    merchants = [merchant for merchant, _label in seed_module.MERCHANTS]
    return [*seed_module.CHANNELS, *merchants, *seed_module.TAIL_WORDS, *seed_module.TRICKY_TOKENS]


def test_tokens_are_storable_text() -> None:
    for token in all_tokens():
        assert isinstance(token, str)
        # PostgreSQL text cannot hold NUL, and jsonb would refuse \u0000 too.
        assert "\x00" not in token


def test_tricky_tokens_cover_the_awkward_cases() -> None:
    tricky = set(seed_module.TRICKY_TOKENS)
    for needle in ['"', ",", "{", "}", "\\", "'", "é", "\n"]:
        assert any(needle in token for token in tricky), needle
    assert any(ord(ch) > 0xFFFF for token in tricky for ch in token)  # emoji outside the BMP
    assert {"", "NULL"} <= tricky
    assert len(tricky) == len(seed_module.TRICKY_TOKENS)


def test_plain_vocabularies_need_no_quoting() -> None:
    # Keeps the common case readable in psql: only TRICKY_TOKENS exercise the escaping.
    plain = [*seed_module.CHANNELS, *(m for m, _label in seed_module.MERCHANTS), *seed_module.TAIL_WORDS]
    assert all(token and token.upper() != "NULL" and not set(token) & set("{},\" \\'") for token in plain)


def test_shares_and_sizes() -> None:
    assert 0 < seed_module.NULL_SHARE + seed_module.EMPTY_SHARE < 0.1
    assert seed_module.TRICKY_SHARE + seed_module.NULL_ELEMENT_SHARE < 0.05
    assert seed_module.MAX_TOKENS == 12


def test_insert_params_cover_the_requested_id_range() -> None:
    params = seed_module._insert_params(rows=1000, first_id=501)
    assert (params["first_id"], params["last_id"]) == (501, 1500)
    assert len(params["merchants"]) == len(params["labels"]) == params["merchant_count"]  # type: ignore[arg-type]


def test_seed_refuses_sqlite_clearly() -> None:
    engine = create_engine("sqlite://")
    with pytest.raises(ValueError, match="PostgreSQL"):
        seed_module.seed(engine, 10)


@pytest.mark.parametrize("kwargs", [{"rows": -1}, {"rows": 1, "random_seed": 2.0}])
def test_seed_rejects_bad_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        seed_module.seed(create_engine("sqlite://"), **kwargs)  # type: ignore[arg-type]


def test_seed_cli_without_database_url(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert seed_module.main(["--rows", "1"]) == 1
    assert "DATABASE_URL is not set" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@h/db", "postgresql+psycopg2://u:p@h/db"),
        ("postgresql://u:p@h:5432/db?sslmode=require", "postgresql+psycopg2://u:p@h:5432/db?sslmode=require"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_normalize_database_url(url: str, expected: str) -> None:
    assert normalize_database_url(url) == expected


def test_database_url_from_env() -> None:
    with pytest.raises(DatabaseUrlMissing):
        database_url_from_env({"DATABASE_URL": "  "})
    assert database_url_from_env({"DATABASE_URL": "postgres://h/db"}) == "postgresql+psycopg2://h/db"
