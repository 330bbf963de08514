# Copyright: (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which inventory settings still hold a placeholder (``CHANGE-ME``): a run refuses to start with any left, so that
a production run never skips its deploy and smoke phases, or runs them against an example value, unnoticed."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

PLACEHOLDER = "CHANGE-ME"


def _unfilled(value: Any, path: str, marker: str) -> Iterator[str]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _unfilled(item, f"{path}.{key}", marker)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _unfilled(item, f"{path}[{index}]", marker)
    elif isinstance(value, str) and marker in value:
        yield path


def unfilled_placeholders(settings: Mapping[str, Any], marker: str = PLACEHOLDER) -> list[str]:
    """The settings (``name``, or ``name.key`` / ``name[index]`` inside a mapping or list) whose value still holds
    ``marker``, in the order given. Values are never returned: a setting may be a secret."""
    if not isinstance(settings, Mapping):
        raise AnsibleFilterError(f"unfilled_placeholders expects a mapping of setting names to values, got "
                                 f"{type(settings).__name__}")
    if not isinstance(marker, str) or not marker:
        raise AnsibleFilterError("unfilled_placeholders: the marker must be a non-empty string")
    return [path for name, value in settings.items() for path in _unfilled(value, str(name), marker)]


class FilterModule:
    """unfilled_placeholders."""

    def filters(self) -> dict[str, Any]:
        return {"unfilled_placeholders": unfilled_placeholders}
