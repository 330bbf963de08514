"""The write log's SQL and the untouched-rows proof (_queries.untouched_proof), without a database.

The proof's algebra is checked against a model of the table and the trigger: random histories of
committed and aborted transactions (inserts, updates, deletes, re-inserts, key changes, rolled-back
savepoints), the baseline taken at a random point, K chosen as written_rows_sql chooses it. A correct
history must prove, and any write made without the log to a row nobody else wrote must not.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
import typing as t
from dataclasses import dataclass, field

import pytest

from ansible_collections.ledgermind.migrations.plugins.module_utils import _queries as q

# --- a model of the table, the trigger and the scan --------------------------------------------


def _hash(line: str, seed: int) -> int:
    """A signed 64-bit hash standing in for hashtextextended (the algebra does not care which)."""
    digest = hashlib.blake2b(f'{seed}|{line}'.encode(), digest_size=8).digest()
    return int.from_bytes(digest, 'big', signed=True)


def _line(key: int, value: list[str | None] | None) -> str:
    """The scan's line: key::text || ':' || coalesce(value-as-jsonb::text, 'NULL')."""
    return f"{key}:{'NULL' if value is None else json.dumps(value)}"


def row_sums(rows: dict[int, t.Any]) -> q.Sums:
    lines = [_line(k, v) for k, v in rows.items()]
    return q.Sums(len(lines), sum(_hash(li, q.FINGERPRINT_SEEDS[0]) for li in lines),
                  sum(_hash(li, q.FINGERPRINT_SEEDS[1]) for li in lines))


@dataclass
class Entry:
    seq: int
    key: int
    had_old: bool
    old_hash1: int | None
    old_hash2: int | None
    xid: int


@dataclass
class World:
    rows: dict[int, t.Any]
    log: list[Entry] = field(default_factory=list)
    committed: list[int] = field(default_factory=list)  # xids in commit order
    seq: int = 0
    next_xid: int = 100

    def _entry(self, key: int, xid: int, old: t.Any = None, had_old: bool = False) -> Entry:
        self.seq += 1
        line = _line(key, old)
        return Entry(self.seq, key, had_old, _hash(line, q.FINGERPRINT_SEEDS[0]) if had_old else None,
                     _hash(line, q.FINGERPRINT_SEEDS[1]) if had_old else None, xid)

    def transaction(self, ops: list[tuple[t.Any, ...]], commit: bool = True, logged: bool = True) -> None:
        """Run ops as one transaction, as the trigger logs them; an abort leaves neither rows nor entries.

        Per key, writes are serialised by locks, so applying a transaction at its commit point gives
        each write the old row it saw.
        """
        xid = self.next_xid
        self.next_xid += 1
        rows = dict(self.rows)
        entries: list[Entry] = []

        def log(key: int, old: t.Any = None, had_old: bool = False) -> None:
            if logged:
                entries.append(self._entry(key, xid, old, had_old))

        for op in ops:
            kind, key = op[0], op[1]
            if kind == 'insert' and key not in rows:
                rows[key] = op[2]
                log(key)
            elif kind == 'update' and key in rows:
                log(key, rows[key], True)
                rows[key] = op[2]
            elif kind == 'delete' and key in rows:
                log(key, rows.pop(key), True)
            elif kind == 'rekey' and key in rows and op[2] not in rows:
                log(key, rows[key], True)
                rows[op[2]] = rows.pop(key)
                log(op[2])
            elif kind == 'savepoint_rolled_back':
                pass  # its writes and entries vanish with the savepoint
        if commit:
            self.rows = rows
            self.log.extend(entries)
            self.committed.append(xid)
        else:
            self.seq += 0  # sequence values taken by an abort are simply skipped

    def snapshot(self) -> set[int]:
        """The xids a snapshot taken now sees as committed."""
        return set(self.committed)


