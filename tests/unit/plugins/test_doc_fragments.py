"""The connection fragment's two literal copies agree: WITHOUT_LOCK_TIMEOUT is DOCUMENTATION less lock_timeout."""
from __future__ import annotations

import yaml

from ansible_collections.ledgermind.migrations.plugins.doc_fragments.connection import ModuleDocFragment
from ansible_collections.ledgermind.migrations.plugins.module_utils._connection import (
    postgres_connection_argument_spec,
)


def test_without_lock_timeout_is_documentation_less_lock_timeout() -> None:
    full = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)['options']
    without = yaml.safe_load(ModuleDocFragment.WITHOUT_LOCK_TIMEOUT)['options']
    full.pop('lock_timeout')
    assert without == full


def test_the_fragment_documents_the_connection_spec() -> None:
    assert set(yaml.safe_load(ModuleDocFragment.DOCUMENTATION)['options']) == set(postgres_connection_argument_spec())
