"""The counting pass evaluates the column's jsonb form once per row (OFFSET 0 fence); the sample
and offending-key queries stay unfenced so ORDER BY key LIMIT n can use the key's index."""
from __future__ import annotations

from ansible_collections.ledgermind.migrations.plugins.module_utils import _queries as q


def _text(composed) -> str:
    return repr(composed)


def test_counting_pass_is_fenced_samples_are_not():
    args = ("public", "ml_features", "txn_id", "tokens", "array")
    assert "OFFSET 0" in _text(q.integrity_counts_sql(*args))
    assert "OFFSET 0" not in _text(q.sample_rows_sql(*args))
    assert "OFFSET 0" not in _text(q.sample_keys_sql(*args))
    assert "OFFSET 0" not in _text(q.offending_keys_sql(*args, "invalid_types"))
