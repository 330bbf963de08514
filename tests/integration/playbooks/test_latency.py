"""Issue 11 section 2: "No performance degradation observed" measured, through real playbook runs.

The same warm queries run before the migration and after its validation; a query that became slower (here one
that sleeps once the column is jsonb: deterministic, whatever the machine's load) fails the run, which rolls back
automatically. An ordinary migration passes the item with the latency as its evidence.
Fixtures (pgdb, playbook) are in conftest.py.
"""
from __future__ import annotations

import json

from livewrites import assert_content, assert_failed, assert_ok, content, writing

# 50 ms once tokens is jsonb, nothing while it is text[]: "slower after the migration" on any machine.
SLOW_AFTER = [{"name": "slow_after", "sql": (
    "SELECT pg_sleep(CASE WHEN (SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
    " WHERE attrelid = 'ml_features'::regclass AND attname = 'tokens' AND NOT attisdropped) = 'jsonb'"
    " THEN 0.05 ELSE 0 END)")}]


def performance(report) -> dict:
    return next(i for i in report["items"] if i["item"] == "No performance degradation observed")


def test_a_slower_query_after_the_migration_fails_the_run_and_rolls_it_back(pgdb, playbook):
    original = pgdb.state()
    run = playbook.run("migrate_tokens.yml", "-e", json.dumps({"ledgermind_latency_queries": SLOW_AFTER}))
    assert_failed(run)
    assert "Performance degraded after the migration: slower after the change: slow_after" in run.failure_msg, \
        run.describe()
    item = performance(run.report)
    assert item["status"] == "fail" and "slow_after p50 " in item["evidence"], item
    # The runbook's "monitor and rollback if necessary": back where it started.
    assert pgdb.state() == original
    assert "Rolled back automatically" in run.failure_msg


def test_an_ordinary_migration_passes_with_the_measured_latency_as_evidence(pgdb, playbook):
    run = playbook.run("migrate_tokens.yml")
    assert_ok(run)
    item = performance(run.report)
    assert item["status"] == "pass", item
    for query in ("containment", "key_lookup", "recent_rows"):
        assert f"{query} p50 " in item["evidence"], item
    assert "lock waits:" in item["evidence"], item


def test_live_writes_through_the_rehearsal_and_the_latency_measure_pass_and_survive(pgdb, playbook):
    """The application keeps writing through the whole migrate (rehearsal on): its writes survive, the rehearsal
    (on a copy of the backup) and the latency comparison (on the live table) both pass with evidence."""
    rows = content(pgdb)
    with writing(pgdb, new_keys=range(100_000, 110_000), update_keys=range(1, 501),
                 delete_keys=range(1001, 1500)) as writer:
        run = playbook.run("migrate_tokens.yml", "-e", "ledgermind_rehearsal=true")
    assert_ok(run)
    assert min(writer.counts["insert"], writer.counts["update"], writer.counts["delete"]) > 0, writer.counts
    assert_content(pgdb, writer.expected(rows))
    assert pgdb.state()["type"] == "jsonb"
    assert performance(run.report)["status"] == "pass", performance(run.report)
    rehearsed = next(i for i in run.report["items"] if i["item"] == "Rollback plan tested")
    assert rehearsed["status"] == "pass" and "rehearsed on a scratch copy" in rehearsed["evidence"], rehearsed
    # The scratch copy is gone; the real database is the only one of this test's left.
    assert not pgdb.query("SELECT datname FROM pg_database WHERE starts_with(datname, %s)",
                          (pgdb.name + "_lm_rehearsal_",))
