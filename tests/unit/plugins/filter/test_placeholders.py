"""unfilled_placeholders: the inventory settings a run refuses to start with, named, values never shown."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.ledgermind.migrations.plugins.filter.placeholders import FilterModule, unfilled_placeholders


def test_names_every_unfilled_setting_in_order() -> None:
    settings = {
        'ledgermind_db': {'host': 'db', 'port': 5432, 'password': 'CHANGE-ME'},
        'ledgermind_compose_project_dir': 'CHANGE-ME',
        'ledgermind_compose_project_name': 'ops',
        'ledgermind_backend_url': 'https://CHANGE-ME.example',
        'ledgermind_llm_health_script': '',
        'ledgermind_llm_health_env': {'LLM_HEALTH_URL': 'CHANGE-ME'},
        'ledgermind_hosts': ['a', 'CHANGE-ME'],
    }
    assert unfilled_placeholders(settings) == [
        'ledgermind_db.password', 'ledgermind_compose_project_dir', 'ledgermind_backend_url',
        'ledgermind_llm_health_env.LLM_HEALTH_URL', 'ledgermind_hosts[1]',
    ]


@pytest.mark.parametrize('value', ['', '/srv/ops', 0, None, True, {}, [], {'a': 'change-me'}])
def test_filled_or_empty_values_pass(value: object) -> None:
    """Empty is a choice (it skips what the setting configures); the placeholder is matched as written."""
    assert unfilled_placeholders({'x': value}) == []


def test_another_marker() -> None:
    assert unfilled_placeholders({'a': 'TODO', 'b': 'CHANGE-ME'}, 'TODO') == ['a']


@pytest.mark.parametrize(('settings', 'marker'), [(['CHANGE-ME'], 'CHANGE-ME'), ({'a': 1}, '')])
def test_bad_input_is_refused(settings: object, marker: str) -> None:
    with pytest.raises(AnsibleFilterError):
        unfilled_placeholders(settings, marker)  # type: ignore[arg-type]


def test_registered() -> None:
    assert FilterModule().filters() == {'unfilled_placeholders': unfilled_placeholders}
