"""pg_jsonb_integrity's fingerprint_sums, snapshot and proof, through main() on a scripted connection."""
from __future__ import annotations

import typing as t

import pytest

from ansible_collections.ledgermind.migrations.plugins.module_utils import _queries as q
from ansible_collections.ledgermind.migrations.plugins.modules import pg_jsonb_integrity

BASE = dict(database_url='postgresql://u@h/db', table='ml_features', column='tokens', sample_rows=0)
H1, H2 = 2**66 + 5, -(2**65)  # beyond 64 bits and JSON's exact integers
COUNTS = dict(total=10, nulls=0, empty=0, invalid_types=0, element_type_violations=0, null_elements=0,
              roundtrip_violations=0, hash1=H1, hash2=H2)


def script(isolation: str = 'repeatable read', written: dict[str, t.Any] | None = None,
           log_present: bool = True, trigger_run: str | None = 'run-1') -> list[tuple[str, t.Any]]:
    trig = [] if trigger_run is None else [dict(args=f'{trigger_run}\x00tokens\x00'.encode(), enabled='O')]
    return [
        ('c.relkind IN', [dict(schema_exists=True, relid=42, relkind='r')]),
        ('pg_catalog.format_type(a.atttypid, a.atttypmod) AS formatted_type',
         [dict(data_type='ARRAY', udt_name='_text', formatted_type='text[]', column_name='tokens', is_nullable=True)]),
        ('i.indisprimary', [dict(column_name='txn_id')]),
        ('AS roundtrip_violations', [COUNTS]),
        ('pg_current_snapshot', [dict(snapshot='100:105:101', isolation=isolation)]),
        ('.write_log\', %(hs)s', [dict(present=log_present)]),
        ('FROM pg_catalog.pg_trigger AS t', trig),
        ('WITH written AS', [written or dict(rows_written=0, old_rows=0, old_hash1=0, old_hash2=0, current_rows=0,
                                             current_hash1=0, current_hash2=0, written_sample_keys=[])]),
    ]


def test_sums_and_snapshot_without_baseline(run_module) -> None:
    failed, result, conn = run_module(pg_jsonb_integrity.main, BASE, script())
    assert not failed and 'proof' not in result
    assert result['fingerprint_sums'] == dict(total=10, hash1=str(H1), hash2=str(H2))
    assert result['snapshot'] == '100:105:101'
    assert result['fingerprint'] == q.fingerprint(10, (H1, H2))
    assert not conn.ran('write_log')


def test_proof_from_the_write_log_in_the_same_transaction(run_module) -> None:
    # Baseline (10, H1 - 7 + 3, H2 - 8 + 4): one row written since, old hashes (7, 8), now hashing (3, 4).
    baseline = dict(total=10, hash1=str(H1 - 3 + 7), hash2=H2 - 4 + 8, snapshot='90:95:91')
    written = dict(rows_written=1, old_rows=1, old_hash1=7, old_hash2=8, current_rows=1, current_hash1=3,
                   current_hash2=4, written_sample_keys=['4'])
    failed, result, conn = run_module(pg_jsonb_integrity.main, dict(BASE, baseline=baseline, write_log_run_id='run-1',
                                                                    sample_keys=[3, 4]),
                                      script(written=written) + [('ORDER BY s.k', [dict(key=3, value=['a']),
                                                                                    dict(key=4, value=['b'])])])
    assert not failed, result
    assert result['proof'] == dict(
        method='untouched_rows', rows_written=1, rows_compared=9, matches=True, write_log_active=True,
        written_sample_keys=['4'],
        baseline_fingerprint=q.fingerprint(10, (H1 - 3 + 7, H2 - 4 + 8)),
        fingerprint_untouched_before=q.fingerprint(9, (H1 - 3, H2 - 4)),
        fingerprint_untouched_after=q.fingerprint(9, (H1 - 3, H2 - 4)))
    (query, params), = conn.ran('WITH written AS')
    assert params['run_id'] == 'run-1' and params['baseline_snapshot'] == '90:95:91'
    assert params['key_name'] == 'txn_id' and (params['seed1'], params['seed2']) == q.FINGERPRINT_SEEDS
    assert params['sample_keys'] == ['3', '4']
    # Every query ran on the one read-only REPEATABLE READ connection.
    assert conn.session['isolation_level'] == 'REPEATABLE READ' and conn.session['readonly'] is True


def test_full_proof_without_write_log_and_mismatch_reported_not_failed(run_module) -> None:
    baseline = dict(total=10, hash1=H1, hash2=str(H2 + 1))
    failed, result, conn = run_module(pg_jsonb_integrity.main, dict(BASE, baseline=baseline), script())
    assert not failed
    assert (result['proof']['method'], result['proof']['rows_written'], result['proof']['matches'],
            result['proof']['write_log_active']) == ('full', None, False, None)
    assert result['proof']['written_sample_keys'] == []
    assert not conn.ran('write_log')


@pytest.mark.parametrize(('args', 'scripted', 'message'), [
    (dict(baseline=dict(total=1, hash1='1', hash2='2'), write_log_run_id='run-1'), {},
     'baseline.snapshot is required with write_log_run_id'),
    (dict(baseline=dict(total=1, hash1='x', hash2='2')), {}, 'baseline.hash1 must be a whole number'),
    (dict(write_log_run_id='run-1'), {}, 'write_log_run_id'),
    (dict(baseline=dict(total=1, hash1='1', hash2='2', snapshot='1:2:'), write_log_run_id='run-1'),
     dict(log_present=False), 'There is no write log (ledgermind_migrations.write_log) to read for run run-1'),
    (dict(), dict(isolation='read committed'), 'not repeatable read'),
])
def test_refusals(run_module, args: dict[str, t.Any], scripted: dict[str, t.Any], message: str) -> None:
    failed, result, _ = run_module(pg_jsonb_integrity.main, dict(BASE, **args), script(**scripted))
    assert failed and message in result['msg']


def test_write_log_of_another_run_is_not_active(run_module) -> None:
    baseline = dict(total=10, hash1=H1, hash2=H2, snapshot='1:2:')
    failed, result, _ = run_module(pg_jsonb_integrity.main, dict(BASE, baseline=baseline, write_log_run_id='run-1'),
                                   script(trigger_run='run-0'))
    assert not failed and result['proof']['write_log_active'] is False and result['proof']['matches'] is True
