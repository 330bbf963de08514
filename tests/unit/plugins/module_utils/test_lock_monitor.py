"""Folding lock-wait samples into the report's summary."""
from __future__ import annotations

from ansible_collections.ledgermind.migrations.plugins.module_utils._lock_monitor import LockWaitSummary

APP = "ledgermind-alembic-migrate"


def test_summary_separates_the_migration_from_sessions_queued_behind_it() -> None:
    summary = LockWaitSummary()
    summary.add([(10, APP, 0.4, [77], "ALTER TABLE ml_features ...")], APP)
    summary.add([(10, APP, 1.2, [77, 78], "ALTER TABLE ml_features ..."),
                 (11, "web", 0.9, [10], "SELECT * FROM ml_features"),
                 (12, "web", 0.3, [10], "SELECT * FROM ml_features")], APP)
    summary.add([], APP)
    result = summary.as_dict()
    assert result["samples"] == 3
    assert result["migration_longest_wait_seconds"] == 1.2
    assert result["blocking_pids"] == [77, 78]
    assert result["max_blocked_sessions"] == 2
    assert result["longest_wait_seconds"] == 0.9
    assert result["blocked_queries"] == ["SELECT * FROM ml_features"]


def test_blocked_queries_are_capped() -> None:
    summary = LockWaitSummary()
    summary.add([(i, "web", 0.1, [1], f"SELECT {i}") for i in range(20)], APP, max_queries=5)
    assert len(summary.as_dict()["blocked_queries"]) == 5
