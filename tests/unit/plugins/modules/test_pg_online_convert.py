"""pg_online_convert's decisions as tables: where a conversion stands, what it refuses, its estimates."""
from __future__ import annotations

import typing as t

import pytest

from ansible_collections.ledgermind.migrations.plugins.module_utils import _queries as q
from ansible_collections.ledgermind.migrations.plugins.modules import pg_online_convert as m


def table(**changes: t.Any) -> dict[str, t.Any]:
    row = dict(column_type='text[]', not_null=False, has_default=False, column_privileges=False)
    row.update(changes)
    return row


@pytest.mark.parametrize(('column_type', 'target', 'shadows', 'expected'), [
    ('text[]', 'jsonb', {}, 'pending'),
    ('text[]', 'jsonb', {'jsonb': 'jsonb'}, 'in_progress'),
    ('jsonb', 'jsonb', {}, 'converted'),
    # A failed online rollback left a text[] shadow on the jsonb column: the migration removes it first.
    ('jsonb', 'jsonb', {'text[]': 'text[]'}, 'leftover'),
    ('jsonb', 'text[]', {}, 'pending'),
    ('jsonb', 'text[]', {'text[]': 'text[]'}, 'in_progress'),
    ('text[]', 'text[]', {'jsonb': 'jsonb'}, 'leftover'),
    ('text[]', 'text[]', {}, 'converted'),
])
def test_situation(column_type: str, target: str, shadows: dict[str, str], expected: str) -> None:
    assert m.situation(column_type, target, shadows) == expected


def test_nothing_refused_for_a_plain_column() -> None:
    assert m.refusals(table(), 'jsonb', [], [], None) == []


@pytest.mark.parametrize(('changes', 'words'), [
    (dict(not_null=True), 'NOT NULL'),
    (dict(has_default=True), 'default'),
    (dict(column_privileges=True), 'column-level privileges'),
    (dict(column_type='integer'), 'between text[] and jsonb'),
])
def test_refusals_name_what_would_be_lost(changes: dict[str, t.Any], words: str) -> None:
    found = m.refusals(table(**changes), 'jsonb', [], [], None)
    assert len(found) == 1 and words in found[0]


def test_dependents_are_refused_except_the_index_the_rollback_drops() -> None:
    deps = [dict(object='index ix_ml_features_tokens_gin', index_name='ix_ml_features_tokens_gin'),
            dict(object='rule _RETURN on view v_tokens', index_name=None)]
    to_text = m.refusals(table(column_type='jsonb'), 'text[]', deps, [], 'ix_ml_features_tokens_gin')
    assert len(to_text) == 1 and 'view v_tokens' in to_text[0]
    to_jsonb = m.refusals(table(), 'jsonb', deps, [], None)
    assert len(to_jsonb) == 2


def test_publications_are_refused() -> None:
    found = m.refusals(table(), 'jsonb', [], ['pub_all'], None)
    assert found and 'pub_all' in found[0]


def test_estimate_counts_batches_and_pauses() -> None:
    assert m.estimate(10001, 5000, 0.5, 0.001) == dict(batches=3, estimated_seconds=11.5)
    assert m.estimate(0, 5000, 0.0, None) == dict(batches=0, estimated_seconds=None)


def test_space_needed_is_the_table_again_plus_the_column() -> None:
    assert m.space_needed(1000, 10, 7) == dict(needed_bytes=1070, column_bytes=70)
    assert m.space_needed(1000, 10, None) == dict(needed_bytes=1000, column_bytes=0)


def test_progress_rate_and_eta() -> None:
    report = m.progress_report(400, 1000, 400, 2.0, False)
    assert report['percent'] == 40.0 and report['rate'] == 200.0 and report['eta_seconds'] == 3.0
    done = m.progress_report(1000, 900, 0, 0.0, True)
    assert done['percent'] == 100.0 and done['eta_seconds'] == 0.0 and done['rows_estimated'] == 1000
    assert m.describe_progress(report) == '400 of ~1000 rows (40.0%), 200 rows/s, ETA 3 s'


