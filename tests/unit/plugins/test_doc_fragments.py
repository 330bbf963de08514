"""The doc fragments and the modules' docs against their argument specs: each option documented once (a fragment or
the module), and the defaults a fragment leaves to each module (the lock budget's) documented as the spec has them.
ansible-test's validate-modules checks the same in the sanity run; this runs in a second."""
from __future__ import annotations

import importlib
import typing as t
from pathlib import Path

import pytest
import yaml

from ansible_collections.ledgermind.migrations.plugins.doc_fragments import connection, lock_budget
from ansible_collections.ledgermind.migrations.plugins.module_utils._connection import (
    postgres_connection_argument_spec,
)

MODULES = sorted(p.stem for p in (Path(__file__).resolve().parents[3] / 'plugins' / 'modules').glob('*.py'))
PREFIX = 'ledgermind.migrations.'


def options(text: str) -> dict[str, t.Any]:
    return yaml.safe_load(text)['options']


def fragment_options(name: str) -> dict[str, t.Any]:
    """The options of ``ledgermind.migrations.<file>[.<section>]``, as ansible-doc resolves the name."""
    file, _, section = name.removeprefix(PREFIX).partition('.')
    fragment = importlib.import_module(f'ansible_collections.ledgermind.migrations.plugins.doc_fragments.{file}')
    return options(getattr(fragment.ModuleDocFragment, section.upper() or 'DOCUMENTATION'))


def documented(module: t.Any) -> dict[str, dict[str, t.Any]]:
    """The module's options after ansible-doc merges its fragments: a module's own keys win over a fragment's."""
    doc = yaml.safe_load(module.DOCUMENTATION)
    merged: dict[str, dict[str, t.Any]] = {}
    for name in doc.get('extends_documentation_fragment', []):
        if name.startswith(PREFIX):
            for option, spec in fragment_options(name).items():
                assert option not in merged, f'{option} documented by two fragments'
                merged[option] = dict(spec)
    for option, spec in doc.get('options', {}).items():
        merged[option] = dict(merged.get(option, {}), **spec)
    return merged


def test_the_connection_fragments_document_the_connection_spec_once() -> None:
    shared, lock_timeout = options(connection.ModuleDocFragment.DOCUMENTATION), options(
        connection.ModuleDocFragment.LOCK_TIMEOUT)
    assert not set(shared) & set(lock_timeout)
    assert set(shared) | set(lock_timeout) == set(postgres_connection_argument_spec())


def test_the_lock_budget_fragment_leaves_each_modules_defaults_to_it() -> None:
    for text in (lock_budget.ModuleDocFragment.DOCUMENTATION, lock_budget.ModuleDocFragment.RETRIES):
        assert all('default' not in spec for spec in options(text).values())


@pytest.mark.parametrize('name', MODULES)
def test_a_module_documents_its_spec_with_its_defaults(name: str) -> None:
    module = importlib.import_module(f'ansible_collections.ledgermind.migrations.plugins.modules.{name}')
    docs, spec = documented(module), module.argument_spec()
    # Another collection's fragment (http_probe's ansible.builtin.url) documents options this test does not read.
    foreign = [n for n in yaml.safe_load(module.DOCUMENTATION).get('extends_documentation_fragment', [])
               if not n.startswith(PREFIX) and n != 'ansible.builtin.action_common_attributes']
    assert set(docs) <= set(spec) if foreign else set(docs) == set(spec)
    for option, doc in docs.items():
        assert 'description' in doc and 'type' in doc, option
        assert doc.get('default') == spec[option].get('default'), option
