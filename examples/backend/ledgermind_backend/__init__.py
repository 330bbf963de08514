"""Stand-in LedgerMind backend: the schema the tokens text[] -> jsonb runbook is applied to."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