def written(world: World, baseline_visible: set[int], now_visible: set[int]) -> dict[str, int]:
    """What written_rows_sql computes: K, the first entry per key, and the current rows of K."""
    first: dict[int, Entry] = {}
    for entry in sorted(world.log, key=lambda e: e.seq):
        if entry.xid in now_visible and entry.xid not in baseline_visible and entry.key not in first:
            first[entry.key] = entry
    olds = [e for e in first.values() if e.had_old]
    current = row_sums({k: v for k, v in world.rows.items() if k in first})
    return dict(rows_written=len(first), old_rows=len(olds),
                old_hash1=sum(e.old_hash1 or 0 for e in olds), old_hash2=sum(e.old_hash2 or 0 for e in olds),
                current_rows=current.total, current_hash1=current.hash1, current_hash2=current.hash2)


def random_ops(rng: random.Random, world: World, fresh: t.Iterator[int]) -> list[tuple[t.Any, ...]]:
    ops: list[tuple[t.Any, ...]] = []
    for _ in range(rng.randint(1, 4)):
        existing = sorted(world.rows) or [1]
        pick = rng.random()
        value = rng.choice([None, [], ['a'], ['b', None], [f'v{rng.randint(0, 9)}']])
        if pick < 0.45:
            ops.append(('update', rng.choice(existing), value))
        elif pick < 0.6:
            ops.append(('delete', rng.choice(existing)))
        elif pick < 0.8:
            ops.append(('insert', next(fresh), value))
        elif pick < 0.9:
            ops.append(('rekey', rng.choice(existing), next(fresh)))
        else:
            ops.append(('savepoint_rolled_back', rng.choice(existing)))
    return ops


def history(seed: int) -> tuple[World, q.Sums, set[int], random.Random, t.Iterator[int]]:
    """A world with writes before and after a baseline; returns it with the baseline's sums and snapshot."""
    rng = random.Random(seed)
    world = World(rows={k: [f't{k}'] if k % 7 else None for k in range(1, 41)})
    fresh = iter(range(1000, 10**6))
    for _ in range(rng.randint(0, 10)):
        world.transaction(random_ops(rng, world, fresh), commit=rng.random() > 0.2)
    baseline, visible = row_sums(world.rows), world.snapshot()
    for _ in range(rng.randint(0, 25)):
        world.transaction(random_ops(rng, world, fresh), commit=rng.random() > 0.2)
    return world, baseline, visible, rng, fresh


def prove(world: World, baseline: q.Sums, visible: set[int]) -> dict[str, t.Any]:
    now = world.snapshot()
    return q.untouched_proof(baseline, row_sums(world.rows), written(world, visible, now))


# --- the algebra -------------------------------------------------------------------------------

@pytest.mark.parametrize('seed', range(300))
def test_logged_histories_prove_and_unlogged_changes_do_not(seed: int) -> None:
    world, baseline, visible, rng, fresh = history(seed)
    proof = prove(world, baseline, visible)
    assert proof['matches'] is True, proof
    assert proof['rows_compared'] == len(set(world.rows) - {e.key for e in world.log if e.xid not in visible})
    assert proof['method'] == ('untouched_rows' if proof['rows_written'] else 'full')

    written_keys = {e.key for e in world.log if e.xid not in visible}
    untouched = sorted(set(world.rows) - written_keys)
    if not untouched:
        return
    # A broken conversion: one untouched row's value changed by a session the log does not see.
    key = rng.choice(untouched)
    broken = World(**{**world.__dict__, 'rows': dict(world.rows), 'log': list(world.log)})
    broken.transaction([('update', key, ['broken', str(world.rows[key])])], logged=False)
    assert prove(broken, baseline, visible)['matches'] is False
    # A row lost, or one appearing, without the log.
    lost = World(**{**world.__dict__, 'rows': dict(world.rows), 'log': list(world.log)})
    lost.transaction([('delete', key)], logged=False)
    assert prove(lost, baseline, visible)['matches'] is False
    extra = World(**{**world.__dict__, 'rows': dict(world.rows), 'log': list(world.log)})
    extra.transaction([('insert', next(fresh), ['ghost'])], logged=False)
    assert prove(extra, baseline, visible)['matches'] is False


