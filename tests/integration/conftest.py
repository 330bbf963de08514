"""Puts this directory on sys.path (pytest's default import mode), so every suite can import stackdb.

Under pytest-xdist (make test: ``-n 2 --dist loadgroup``) each test file stays on one worker, since its
databases and fixtures are per file (some with fixed names), and every suite of the Docker engine's fixed ports
(tests/integration/app) shares one worker with the others of its kind.
"""
from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# Suites that bind fixed ports or compose projects on the one local Docker engine.
DOCKER_SUITES = ("app",)


# tryfirst: xdist's loadgroup reads the markers in its own pytest_collection_modifyitems.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        path = Path(str(item.path)).resolve()
        if HERE not in path.parents:
            continue
        suite = path.relative_to(HERE).parts[0]
        item.add_marker(pytest.mark.xdist_group("docker" if suite in DOCKER_SUITES else str(path.relative_to(HERE))))
