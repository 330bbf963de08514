"""Seed ``ml_features`` with realistic tokenised transaction descriptions, fast.

Everything is generated server-side by one ``INSERT ... SELECT ... FROM generate_series``
seeded with ``setseed``, so a million rows take seconds and the same ``(rows, seed)`` always
gives the same data. The seed targets revision ``20251109_add_user_name_picture``, where
``tokens`` is still ``text[]``: it is the "before" data set of the jsonb migration.

Mix: ~2% NULL rows, ~3% ``'{}'`` rows, the rest 1-12 tokens (channel, merchant, then
city/state/reference words), with a sprinkling of awkward but valid values (quotes,
commas, braces, backslashes, unicode, empty strings, the string "NULL", NULL elements).
All arrays are 1-D with lower bound 1, so text[] -> to_jsonb -> text[] is lossless.

CLI: ``python -m ledgermind_backend.seed --rows N [--replace]`` (uses DATABASE_URL).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Final

from sqlalchemy import Connection, Engine, TextClause, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.types import Text

from ledgermind_backend.db import DatabaseUrlMissing, database_url_from_env, make_engine

DEFAULT_SEED: Final = 0.42  # setseed() takes a value in [-1, 1]
NULL_SHARE: Final = 0.02  # rows whose tokens are NULL (never tokenised)
EMPTY_SHARE: Final = 0.03  # rows whose description had no usable token: '{}'
TRICKY_SHARE: Final = 0.01  # rows with one awkward token in a random position
NULL_ELEMENT_SHARE: Final = 0.002  # rows with one NULL element in a random position
MAX_TOKENS: Final = 12

# First token: how the money moved.
CHANNELS: Final[tuple[str, ...]] = (
    "pos", "card", "debit", "purchase", "ach", "online", "recurring", "atm", "transfer",
    "refund", "contactless", "visa", "mastercard", "payment", "withdrawal", "deposit",
)  # fmt: skip

# Second token: merchant, with the label the categoriser should learn for it.
MERCHANTS: Final[tuple[tuple[str, str], ...]] = (
    ("starbucks", "dining"), ("mcdonalds", "dining"), ("chipotle", "dining"),
    ("doordash", "dining"), ("ubereats", "dining"), ("amazon", "shopping"),
    ("walmart", "groceries"), ("target", "shopping"), ("costco", "groceries"),
    ("safeway", "groceries"), ("kroger", "groceries"), ("wholefoods", "groceries"),
    ("traderjoes", "groceries"), ("instacart", "groceries"), ("uber", "transport"),
    ("lyft", "transport"), ("shell", "fuel"), ("chevron", "fuel"), ("exxon", "fuel"),
    ("delta", "travel"), ("united", "travel"), ("airbnb", "travel"), ("marriott", "travel"),
    ("netflix", "subscriptions"), ("spotify", "subscriptions"), ("hulu", "subscriptions"),
    ("apple", "subscriptions"), ("google", "subscriptions"), ("comcast", "utilities"),
    ("verizon", "utilities"), ("pge", "utilities"), ("tmobile", "utilities"),
    ("cvs", "health"), ("walgreens", "health"), ("homedepot", "home"), ("lowes", "home"),
    ("ikea", "home"), ("bestbuy", "shopping"), ("etsy", "shopping"), ("ebay", "shopping"),
    ("paypal", "transfers"), ("venmo", "transfers"), ("zelle", "transfers"),
    ("payroll", "income"), ("irs", "taxes"), ("geico", "insurance"),
)  # fmt: skip

# Remaining tokens: place, reference and description noise.
TAIL_WORDS: Final[tuple[str, ...]] = (
    "seattle", "portland", "san", "francisco", "new", "york", "chicago", "austin", "denver",
    "boston", "miami", "atlanta", "oakland", "brooklyn", "london", "paris", "berlin",
    "toronto", "montreal", "sydney", "wa", "ca", "ny", "tx", "co", "ma", "fl", "ga", "usa",
    "gb", "store", "#1042", "#2231", "#0087", "ref", "txn", "inc", "llc", "market", "coffee",
    "fuel", "grocery", "subscription", "monthly", "fee", "tip", "order", "mktp", "digital",
    "services", "bill", "pay", "www", "com", "11/09", "01/15", "4821", "xxxx1234", "pending",
    "auth", "intl", "usd", "eur", "gbp", "sq", "tst", "pp", "web", "mobile", "app",
)  # fmt: skip

# Awkward but valid text[] elements: each needs quoting or escaping in the array literal
# and/or in JSON, which is exactly where a hand-written conversion would break.
TRICKY_TOKENS: Final[tuple[str, ...]] = (
    'say "hi"',  # double quotes
    '"',
    "a,b",  # comma: the text[] element separator
    "{braces}",  # braces: the text[] literal delimiters
    "}",
    "back\\slash",  # one backslash
    "\\",
    "o'brien",  # apostrophe
    "mcdonald's",
    "café",  # non-ASCII
    "zürich",
    "東京",
    "☕",
    "🍕",  # astral plane emoji (surrogate pair in JSON escapes)
    "",  # empty string element, not NULL
    "NULL",  # the string, not a NULL element
    "null",
    " padded ",  # leading/trailing blanks are significant when quoted
    "tab\there",
    "line\nbreak",
    "[1,2]",  # looks like JSON
    "{}",
)


@dataclass(frozen=True)
class SeedSummary:
    rows: int
    null_rows: int
    empty_rows: int


_TOKENS_TYPE_SQL = (
    "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
    " WHERE a.attrelid = to_regclass('ml_features') AND a.attname = 'tokens'"
    " AND a.attnum > 0 AND NOT a.attisdropped"
)

# One statement, all server-side. The FROM subquery draws the per-row random numbers once
# (PostgreSQL does not flatten a subquery with volatile output, so each value is read, not
# re-evaluated); the ARRAY() subquery is correlated on r.n, so it runs per row.
_INSERT_SQL = """
INSERT INTO ml_features (txn_id, tokens, merchant, amount, label, created_at)
SELECT
    r.i,
    CASE
        WHEN r.kind < :null_share THEN NULL
        WHEN r.kind < :null_share + :empty_share THEN '{}'::text[]
        ELSE ARRAY(
            SELECT CASE
                WHEN s.j = 1 + floor(r.odd_pos * r.n)::int AND r.odd < :tricky_share
                    THEN v.tricky[1 + floor(r.odd_pick * cardinality(v.tricky))::int]
                WHEN s.j = 1 + floor(r.odd_pos * r.n)::int
                     AND r.odd < :tricky_share + :null_element_share
                    THEN NULL
                WHEN s.j = 1 THEN v.channels[1 + floor(random() * cardinality(v.channels))::int]
                WHEN s.j = 2 THEN v.merchants[r.m]
                ELSE v.tail[1 + floor(random() * cardinality(v.tail))::int]
            END
            FROM generate_series(1, r.n) AS s(j)
            ORDER BY s.j
        )
    END,
    v.merchants[r.m],
    round((1 + r.amount * r.amount * 480)::numeric, 2),
    v.labels[r.m],
    timestamptz '2025-01-01 00:00:00+00' + r.i * interval '13 seconds'
