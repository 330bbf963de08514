"""Puts this directory on sys.path (pytest's default import mode), so every suite can import stackdb.

Under pytest-xdist (make test: ``-n 2 --dist loadgroup --no-loadscope-reorder``) each test file stays on one
worker, since its databases and fixtures are per file (some with fixed names), and every suite of the Docker
engine's fixed ports (tests/integration/app) shares one worker with the others of its kind.

The suites are handed out longest first (whole playbook runs before single modules, the unit tests last): xdist's
own order puts the files with the most tests first, which left the few-but-slow playbook files for the end, one
worker finishing them while the other idled.
"""
from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# Suites that bind fixed ports or compose projects on the one local Docker engine.
DOCKER_SUITES = ("app",)
# Slowest first, by what their tests run: whole playbooks (playbooks, awx), the Docker engine (app), the bench's
# smoke run, then single modules. Anything not listed (and tests/unit) comes after them.
SUITES_SLOWEST_FIRST = ("playbooks", "awx", "app", "benchmark", "backup", "modules", "backend")


# tryfirst: xdist's loadgroup reads the markers in its own pytest_collection_modifyitems.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A stable sort: each file keeps its own order (some files' tests build on the one before).
    items.sort(key=_suite_rank)
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        path = Path(str(item.path)).resolve()
        if HERE not in path.parents:
            continue
        suite = path.relative_to(HERE).parts[0]
        item.add_marker(pytest.mark.xdist_group("docker" if suite in DOCKER_SUITES else str(path.relative_to(HERE))))


def _suite_rank(item: pytest.Item) -> int:
    path = Path(str(item.path)).resolve()
    if HERE not in path.parents:
        return len(SUITES_SLOWEST_FIRST) + 1
    suite = path.relative_to(HERE).parts[0]
    return SUITES_SLOWEST_FIRST.index(suite) if suite in SUITES_SLOWEST_FIRST else len(SUITES_SLOWEST_FIRST)
