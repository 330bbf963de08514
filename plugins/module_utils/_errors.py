# Copyright (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one error helper of the collection's modules: ``fail(module, msg, **result)``.

Every module fails through it (the database modules through ``_connection.fail``, which adds the connection's
secrets), so a failure always carries the partial result the caller passes, ``changed: false`` unless the caller
says otherwise, and a message (and string results) with passwords replaced by ``_redact``.
"""

from __future__ import annotations

import typing as t

from ansible_collections.ledgermind.migrations.plugins.module_utils._redact import redact

if t.TYPE_CHECKING:
    from ansible.module_utils.basic import AnsibleModule


def fail(module: AnsibleModule, msg: str, secrets: t.Iterable[str | None] = (), **result: t.Any) -> t.NoReturn:
    """``fail_json`` with URL passwords and ``secrets`` stripped from the message and from string results;
    ``changed: false`` unless ``result`` says the failed step changed something (``changed=True``)."""
    hidden = list(secrets)
    result.setdefault('changed', False)
    clean = {key: redact(value, hidden) if isinstance(value, str) else value for key, value in result.items()}
    module.fail_json(msg=redact(msg, hidden), **clean)
    raise AssertionError('unreachable')  # fail_json exits; keeps type checkers and tests honest
