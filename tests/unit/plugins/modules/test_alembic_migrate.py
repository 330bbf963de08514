"""alembic_migrate's options: one lock budget, and no application table assumed."""
from __future__ import annotations

import yaml

from ansible_collections.ledgermind.migrations.plugins.doc_fragments.connection import ModuleDocFragment
from ansible_collections.ledgermind.migrations.plugins.modules import alembic_migrate


def test_one_lock_budget_in_spec_and_docs() -> None:
    spec = alembic_migrate.argument_spec()
    assert 'lock_timeout' not in spec and spec['lock_timeout_ms']['default'] == 1000
    assert 'ledgermind.migrations.connection.without_lock_timeout' in alembic_migrate.DOCUMENTATION
    documented = set(yaml.safe_load(ModuleDocFragment.WITHOUT_LOCK_TIMEOUT)['options'])
    documented |= set(yaml.safe_load(alembic_migrate.DOCUMENTATION)['options'])
    assert documented == set(spec)


def test_the_monitored_table_is_the_callers() -> None:
    assert 'default' not in alembic_migrate.argument_spec()['monitor_table']