def test_a_broken_row_written_afterwards_is_caught_by_its_old_hash() -> None:
    """The conversion broke row 5; the application then updated it: the logged old row is the broken one."""
    world = World(rows={k: [f't{k}'] for k in range(1, 11)})
    baseline, visible = row_sums(world.rows), world.snapshot()
    world.transaction([('update', 5, ['broken'])], logged=False)
    world.transaction([('update', 5, ['new'])])
    proof = prove(world, baseline, visible)
    assert (proof['rows_written'], proof['matches']) == (1, False)


def test_writes_before_the_baseline_are_not_in_k() -> None:
    world = World(rows={k: [f't{k}'] for k in range(1, 11)})
    world.transaction([('update', 1, ['before']), ('delete', 2), ('insert', 20, [])])
    baseline, visible = row_sums(world.rows), world.snapshot()
    proof = prove(world, baseline, visible)
    whole = baseline.fingerprint()
    assert proof == dict(method='full', rows_written=0, rows_compared=10, matches=True, baseline_fingerprint=whole,
                         fingerprint_untouched_before=whole, fingerprint_untouched_after=whole)


def test_delete_then_reinsert_and_key_change_compare_the_rest() -> None:
    world = World(rows={k: [f't{k}'] for k in range(1, 11)})
    baseline, visible = row_sums(world.rows), world.snapshot()
    world.transaction([('delete', 3)])
    world.transaction([('insert', 3, ['again'])])          # K: 3, first entry the delete (had_old)
    world.transaction([('rekey', 4, 40)])                 # K: 4 (had_old) and 40 (no old row)
    world.transaction([('insert', 50, None)], commit=False)  # aborted: nothing
    proof = prove(world, baseline, visible)
    assert (proof['method'], proof['rows_written'], proof['rows_compared'], proof['matches']) == \
        ('untouched_rows', 3, 8, True)
    assert proof['fingerprint_untouched_before'] == proof['fingerprint_untouched_after'] != \
        proof['baseline_fingerprint']


def test_a_row_the_application_wrote_is_not_compared() -> None:
    """The documented limit: a key in K is left out, so a change to it after its first write goes unseen."""
    world = World(rows={k: [f't{k}'] for k in range(1, 11)})
    baseline, visible = row_sums(world.rows), world.snapshot()
    world.transaction([('update', 7, ['app'])])
    world.transaction([('update', 7, ['broken after the app wrote'])], logged=False)
    assert prove(world, baseline, visible)['matches'] is True


@pytest.mark.parametrize(('written', 'method', 'rows_written', 'compared', 'matches'), [
    (None, 'full', None, 10, True),
    (dict(rows_written=0, old_rows=0, old_hash1=0, old_hash2=0, current_rows=0, current_hash1=0, current_hash2=0),
     'full', 0, 10, True),
    (dict(rows_written=2, old_rows=1, old_hash1=5, old_hash2=6, current_rows=2, current_hash1=9, current_hash2=9),
     'untouched_rows', 2, 9, False),
    # baseline (10, 100, 200) minus one old row (1, 30, 40) == current (11, 125, 165) minus two rows (2, 55, 5)
    (dict(rows_written=2, old_rows=1, old_hash1=30, old_hash2=40, current_rows=2, current_hash1=55, current_hash2=5),
     'untouched_rows', 2, 9, True),
])
def test_untouched_proof_arithmetic(written: dict[str, int] | None, method: str, rows_written: int | None,
                                    compared: int, matches: bool) -> None:
    current = q.Sums(10, 100, 200) if written is None or not written['rows_written'] else q.Sums(11, 125, 165)
    proof = q.untouched_proof(q.Sums(10, 100, 200), current, written)
    assert (proof['method'], proof['rows_written'], proof['rows_compared'], proof['matches']) == \
        (method, rows_written, compared, matches)
    assert proof['baseline_fingerprint'] == q.fingerprint(10, (100, 200))


