"""Fixtures for the backend's Alembic revisions against the real PostgreSQL of scripts/stack.

Every test gets its own freshly reset scratch database (never the demo database), seeded
at revision 20251109_add_user_name_picture by scripts/reset_demo_db.py, exactly as
`scripts/stack reset` does it. Test modules must not `import conftest` at run time
(another directory's conftest.py may own that module name); fixtures carry everything.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
from stackdb import drop_database, reachable_server_url, with_db

REPO = Path(__file__).resolve().parents[3]
BACKEND_DIR = REPO / "examples" / "backend"
ALEMBIC_INI = BACKEND_DIR / "alembic.ini"
RESET_SCRIPT = REPO / "scripts" / "reset_demo_db.py"
SCRATCH_DB = "lm_test_backend"
SEED_ROWS = 20000

if str(BACKEND_DIR) not in sys.path:
    sys.path.insert(0, str(BACKEND_DIR))


@dataclass(frozen=True)
class ScratchDb:
    url: str
    name: str
    server_url: str
    seed_rows: int = SEED_ROWS

    def connect(self) -> psycopg2.extensions.connection:
        # autocommit: an idle-in-transaction test session would hold a snapshot, and
        # CREATE INDEX CONCURRENTLY waits for every older snapshot in the database.
        conn = psycopg2.connect(self.url)
        conn.autocommit = True
        return conn

    def alembic(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run the alembic CLI as the runbook does, from an unrelated directory."""
        return subprocess.run(
            [sys.executable, "-m", "alembic", "-c", str(ALEMBIC_INI), *args],
            cwd="/",
            env={**os.environ, **(env or {}), "DATABASE_URL": self.url},
            capture_output=True,
            text=True,
            check=False,  # callers assert on returncode and output
            timeout=300,
        )

    def reset(self) -> subprocess.CompletedProcess[str]:
        """`scripts/stack reset --rows N --db NAME`, minus the shell wrapper."""
        return subprocess.run(
            [sys.executable, RESET_SCRIPT, "--rows", str(self.seed_rows), "--db", self.name],
            env={**os.environ, "DATABASE_URL": self.server_url},
            capture_output=True,
            text=True,
            check=False,  # callers assert on returncode and output
            timeout=300,
        )


@pytest.fixture(scope="session")
def server_url() -> str:
    return reachable_server_url()


@pytest.fixture(scope="session")
def scratch_url(server_url: str) -> Iterator[str]:
    url = with_db(server_url, SCRATCH_DB)
    yield url
    drop_database(server_url, SCRATCH_DB)


@pytest.fixture
def db(server_url: str, scratch_url: str) -> ScratchDb:
    scratch = ScratchDb(url=scratch_url, name=SCRATCH_DB, server_url=server_url)
    result = scratch.reset()
    assert result.returncode == 0, result.stderr
    return scratch
