"""alembic_migrate's options: one lock budget, and no application table assumed."""
from __future__ import annotations

import yaml

from ansible_collections.ledgermind.migrations.plugins.modules import alembic_migrate


def test_one_lock_budget_in_spec_and_docs() -> None:
    """The docs against the whole spec: tests/unit/plugins/test_doc_fragments.py, for every module."""
    spec = alembic_migrate.argument_spec()
    assert 'lock_timeout' not in spec and spec['lock_timeout_ms']['default'] == 1000
    fragments = yaml.safe_load(alembic_migrate.DOCUMENTATION)['extends_documentation_fragment']
    assert 'ledgermind.migrations.connection' in fragments
    assert 'ledgermind.migrations.connection.lock_timeout' not in fragments


def test_the_monitored_table_is_the_callers() -> None:
    assert 'default' not in alembic_migrate.argument_spec()['monitor_table']