def test_sums_are_exact_beyond_64_bits() -> None:
    big = q.Sums(3, 2**70 + 1, -(2**70))
    assert (big - q.Sums(1, 2**70, 1)) == q.Sums(2, 1, -(2**70) - 1)
    assert big.as_json() == dict(total=3, hash1=str(2**70 + 1), hash2=str(-(2**70)))
    assert json.loads(json.dumps(big.as_json()))['hash1'] == '1180591620717411303425'
    assert big.fingerprint() == q.fingerprint(3, (2**70 + 1, -(2**70)))


# --- baseline option ---------------------------------------------------------------------------

@pytest.mark.parametrize(('baseline', 'need', 'expected'), [
    (dict(total=3, hash1='-12', hash2='34', snapshot='10:12:10'), True, (q.Sums(3, -12, 34), '10:12:10')),
    (dict(total=3, hash1=-12, hash2=34, snapshot=' 10:12: '), True, (q.Sums(3, -12, 34), '10:12:')),
    (dict(total=0, hash1='0', hash2='0'), False, (q.Sums(0, 0, 0), None)),
    (dict(total=1, hash1='+5', hash2='123456789012345678901234567890', snapshot='7:9:7,8'), False,
     (q.Sums(1, 5, 123456789012345678901234567890), '7:9:7,8')),
])
def test_parse_baseline(baseline: dict[str, t.Any], need: bool, expected: tuple[q.Sums, str | None]) -> None:
    assert q.parse_baseline(baseline, need) == expected


