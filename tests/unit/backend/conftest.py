"""Backend unit tests: no server needed (SQLite in memory, alembic CLI without a database)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[3]
BACKEND_DIR = REPO / "examples" / "backend"

# The backend is an example package, not installed into the venv.
if str(BACKEND_DIR) not in sys.path:
    sys.path.insert(0, str(BACKEND_DIR))


@pytest.fixture(scope="session")
def reset_demo_db() -> ModuleType:
    """scripts/reset_demo_db.py imported as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("reset_demo_db", REPO / "scripts" / "reset_demo_db.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
