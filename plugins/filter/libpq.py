# Copyright: (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters turning ``ledgermind_db`` into what libpq clients read (see module_utils/_libpq.py)."""
from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.ledgermind.migrations.plugins.module_utils._libpq import (
    LibpqSettingsError,
    redact,
    to_env,
    to_url,
)


def _guarded(function):
    def wrapper(value: Any) -> Any:
        try:
            return function(value)
        except LibpqSettingsError as exc:
            raise AnsibleFilterError(f"ledgermind_db: {exc}") from None
    wrapper.__name__ = function.__name__
    return wrapper


class FilterModule:
    """libpq_env, libpq_url and redact_url."""

    def filters(self) -> dict[str, Any]:
        return {
            "libpq_env": _guarded(to_env),
            "libpq_url": _guarded(to_url),
            "redact_url": _guarded(redact),
        }