@pytest.mark.parametrize(('baseline', 'need', 'message'), [
    (dict(total=1, hash1='1', hash2='2'), True, 'baseline.snapshot is required with write_log_run_id'),
    (dict(total=1, hash1='1.5', hash2='2'), False, 'baseline.hash1 must be a whole number'),
    (dict(total=1, hash1=True, hash2='2'), False, 'baseline.hash1 must be a whole number'),
    (dict(total=1, hash1='1', hash2=None), False, 'baseline.hash2 must be a whole number'),
    (dict(total=-1, hash1='1', hash2='2'), False, 'baseline.total must not be negative'),
    (dict(total=1, hash1='1', hash2='2', snapshot='10:12:x'), True, 'baseline.snapshot must be pg_current_snapshot'),
    (dict(total=1, hash1='1', hash2='2', snapshot="1:2:3'; DROP"), True, 'baseline.snapshot must be'),
])
def test_parse_baseline_refuses(baseline: dict[str, t.Any], need: bool, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        q.parse_baseline(baseline, need)


# --- the trigger and its SQL -------------------------------------------------------------------

@pytest.mark.parametrize(('raw', 'expected'), [
    (b'run-1\x00tokens\x00', ['run-1', 'tokens']),
    (memoryview(b'r\xc3\xa9\x00col umn\x00'), ['ré', 'col umn']),
    (b'', []),
    (None, []),
])
def test_trigger_args(raw: t.Any, expected: list[str]) -> None:
    assert q.trigger_args(raw) == expected


def test_function_name_per_table() -> None:
    name = q.write_log_function_name('public', 'ml_features')
    assert name == q.write_log_function_name('public', 'ml_features')
    assert re.fullmatch(r'write_log_[0-9a-f]{16}', name)
    assert len({name, q.write_log_function_name('other', 'ml_features'),
                q.write_log_function_name('public', 'ml_features2'), q.write_log_function_name('public.ml', 'features'),
                q.write_log_function_name('public', 'ml.features')}) == 5


def _text(query: t.Any) -> str:
    """Readable text of a psycopg2.sql composition, without a connection (literals as Python reprs)."""
    if isinstance(query, str):
        return query
    if isinstance(query, q.sql.Composed):
        return ''.join(_text(part) for part in query.seq)
    if isinstance(query, q.sql.SQL):
        return query.string
    if isinstance(query, q.sql.Identifier):
        return '.'.join(f'"{s}"' for s in query.strings)
    if isinstance(query, q.sql.Literal):
        return repr(query.wrapped)
    raise AssertionError(f'unexpected part {query!r}')


def test_body_never_reads_the_column_through_a_cached_typed_plan() -> None:
    body = q._WRITE_LOG_BODY
    assert 'to_jsonb(OLD) -> TG_ARGV[1]' in body
    # The only reference to a column by name is the key's; the value column is an argument.
    assert set(re.findall(r'\b(?:OLD|NEW)\.(\{key\}|\w+)', body)) == {'{key}'}
    assert "EXECUTE format('SELECT ($1).%I IS NULL', TG_ARGV[1])" in body
    # The line is the scan's: key::text || ':' || coalesce(value::text, 'NULL'), hashed with both seeds.
    assert "line := OLD.{key}::text || ':' || coalesce(v::text, 'NULL');" in body
    assert q._LINE == "{key}::text || ':' || coalesce(({value})::text, 'NULL')"
    rendered = _text(q.write_log_function_body('ledgermind_migrations', 'txn_id'))
    assert 'OLD."txn_id"::text' in rendered and 'INSERT INTO "ledgermind_migrations".write_log' in rendered
    assert f'hashtextextended(line, {q.FINGERPRINT_SEEDS[0]}), hashtextextended(line, {q.FINGERPRINT_SEEDS[1]})' \
        in rendered


def test_trigger_is_after_row_with_the_session_switch() -> None:
    text = _text(q.create_write_log_trigger_sql('public', 'ml_features', 'hs', 'write_log_x', 'run-1', 'tokens'))
    assert 'AFTER INSERT OR UPDATE OR DELETE ON ' in text and 'FOR EACH ROW' in text
    assert "WHEN (pg_catalog.current_setting(" in text and "IS DISTINCT FROM 'off')" in text
    assert "current_setting('ledgermind.write_log', true)" in text
    assert 'EXECUTE FUNCTION "hs"."write_log_x"(\'run-1\', \'tokens\')' in text
    function = _text(q.create_write_log_function_sql('hs', 'write_log_x'))
    assert 'SECURITY DEFINER' in function and 'SET search_path = pg_catalog, pg_temp' in function
    assert '%(body)s' in function


def test_written_rows_reads_first_entries_of_transactions_the_baseline_did_not_see() -> None:
    text = _text(q.written_rows_sql('hs', 'public', 'ml_features', 'txn_id', 'tokens', 'text_array'))
    assert 'SELECT DISTINCT ON (w.key)' in text and 'ORDER BY w.key, w.seq' in text
    assert 'NOT pg_catalog.pg_visible_in_snapshot(w.xid, %(baseline_snapshot)s::pg_catalog.pg_snapshot)' in text
    assert 'w.run_id = %(run_id)s' in text and 'FILTER (WHERE had_old)' in text
    assert 'unnest(%(sample_keys)s::text[]) WITH ORDINALITY' in text and 'AS written_sample_keys' in text
    # The current rows' lines are the counting pass's, for either kind.
    for kind in ('text_array', 'jsonb', 'json'):
        scan = _text(q.integrity_counts_sql('public', 'ml_features', 'txn_id', 'tokens', kind))
        line = _text(q.sql.SQL(q._LINE).format(key=q.sql.Identifier('txn_id'),
                                               value=q._value_expr(kind, q.sql.Identifier('tokens'))))
        assert line in scan
        assert line in _text(q.written_rows_sql('hs', 'public', 'ml_features', 'txn_id', 'tokens', kind))
