"""The runbook's commands exactly as tokens_migration_checklist.md writes them, timed per phase.

Each step is a shell command run by bash with DATABASE_URL set, from the repository root (the
Alembic config is examples/backend/alembic.ini, as the issue spells it); dumps go to ``workdir``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .env import ALEMBIC_INI, REPO, TARGET_REVISION, base_env, run

SCHEMA_SQL = """SELECT column_name, data_type, udt_name
FROM information_schema.columns
WHERE table_name='ml_features' AND column_name='tokens';"""

COUNTS_SQL = """SELECT
    COUNT(*) AS total,
    COUNT(*) FILTER (WHERE tokens IS NULL) AS nulls,
    COUNT(*) FILTER (WHERE tokens = '{}') AS empty
FROM ml_features;"""

SAMPLE_SQL = """SELECT txn_id, tokens, array_length(tokens, 1)
FROM ml_features
WHERE tokens IS NOT NULL
LIMIT 5;"""

INVALID_TYPES_SQL = """SELECT COUNT(*) AS invalid_types
FROM ml_features
WHERE tokens IS NOT NULL AND jsonb_typeof(tokens) <> 'array';"""

INDEX_SQL = """SELECT indexname, indexdef
FROM pg_indexes
WHERE tablename='ml_features' AND indexname='ix_ml_features_tokens_gin';"""

EXPLAIN_SQL = """EXPLAIN (ANALYZE)
SELECT txn_id FROM ml_features WHERE tokens @> '["test"]'::jsonb;"""

SAMPLE_AFTER_SQL = """SELECT txn_id, tokens, jsonb_array_length(tokens) AS len
FROM ml_features
WHERE tokens IS NOT NULL
LIMIT 5;"""

LOCK_WAITS_SQL = "SELECT * FROM pg_stat_activity WHERE wait_event_type = 'Lock';"

ROLLBACK_TYPE_SQL = """SELECT column_name, data_type
FROM information_schema.columns
WHERE table_name='ml_features' AND column_name='tokens';"""

ROLLBACK_INDEX_SQL = """SELECT COUNT(*) FROM pg_indexes
WHERE tablename='ml_features' AND indexname='ix_ml_features_tokens_gin';"""


def _psql_heredoc(query: str) -> str:
    return f"psql $DATABASE_URL <<'SQL'\n{query}\nSQL"


ALEMBIC = f"alembic -c {ALEMBIC_INI}"

# (phase, runbook step, shell command)
MIGRATE_STEPS: list[tuple[str, str, str]] = [
    ("preflight", "1. Check current schema", _psql_heredoc(SCHEMA_SQL)),
    ("preflight", "2. Verify row counts", _psql_heredoc(COUNTS_SQL)),
    ("preflight", "3. Sample data inspection", _psql_heredoc(SAMPLE_SQL)),
    ("backup", "1. Backup first (full backup)",
     "pg_dump $DATABASE_URL > ml_features_backup_$(date +%Y%m%d_%H%M%S).sql"),
    ("migrate", "2. alembic current", f"{ALEMBIC} current"),
    ("migrate", "2. alembic history | grep", f"{ALEMBIC} history | grep {TARGET_REVISION}"),
    ("migrate", "2. alembic upgrade", f"{ALEMBIC} upgrade {TARGET_REVISION}"),
    ("migrate", "3. Check for lock waits", _psql_heredoc(LOCK_WAITS_SQL)),
    ("validate", "1. Verify column type changed", _psql_heredoc(SCHEMA_SQL)),
    ("validate", "2. Validate data integrity", _psql_heredoc(INVALID_TYPES_SQL)),
    ("validate", "3. Verify GIN index created", _psql_heredoc(INDEX_SQL)),
    ("validate", "4. Test index performance", _psql_heredoc(EXPLAIN_SQL)),
    ("validate", "5. Sample data roundtrip", _psql_heredoc(SAMPLE_AFTER_SQL)),
]

ROLLBACK_STEPS: list[tuple[str, str, str]] = [
    ("rollback_downgrade", "1. alembic downgrade -1", f"{ALEMBIC} downgrade -1"),
    ("rollback_validate", "2. Verify rollback (type)", _psql_heredoc(ROLLBACK_TYPE_SQL)),
    ("rollback_validate", "2. Verify rollback (index gone)", _psql_heredoc(ROLLBACK_INDEX_SQL)),
]


def run_steps(steps: list[tuple[str, str, str]], url: str, workdir: Path) -> dict:
    """Run the steps in order: per-phase seconds, per-step seconds, and the dump's size.

    The dump lands in the current directory, as in the runbook, so that step runs from ``workdir``.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    env = base_env(url)
    env["PGAPPNAME"] = "ledgermind-bench-bare"
    phases: dict[str, float] = {}
    detail: list[dict] = []
    dump_bytes = None
    for phase, label, command in steps:
        dumps = "pg_dump" in command
        before = set(os.listdir(workdir))
        timed = run(command, env=env, shell=True, cwd=workdir if dumps else REPO, what=f"runbook step '{label}'")
        phases[phase] = phases.get(phase, 0.0) + timed.seconds
        detail.append({"phase": phase, "step": label, "command": command, "seconds": round(timed.seconds, 4)})
        if dumps:
            dump_bytes = sum((workdir / n).stat().st_size for n in set(os.listdir(workdir)) - before)
    return {"phases": phases, "steps": detail, "dump_bytes": dump_bytes}
