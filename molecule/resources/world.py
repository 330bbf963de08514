"""What the Molecule verifiers look at: the database, the files, the containers and the HTTP service.

Shared by the scenarios' testinfra tests (they add this directory to sys.path). Everything is read from
the world itself; ``expected.json`` (written by prepare.yml before anything changed) holds the baseline.
"""
from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from typing import Any

import psycopg2

EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
PROJECT = os.environ.get("LEDGERMIND_COMPOSE_PROJECT", "lm_molecule")
PORT = os.environ.get("LEDGERMIND_BACKEND_PORT", "18180")
INDEX = "ix_ml_features_tokens_gin"


def expected() -> dict[str, Any]:
    return json.loads((EPHEMERAL / "expected.json").read_text())


def rolled_back() -> bool:
    """side_effect (rollback_tokens.yml) has run: its sign-off report exists."""
    return any((EPHEMERAL / "reports").glob("tokens_rollback_*.json"))


def query(sql: str, params: Any = None) -> list[tuple]:
    conn = psycopg2.connect(os.environ["DATABASE_URL"], connect_timeout=10)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def column_type() -> str:
    return query("SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                 " WHERE attrelid = 'public.ml_features'::regclass AND attname = 'tokens' AND NOT attisdropped")[0][0]


def tokens_is_last_column() -> bool:
    """The online conversion's mark: the swapped-in column comes after every other (in place keeps its position)."""
    rows = query("SELECT attname FROM pg_attribute WHERE attrelid = 'public.ml_features'::regclass"
                 " AND attnum > 0 AND NOT attisdropped ORDER BY attnum DESC LIMIT 1")
    return rows[0][0] == "tokens"


def online_leftovers() -> list[str]:
    """Shadow columns or the sync trigger an online conversion would leave behind."""
    columns = query("SELECT attname FROM pg_attribute WHERE attrelid = 'public.ml_features'::regclass"
                    " AND attname IN ('tokens__ledgermind_jsonb', 'tokens__ledgermind_text') AND NOT attisdropped")
    triggers = query("SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.ml_features'::regclass"
                     " AND tgname = 'zz_ledgermind_online_sync'")
    return [r[0] for r in columns + triggers]


def revision() -> str:
    return query("SELECT version_num FROM alembic_version")[0][0]


def index_definition() -> str | None:
    rows = query("SELECT indexdef FROM pg_indexes WHERE tablename = 'ml_features' AND indexname = %s", (INDEX,))
    return rows[0][0] if rows else None


FINGERPRINT_SQL = (
    "SELECT md5(string_agg(txn_id || ':' || coalesce(to_jsonb(tokens)::text, 'NULL'), '|' ORDER BY txn_id))"
    " || '/' || count(*) FROM ml_features"
)


def fingerprint() -> str:
    """Content fingerprint of our own: text[] {a,b} and jsonb ["a","b"] hash the same."""
    return query(FINGERPRINT_SQL)[0][0]


def backend_container(host) -> dict[str, Any]:
    ids = host.check_output(
        "docker ps --quiet --no-trunc --filter label=com.docker.compose.project=%s"
        " --filter label=com.docker.compose.service=backend", PROJECT).split()
    assert len(ids) == 1, f"expected one backend container of {PROJECT}, found {ids}"
    return json.loads(host.check_output("docker inspect %s", ids[0]))[0]


def image_id(host, ref: str) -> str:
    return json.loads(host.check_output("docker image inspect %s", ref))[0]["Id"]


def get_json(path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}{path}", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