FROM (
    SELECT
        g.i,
        random() AS kind,
        1 + floor(random() * :max_tokens)::int AS n,
        random() AS odd,
        random() AS odd_pos,
        random() AS odd_pick,
        random() AS amount,
        1 + floor(random() * :merchant_count)::int AS m
    FROM generate_series(:first_id, :last_id) AS g(i)
) AS r
CROSS JOIN (
    SELECT :channels AS channels, :merchants AS merchants, :labels AS labels,
           :tail AS tail, :tricky AS tricky
) AS v
"""

_SUMMARY_SQL = (
    "SELECT count(*), count(*) FILTER (WHERE tokens IS NULL), count(*) FILTER (WHERE tokens = '{}') FROM ml_features"
)


def _insert_statement() -> TextClause:
    arrays = ("channels", "merchants", "labels", "tail", "tricky")
    return text(_INSERT_SQL).bindparams(*(bindparam(name, type_=ARRAY(Text)) for name in arrays))


def _insert_params(rows: int, first_id: int) -> dict[str, object]:
    return {
        "null_share": NULL_SHARE,
        "empty_share": EMPTY_SHARE,
        "tricky_share": TRICKY_SHARE,
        "null_element_share": NULL_ELEMENT_SHARE,
        "max_tokens": MAX_TOKENS,
        "merchant_count": len(MERCHANTS),
        "first_id": first_id,
        "last_id": first_id + rows - 1,
        "channels": list(CHANNELS),
        "merchants": [merchant for merchant, _label in MERCHANTS],
        "labels": [label for _merchant, label in MERCHANTS],
        "tail": list(TAIL_WORDS),
        "tricky": list(TRICKY_TOKENS),
    }


def _check_target(conn: Connection) -> None:
    if conn.dialect.name != "postgresql":
        raise ValueError(f"the seed generates data server-side on PostgreSQL, not {conn.dialect.name}")
    column_type = conn.execute(text(_TOKENS_TYPE_SQL)).scalar_one_or_none()
    if column_type is None:
        raise ValueError("table ml_features.tokens not found; run 'alembic upgrade 20251109_add_user_name_picture'")
    if column_type != "text[]":
        raise ValueError(
            f"ml_features.tokens is {column_type}; the seed targets the pre-migration text[] "
            "(revision 20251109_add_user_name_picture)"
        )


def seed(
    engine_or_url: Engine | str,
    rows: int,
    *,
    random_seed: float = DEFAULT_SEED,
    replace: bool = False,
    first_id: int = 1,
) -> SeedSummary:
    """Insert ``rows`` rows with txn_id ``first_id..first_id+rows-1`` in one transaction.

    Refuses a non-empty table unless ``replace`` (which truncates it first), so a stray run
    cannot mix two data sets. Returns the counts the runbook's pre-flight step looks at.
    """
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    if not -1.0 <= random_seed <= 1.0:
        raise ValueError(f"random_seed must be within [-1, 1], got {random_seed}")
    engine = make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    try:
        with engine.begin() as conn:
            _check_target(conn)
            if replace:
                conn.execute(text("TRUNCATE ml_features"))
            elif conn.execute(text("SELECT EXISTS (SELECT FROM ml_features)")).scalar_one():
                raise ValueError("ml_features is not empty; pass replace=True (--replace) to truncate it first")
            if rows:
                # setseed() drives random() for the rest of this session, i.e. the INSERT below.
                conn.execute(text("SELECT setseed(:seed)"), {"seed": random_seed})
                conn.execute(_insert_statement(), _insert_params(rows, first_id))
            total, null_rows, empty_rows = conn.execute(text(_SUMMARY_SQL)).one()
        # Fresh statistics: the planner otherwise guesses for the pre-flight queries.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE ml_features"))
    finally:
        if isinstance(engine_or_url, str):
            engine.dispose()
    return SeedSummary(rows=total, null_rows=null_rows, empty_rows=empty_rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ledgermind_backend.seed",
        description="Seed ml_features (text[] tokens, revision 20251109_add_user_name_picture) "
        "in the database named by DATABASE_URL.",
    )
    parser.add_argument("--rows", type=int, required=True, help="number of rows to insert")
    parser.add_argument("--seed", type=float, default=DEFAULT_SEED, help="setseed() value in [-1, 1]")
    parser.add_argument("--replace", action="store_true", help="truncate ml_features first")
    args = parser.parse_args(argv)
    try:
        summary = seed(database_url_from_env(), args.rows, random_seed=args.seed, replace=args.replace)
    except (DatabaseUrlMissing, ValueError) as exc:
        print(f"seed: {exc}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        # One line: the driver's message without SQLAlchemy's statement dump.
        detail = " ".join(str(getattr(exc, "orig", None) or exc).split())
        print(f"seed: database error: {detail}", file=sys.stderr)
        return 1
    print(f"seeded ml_features: {summary.rows} rows ({summary.null_rows} NULL, {summary.empty_rows} empty)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
