# Copyright (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one home of password redaction: URLs, ``password=`` pairs and known secret values."""

from __future__ import annotations

import re
import typing as t

MASK = '********'
_URL_PASSWORD = re.compile(r'(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?P<tail>@)', re.I)
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|\S+)", re.I)


def redact_url(text: str) -> str:
    """Replace the password of any ``scheme://user:password@host`` URL or ``password=`` pair."""
    text = _URL_PASSWORD.sub(lambda m: m.group('head') + MASK + m.group('tail'), text)
    return _KV_PASSWORD.sub(lambda m: m.group('head') + MASK, text)


def redact(text: str, secrets: t.Iterable[str | None] = ()) -> str:
    """Strip URL passwords and every known secret (longest first) from ``text``."""
    text = redact_url(text)
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
