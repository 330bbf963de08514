"""pg_query_latency's arithmetic: nearest-rank percentiles over the measured runs."""
from __future__ import annotations

import pytest

from ansible_collections.ledgermind.migrations.plugins.modules import pg_query_latency as m


def test_nearest_rank_percentiles() -> None:
    runs = [float(v) for v in range(1, 21)]  # 1..20 ms
    assert m.percentile(runs, 0.5) == 10.0
    assert m.percentile(runs, 0.95) == 19.0  # one outlier of twenty never sets p95
    assert m.percentile([3.0], 0.95) == 3.0
    with pytest.raises(ValueError):
        m.percentile([], 0.5)


def test_summary_rounds_and_counts() -> None:
    summary = m.summarize('q', 'SELECT 1', [1.23456, 2.0, 3.0], 1)
    assert summary == dict(name='q', sql='SELECT 1', runs=3, rows=1, p50_ms=2.0, p95_ms=3.0, max_ms=3.0)
