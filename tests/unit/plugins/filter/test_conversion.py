"""The in-place or online choice, from the operator's setting and the table's state."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.ledgermind.migrations.plugins.filter.conversion import conversion_choice


def status(state: str = 'pending', rows: int = 10) -> dict:
    return {'state': state, 'rows': rows, 'target_type': 'jsonb'}


@pytest.mark.parametrize(('state', 'mode', 'rows', 'expected', 'remove', 'words'), [
    ('pending', 'auto', 99999, 'in_place', False, '99999 rows < 100000'),
    ('pending', 'auto', 100000, 'online', False, '100000 rows >= 100000'),
    ('pending', 'online', 10, 'online', False, 'online requested'),
    ('pending', 'in_place', 10**7, 'in_place', False, 'in_place requested'),
    ('in_progress', 'auto', 10, 'online', False, 'continues'),
    ('in_progress', 'in_place', 10, 'in_place', True, 'removed first'),
    ('leftover', 'auto', 10, 'in_place', True, 'leftovers'),
    ('converted', 'online', 10**7, 'in_place', False, 'already jsonb'),
])
def test_choice(state: str, mode: str, rows: int, expected: str, remove: bool, words: str) -> None:
    choice = conversion_choice(status(state, rows), mode, 100000)
    assert (choice['mode'], choice['remove_leftovers']) == (expected, remove)
    assert words in choice['rule']


@pytest.mark.parametrize(('args', 'words'), [
    ((status(), 'fast'), 'auto, in_place or online'),
    ((status(), 'auto', 'many'), 'whole number'),
    (({}, 'auto'), 'phase=status'),
])
def test_wrong_inputs_say_what_to_do(args: tuple, words: str) -> None:
    with pytest.raises(AnsibleFilterError, match=words):
        conversion_choice(*args)
