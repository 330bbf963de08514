"""Pure helpers of scripts/reset_demo_db.py (URL surgery, name checks, error paths)."""

from __future__ import annotations

from types import ModuleType

import pytest


def test_with_database_keeps_everything_but_the_name(reset_demo_db: ModuleType) -> None:
    url = "postgresql://lm:s%40cret@db.example:6543/ledgermind?sslmode=require"
    assert (
        reset_demo_db.with_database(url, "lm_test")
        == "postgresql://lm:s%40cret@db.example:6543/lm_test?sslmode=require"
    )
    assert reset_demo_db.url_database(url) == "ledgermind"


def test_libpq_dsn_drops_sqlalchemy_driver(reset_demo_db: ModuleType) -> None:
    assert reset_demo_db.libpq_dsn("postgresql+psycopg2://u@h/db") == "postgresql://u@h/db"


@pytest.mark.parametrize("name", ["lm_test_backend", "lm-demo", "_x", "A$1"])
def test_good_names(reset_demo_db: ModuleType, name: str) -> None:
    assert reset_demo_db.check_name(name) == name


@pytest.mark.parametrize("name", ["", "bad name", "1abc", 'x"; DROP', "a" * 64, "postgres", "template1"])
def test_bad_names(reset_demo_db: ModuleType, name: str) -> None:
    with pytest.raises(reset_demo_db.ResetError):
        reset_demo_db.check_name(name)


def test_print_url(
    reset_demo_db: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://lm:pw@127.0.0.1:55432/ledgermind")
    assert reset_demo_db.main(["--print-url", "--db", "lm_other"]) == 0
    assert capsys.readouterr().out == "postgresql://lm:pw@127.0.0.1:55432/lm_other\n"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (None, "DATABASE_URL is not set"),
        ("mysql://u@h/db", "must be a postgresql:// URL"),
        ("postgresql://u@127.0.0.1:1/", "names no database"),
        # Port 1 on loopback: nothing listens, so connecting fails at once.
        ("postgresql://u:p@127.0.0.1:1/db", "cannot connect to the server"),
    ],
)
def test_errors_are_one_line(
    reset_demo_db: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    url: str | None,
    message: str,
) -> None:
    if url is None:
        monkeypatch.delenv("DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("DATABASE_URL", url)
    assert reset_demo_db.main(["--rows", "1"]) == 1
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and err.startswith("reset_demo_db: ")