def test_shadow_columns_differ_by_direction() -> None:
    assert q.online_shadow_column('tokens', 'jsonb') != q.online_shadow_column('tokens', 'text[]')
    assert all(len(q.online_shadow_column('x' * 40, target)) <= 63 for target in q.ONLINE_TARGETS)


class LagCursor:
    """pg_stat_replication as the backfill reads it: one row per call, lag falling over time."""

    def __init__(self, lags: list[float | None], replicas: int = 1) -> None:
        self.lags, self.replicas, self.calls = list(lags), replicas, 0

    def execute(self, statement: t.Any, params: t.Any = None) -> None:
        self.calls += 1

    def fetchone(self) -> dict[str, t.Any]:
        return dict(replicas=self.replicas, lag_seconds=self.lags.pop(0))


class Conn:
    def rollback(self) -> None:
        pass


def conversion(max_lag: float) -> m.Conversion:
    conv = m.Conversion.__new__(m.Conversion)
    conv.p = dict(max_replica_lag=max_lag)
    conv.result = {}
    return conv


def test_the_backfill_waits_while_a_replica_lags(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(m.time, 'sleep', slept.append)
    cur = LagCursor([25.0, 12.0, 3.0])
    assert conversion(10).wait_for_replicas(cur, Conn()) == 2.0
    assert slept == [1.0, 1.0] and cur.calls == 3


@pytest.mark.parametrize('lags', [[None], [0.0]])
def test_no_wait_without_a_visible_lag(monkeypatch: pytest.MonkeyPatch, lags: list[float | None]) -> None:
    monkeypatch.setattr(m.time, 'sleep', lambda s: pytest.fail('slept'))
    conv = conversion(10)
    assert conv.wait_for_replicas(LagCursor(lags), Conn()) == 0.0
    assert conv.result['replicas'] == dict(count=1, lag_seconds=lags[0])


@pytest.mark.parametrize(('size', 'seconds', 'target', 'expected'), [
    (1000, 0.5, 0.2, 500),      # too slow: halved
    (150, 0.5, 0.2, 100),       # not below the smallest batch
    (1000, 0.15, 0.2, 1000),    # within the target: kept
    (250, 0.05, 0.2, 500),      # quick: doubled
    (800, 0.05, 0.2, 1000),     # but never above the configured size
    (400, 5.0, 0.0, 1000),      # no target: always the configured size
])
def test_next_batch_size_adapts_to_the_target(size: int, seconds: float, target: float, expected: int) -> None:
    assert m.next_batch_size(size, 1000, seconds, target) == expected


def test_the_smallest_batch_is_never_above_the_configured_one() -> None:
    assert m.next_batch_size(50, 50, 9.0, 0.2) == 50


def test_cheap_shadow_test_is_the_conversion_for_jsonb_and_the_reverse_for_text() -> None:
    to_jsonb = q.online_shadow_matches('jsonb', q.sql.Identifier('c'), q.sql.Identifier('s'))
    assert 'to_jsonb' in repr(to_jsonb)
    to_text = repr(q.online_shadow_matches('text[]', q.sql.Identifier('c'), q.sql.Identifier('s')))
    assert 'to_jsonb' in to_text and 'array_lower' in to_text and 'jsonb_array_elements_text' not in to_text


def test_each_call_starts_small_when_batches_adapt() -> None:
    assert m.first_batch_size(5000, 0.2) == 250 and m.first_batch_size(100, 0.2) == 100
    assert m.first_batch_size(5000, 0.0) == 5000
    sizes = [m.first_batch_size(1000, 0.2)]
    for _ in range(3):
        sizes.append(m.next_batch_size(sizes[-1], 1000, 0.01, 0.2))
    assert sizes == [250, 500, 1000, 1000]
