# Copyright (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one home of the collection's retry back-off (lock budgets, HTTP probes)."""

from __future__ import annotations


def backoff_delays(retries: int, first: float, maximum: float) -> list[float]:
    """Waits between tries: doubling from ``first``, capped at ``maximum``; one fewer than the tries."""
    return [min(first * (2**attempt), maximum) for attempt in range(max(retries - 1, 0))]
