"""Query latency before and after a change: slower only when the median and the tail both moved."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.ledgermind.migrations.plugins.filter.latency import latency_comparison
from ansible_collections.ledgermind.migrations.plugins.filter.signoff import FAIL, PASS, judge_performance


def reading(**queries: tuple[float, float]) -> dict:
    return {"queries": [{"name": n, "p50_ms": p50, "p95_ms": p95} for n, (p50, p95) in queries.items()]}


@pytest.mark.parametrize(("before", "after", "ok"), [
    ((0.5, 0.8), (0.6, 0.9), True),
    # Outliers in the tail only (a busy machine): not slower.
    ((0.5, 0.8), (0.6, 40.0), True),
    # The median and the tail moved (a lost index): slower.
    ((0.5, 0.8), (30.0, 45.0), False),
    # Large queries: the ratio decides, not the slack.
    ((100.0, 150.0), (180.0, 290.0), True),
    ((100.0, 150.0), (250.0, 320.0), False),
])
def test_comparison(before: tuple[float, float], after: tuple[float, float], ok: bool) -> None:
    verdict = latency_comparison(reading(q=before), reading(q=after), 2.0, 10.0)
    assert verdict["ok"] is ok
    assert ("slower after the change: q" in verdict["summary"]) is not ok


def test_only_shared_queries_are_compared_and_statement_deltas_are_kept() -> None:
    before = dict(reading(a=(1, 1), b=(1, 1)), pg_stat_statements={"available": True, "statements": [
        {"queryid": "7", "calls": 10, "total_ms": 10.0, "query": "SELECT 1"}]})
    after = dict(reading(a=(1, 1)), pg_stat_statements={"available": True, "statements": [
        {"queryid": "7", "calls": 30, "total_ms": 50.0, "query": "SELECT 1"}]})
    verdict = latency_comparison(before, after)
    assert [i["name"] for i in verdict["items"]] == ["a"]
    assert verdict["statements"] == [{"query": "SELECT 1", "calls": 20, "mean_ms": 2.0}]


@pytest.mark.parametrize(("args", "words"), [
    (({}, reading(a=(1, 1))), "before reading"),
    ((reading(a=(1, 1)), reading(b=(1, 1))), "share no query"),
    ((reading(a=(1, 1)), reading(a=(1, 1)), "x"), "must be numbers"),
])
def test_wrong_inputs(args: tuple, words: str) -> None:
    with pytest.raises(AnsibleFilterError, match=words):
        latency_comparison(*args)


def test_latency_decides_the_performance_item_with_the_lock_waits_as_evidence() -> None:
    migration = {"lock_waits": {"samples": 3, "max_blocked_sessions": 0, "longest_wait_seconds": 0.1,
                                "migration_longest_wait_seconds": 0.0}, "direction": "upgrade"}
    status, evidence = judge_performance(migration, False, 1000, {"ok": False, "summary": "slower: containment"})
    assert status == FAIL and "slower: containment" in evidence and "3 lock-wait samples" in evidence
    status, _ = judge_performance(migration, False, 1000, {"ok": True, "summary": "no query slower"})
    assert status == PASS
    assert judge_performance(migration, False, 1000, {}) == judge_performance(migration, False, 1000)
