"""The sign-off's judgement: every item's status and evidence, and the verdict, for migrate and rollback runs."""
from __future__ import annotations

import typing as t

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.ledgermind.migrations.plugins.filter import signoff as s

BEFORE = '20251109_add_user_name_picture'
AFTER = '502d44cd70ab'
RUNNING = f'Running upgrade {BEFORE} -> {AFTER}, convert_ml_features_tokens_to_jsonb'
# A multi-line message, as pg_dump or compose print them: every line must reach the report.
ENOSPC = ('pg_dump failed (exit 1): pg_dump: error: could not write to output file: No space left on device\n'
          'pg_dump: detail: /var/backups/ledgermind is full (0 bytes free)')
NO_ENGINE = 'No Docker engine answers on unix:///var/run/docker.sock.\nInstall docker.io or set DOCKER_HOST.'

PREFLIGHT = {'udt_name': '_text', 'total': 2000, 'nulls': 3, 'empty': 2, 'fingerprint': 'f' * 32, 'pending': True,
             'refusals': []}
BACKUP = {'failed': False, 'path': '/var/backups/ledgermind/db_ml_features.dump', 'size_bytes': 140213,
          'sha256': 'a' * 64, 'verified': True, 'check_mode': False}
LOCK_WAITS = {'samples': 12, 'max_blocked_sessions': 1, 'longest_wait_seconds': 0.4,
              'migration_longest_wait_seconds': 0.2, 'blocking_pids': []}
MIGRATION = {'changed': True, 'current_before': BEFORE, 'current_after': AFTER, 'revision': AFTER,
             'direction': 'upgrade', 'pending': [AFTER], 'output': [RUNNING], 'attempts': [{'rc': 0}],
             'duration_seconds': 3.5, 'lock_waits': LOCK_WAITS}
CHECKS = [{'item': 'Column type is jsonb', 'passed': True, 'evidence': 'data_type=jsonb, udt_name=jsonb'},
          {'item': 'Sample rows round-trip unchanged ({a,b} -> ["a","b"])', 'passed': True,
           'evidence': '5 of 5 sample rows identical'}]
DEPLOY = {'ok': True, 'evidence': 'compose v2: backend runs ledgermind-backend:json'}
SMOKE = {'ok': True, 'evidence': 'chat (stub mode) | pass | content: hi; ready | pass | ok=True'}
ROLLBACK = {'ok': True, 'summary': f'Rolled back to {BEFORE}: Revision is {BEFORE} = pass', 'restore_requested': False,
            'restored_from': ''}

# What a real migrate run records when everything passes.
MIGRATE_RUN: dict[str, t.Any] = {
    'kind': 'migrate', 'check_mode': False, 'preflight': PREFLIGHT, 'backup': BACKUP, 'migration': MIGRATION,
    'validation': CHECKS, 'deploy': DEPLOY, 'smoke': SMOKE, 'rollback': {}, 'failure': {}, 'lock_timeout_ms': 3000,
    'host': 'db1', 'deployed_by': ' alice\n', 'awx_job_id': None, 'date': '2026-12-01T10:00:00Z',
    'finished': '2026-12-01T10:01:00Z', 'notes': 'staging rehearsal',
}
# The same migration in check mode: pg_backup_archive names the archive it would write and verifies nothing,
# alembic_migrate says it would upgrade (current_after unchanged, nothing ran), validation did not run.
CHECK_RUN: dict[str, t.Any] = dict(
    MIGRATE_RUN, check_mode=True,
    backup={'path': BACKUP['path'], 'size_bytes': None, 'sha256': None, 'verified': False, 'check_mode': True},
    migration=dict(MIGRATION, current_after=BEFORE, output=[], attempts=[], lock_waits={}, duration_seconds=0.0),
    validation=[], deploy={'ok': True, 'evidence': 'check mode: nothing deployed; compose v2: backend runs x'},
    smoke={'ok': True, 'evidence': 'check mode: nothing probed'})
DOWNGRADE = dict(MIGRATION, current_before=AFTER, current_after=BEFORE, revision=BEFORE, direction='downgrade',
                 output=[f'Running downgrade {AFTER} -> {BEFORE}'])
ROLLBACK_RUN: dict[str, t.Any] = {
    'kind': 'rollback', 'check_mode': False, 'migration': DOWNGRADE, 'rollback': ROLLBACK, 'deploy': DEPLOY,
    'smoke': SMOKE, 'failure': {}, 'restore_requested': False, 'host': 'db1',
}


def run(base: dict[str, t.Any], **changes: t.Any) -> dict[str, t.Any]:
    return s.signoff(dict(base, **changes))


def item(report: dict[str, t.Any], name: str) -> dict[str, str]:
    (found,) = [i for i in report['items'] if i['item'] == name]
    return found


def failure(msg: str, phase: str | None = None, **extra: t.Any) -> dict[str, t.Any]:
    return dict({'task': 'Some task', 'msg': msg}, **({'phase': phase} if phase else {}), **extra)


# --- every item, every status -------------------------------------------------------------------

MIGRATE_CASES = [
    # Pre-flight
    (s.PREFLIGHT, {}, 'pass', '_text 2000 rows (3 NULL, 2 empty), fingerprint ' + 'f' * 32),
    (s.PREFLIGHT, {'preflight': dict(PREFLIGHT, refusals=['2 row(s) would not survive', 'keys: 7, 1234'])},
     'fail', 'refused: 2 row(s) would not survive; keys: 7, 1234'),
    (s.PREFLIGHT, {'preflight': {}, 'failure': failure('could not connect\nto server', 'preflight')},
     'fail', "failed at 'Some task': could not connect\nto server"),
    (s.PREFLIGHT, {'preflight': {}}, 'skipped', 'not run'),
    # Backup
    (s.BACKUP, {}, 'pass', f"{BACKUP['path']} (140213 bytes, sha256 {'a' * 64})"),
    (s.BACKUP, {'backup': dict(BACKUP, verified=False)}, 'fail', 'not verified'),
    (s.BACKUP, {'backup': {'failed': True, 'reason': ENOSPC}}, 'fail', ENOSPC),
    (s.BACKUP, {'backup': {'failed': 'True', 'reason': 'retention failed', 'path': BACKUP['path'], 'verified': True}},
     'fail', f"retention failed (the archive {BACKUP['path']} was written and verified before that)"),
    (s.BACKUP, {'backup': {}, 'failure': failure(ENOSPC, 'backup')}, 'fail', ENOSPC),
    (s.BACKUP, {'backup': {}, 'failure': failure(ENOSPC, tags=['backup'])}, 'fail', ENOSPC),
    (s.BACKUP, {'backup': {}, 'preflight': dict(PREFLIGHT, pending=False)}, 'skipped', 'not needed'),
    (s.BACKUP, {'backup': {}}, 'skipped', 'no backup taken in this run'),
    # Migration
    (s.MIGRATION, {}, 'pass', RUNNING + ' (1 try)'),
    (s.MIGRATION, {'migration': dict(MIGRATION, output=[], direction='none', current_before=AFTER, attempts=[])},
     'pass', f'already at {AFTER}, nothing ran'),
    (s.MIGRATION, {'migration': dict(MIGRATION, failed=True, msg='alembic upgrade failed: gave up\nafter 2 tries',
                                     attempts=[{}, {}])},
     'fail', 'alembic upgrade failed: gave up\nafter 2 tries (2 tries)'),
    (s.MIGRATION, {'migration': {}, 'failure': failure('Alembic not found', 'migrate')}, 'fail', 'Alembic not found'),
    (s.MIGRATION, {'migration': {}}, 'skipped', 'not run'),
    (s.MIGRATION, {'migration': {'skipped': True}}, 'skipped', 'not run'),
    # Validation: rendered as each check says, its evidence shown when it failed.
    (s.VALIDATION, {}, 'pass',
     'Column type is jsonb: PASS; Sample rows round-trip unchanged ({a,b} -> ["a","b"]): PASS'),
    (s.VALIDATION, {'validation': [CHECKS[0], dict(CHECKS[1], passed=False)]},
     'fail', 'Sample rows round-trip unchanged ({a,b} -> ["a","b"]): FAIL (5 of 5 sample rows identical)'),
    (s.VALIDATION, {'validation': [dict(CHECKS[0], passed='False')]}, 'fail', 'Column type is jsonb: FAIL'),
    (s.VALIDATION, {'validation': [], 'failure': failure('column tokens\ndoes not exist', 'validate')},
     'fail', 'column tokens\ndoes not exist'),
    (s.VALIDATION, {'validation': []}, 'skipped', 'not run'),
    # Deploy and smoke: a phase that failed before recording its report is a failure, with its whole message.
    (s.DEPLOY, {}, 'pass', DEPLOY['evidence']),
    (s.DEPLOY, {'deploy': {'ok': False, 'evidence': 'ready: NO: 503'}}, 'fail', 'ready: NO: 503'),
    (s.DEPLOY, {'deploy': {}, 'failure': failure(NO_ENGINE, 'deploy')}, 'fail', NO_ENGINE),
    (s.DEPLOY, {'deploy': {}, 'failure': failure(NO_ENGINE, tags=['always', 'deploy'])}, 'fail', NO_ENGINE),
    (s.DEPLOY, {'deploy': {}}, 'skipped', 'deploy phase not run'),
    (s.DEPLOY, {'deploy': {}, 'failure': failure('refused', 'preflight')}, 'skipped', 'deploy phase not run'),
    (s.SMOKE, {}, 'pass', SMOKE['evidence']),
    (s.SMOKE, {'smoke': {'ok': 'False', 'evidence': 'ready | FAIL | 503'}}, 'fail', 'ready | FAIL | 503'),
    (s.SMOKE, {'smoke': {}, 'failure': failure('connection refused', 'smoke')}, 'fail', 'connection refused'),
    (s.SMOKE, {'smoke': {}}, 'skipped', 'smoke phase not run'),
    # Performance: sessions queued behind the migration within the lock timeout plus 1 s.
    (s.PERFORMANCE, {}, 'pass', '12 lock-wait samples; at most 1 sessions queued behind the migration'),
    (s.PERFORMANCE, {'migration': dict(MIGRATION, lock_waits=dict(LOCK_WAITS, blocking_pids=[4242, 4343]))},
     'pass', 'blocked by pids 4242,4343'),
    (s.PERFORMANCE, {'migration': dict(MIGRATION, lock_waits=dict(LOCK_WAITS, longest_wait_seconds=4.5))},
     'fail', 'longer than the lock timeout plus 1 s (4s)'),
    (s.PERFORMANCE, {'migration': dict(MIGRATION, lock_waits=dict(LOCK_WAITS, longest_wait_seconds=4.5)),
                     'lock_timeout_ms': '5000'}, 'pass', 'longest wait 4.5s'),
    (s.PERFORMANCE, {'migration': dict(MIGRATION, lock_waits={})}, 'skipped', 'no migration ran'),
    # Rollback plan
    (s.ROLLBACK_PLAN, {}, 'skipped', 'no rollback and no rehearsal in this run'),
    (s.ROLLBACK_PLAN, {'rollback': ROLLBACK}, 'pass', ROLLBACK['summary']),
    (s.ROLLBACK_PLAN, {'rollback': {'ok': False, 'summary': "Automatic rollback FAILED at 'x': y"}},
     'fail', "Automatic rollback FAILED at 'x': y"),
]


@pytest.mark.parametrize(('name', 'changes', 'status', 'evidence'), MIGRATE_CASES)
def test_every_migrate_item(name: str, changes: dict, status: str, evidence: str) -> None:
    judged = item(run(MIGRATE_RUN, **changes), name)
    assert judged['status'] == status, judged
    assert evidence in judged['evidence'], judged


ROLLBACK_CASES = [
    (s.DOWNGRADE, {}, 'pass', f'Running downgrade {AFTER} -> {BEFORE}'),
    (s.DOWNGRADE, {'migration': dict(DOWNGRADE, failed=True, msg='lock timeout')}, 'fail', 'lock timeout'),
    (s.DOWNGRADE, {'migration': {}, 'failure': failure('sidecar unreadable', tags=['migrate', 'validate'])},
     'skipped', 'not run'),
    (s.DOWNGRADE, {'migration': {'skipped': True}, 'rollback': {'ok': True, 'nothing_to_do': True, 'checks': [],
                                                               'summary': 'Nothing to roll back: pre-migration'}},
     'skipped', 'not needed: nothing to roll back'),
    (s.ROLLBACK_VERIFIED, {'rollback': {'ok': True, 'nothing_to_do': True, 'summary': 'Nothing to roll back: x'}},
     'skipped', 'Nothing to roll back: x'),
    (s.ROLLBACK_VERIFIED, {}, 'pass', ROLLBACK['summary']),
    (s.ROLLBACK_VERIFIED, {'rollback': dict(ROLLBACK, ok=False)}, 'fail', ROLLBACK['summary']),
    (s.ROLLBACK_VERIFIED, {'rollback': {}, 'failure': failure('sha256 mismatch\nfor x.dump')},
     'fail', 'sha256 mismatch\nfor x.dump'),
    (s.ROLLBACK_VERIFIED, {'rollback': {}}, 'skipped', 'not run'),
    (s.PREVIOUS_BACKEND, {}, 'pass', DEPLOY['evidence']),
    (s.PREVIOUS_BACKEND, {'deploy': {'ok': False, 'evidence': 'no record'}}, 'fail', 'no record'),
    (s.PREVIOUS_BACKEND, {'deploy': {}, 'failure': failure(NO_ENGINE, 'deploy')}, 'fail', NO_ENGINE),
    (s.PREVIOUS_BACKEND, {'deploy': {}}, 'skipped', 'deploy phase not run'),
    (s.PREVIOUS_SMOKE, {}, 'pass', SMOKE['evidence']),
    (s.PREVIOUS_SMOKE, {'smoke': {'ok': False, 'evidence': 'ready | FAIL'}}, 'fail', 'ready | FAIL'),
    (s.PREVIOUS_SMOKE, {'smoke': {}}, 'skipped', 'smoke phase not run'),
    (s.RESTORE, {}, 'skipped', 'not requested'),
    (s.RESTORE, {'rollback': dict(ROLLBACK, restore_requested=True, restored_from='/b/x.dump')}, 'pass', '/b/x.dump'),
    (s.RESTORE, {'rollback': dict(ROLLBACK, ok=False, restore_requested='true', restored_from='/b/x.dump')},
     'fail', '/b/x.dump'),
    (s.RESTORE, {'rollback': {}, 'restore_requested': True, 'failure': failure('truncated archive')},
     'fail', 'requested, not done: ' + "failed at 'Some task': truncated archive"),
    (s.RESTORE, {'rollback': {}, 'restore_requested': True}, 'skipped', 'requested, not done'),
]


@pytest.mark.parametrize(('name', 'changes', 'status', 'evidence'), ROLLBACK_CASES)
def test_every_rollback_item(name: str, changes: dict, status: str, evidence: str) -> None:
    judged = item(run(ROLLBACK_RUN, **changes), name)
    assert judged['status'] == status, judged
    assert evidence in judged['evidence'], judged


def test_items_follow_the_runbook_order() -> None:
    assert [i['item'] for i in run(MIGRATE_RUN)['items']] == [
        s.PREFLIGHT, s.BACKUP, s.MIGRATION, s.VALIDATION, s.DEPLOY, s.SMOKE, s.PERFORMANCE, s.ROLLBACK_PLAN]
    assert [i['item'] for i in run(ROLLBACK_RUN)['items']] == [
        s.DOWNGRADE, s.ROLLBACK_VERIFIED, s.PREVIOUS_BACKEND, s.PREVIOUS_SMOKE, s.RESTORE]


# --- the contradictions of issue 9 --------------------------------------------------------------

def test_check_mode_says_what_would_run_and_never_passes_work_not_done() -> None:
    """Was: FAIL Backup (None bytes, sha256 None), PASS Migration applied, under MIGRATE PASSED."""
    report = run(CHECK_RUN)
    statuses = {i['item']: i['status'] for i in report['items']}
    assert statuses == {s.PREFLIGHT: 'pass', s.BACKUP: 'would run', s.MIGRATION: 'would run',
                        s.VALIDATION: 'would run', s.DEPLOY: 'would run', s.SMOKE: 'would run',
                        s.PERFORMANCE: 'would run', s.ROLLBACK_PLAN: 'skipped'}
    assert report['verdict'] == 'CHECK MODE' and report['check_mode'] is True
    assert item(report, s.BACKUP)['evidence'] == (f"check mode: would write {BACKUP['path']}, read it back whole "
                                                  'with pg_restore and record its sha256')
    assert item(report, s.MIGRATION)['evidence'] == f'check mode: would upgrade {BEFORE} -> {AFTER} ({AFTER})'
    assert all(i['evidence'].startswith('check mode: ') for i in report['items'] if i['status'] == 'would run')
    assert 'None' not in ' '.join(i['evidence'] for i in report['items'])


def test_check_mode_of_an_applied_migration_reports_what_it_saw_but_not_passed() -> None:
    report = run(CHECK_RUN, preflight=dict(PREFLIGHT, pending=False), backup={}, validation=CHECKS,
                 migration=dict(MIGRATION, direction='none', current_before=AFTER, output=[], attempts=[],
                                lock_waits={}))
    statuses = {i['item']: i['status'] for i in report['items']}
    assert (statuses[s.BACKUP], statuses[s.MIGRATION], statuses[s.VALIDATION], statuses[s.PERFORMANCE]) == \
        ('skipped', 'pass', 'pass', 'skipped')
    assert report['verdict'] == 'CHECK MODE'


def test_check_mode_that_fails_is_failed() -> None:
    report = run(CHECK_RUN, preflight=dict(PREFLIGHT, refusals=['Alembic is at revision base']),
                 failure=failure('Pre-flight refused the migration', 'preflight'))
    assert report['verdict'] == 'FAILED'


def test_a_failed_backup_is_a_failure_not_skipped() -> None:
    report = run(MIGRATE_RUN, backup={'failed': True, 'reason': ENOSPC}, migration={}, validation=[],
                 deploy={}, smoke={}, failure=failure(ENOSPC, 'backup'))
    assert item(report, s.BACKUP) == {'item': s.BACKUP, 'status': 'fail', 'evidence': ENOSPC}
    assert item(report, s.MIGRATION)['status'] == 'skipped'
    assert report['verdict'] == 'FAILED'


def test_a_deploy_that_failed_before_its_report_is_a_failure_with_its_whole_message() -> None:
    report = run(MIGRATE_RUN, deploy={}, smoke={}, rollback=ROLLBACK, failure=failure(NO_ENGINE, 'deploy'))
    assert item(report, s.DEPLOY) == {'item': s.DEPLOY, 'status': 'fail',
                                      'evidence': f"failed at 'Some task': {NO_ENGINE}"}
    assert item(report, s.SMOKE)['status'] == 'skipped'
    assert report['verdict'] == 'FAILED'


def test_the_sample_check_is_rendered_as_judged() -> None:
    """migration_validate's label may contradict its own evidence; the sign-off shows both as given."""
    failed_sample = dict(CHECKS[1], passed=False)
    report = run(MIGRATE_RUN, validation=[CHECKS[0], failed_sample], failure=failure('validation failed', 'validate'))
    assert item(report, s.VALIDATION)['status'] == 'fail'
    assert report['validation'] == [CHECKS[0], failed_sample]


# --- verdict --------------------------------------------------------------------------------------

@pytest.mark.parametrize(('base', 'changes', 'expected'), [
    (MIGRATE_RUN, {}, 'PASSED'),
    (MIGRATE_RUN, {'failure': failure('x')}, 'FAILED'),
    (MIGRATE_RUN, {'failure': failure('x'), 'rollback': ROLLBACK}, 'FAILED'),
    (MIGRATE_RUN, {'rollback': ROLLBACK}, 'ROLLED BACK'),
    # No failure recorded, yet an item failed: the report must not say PASSED above a FAIL.
    (MIGRATE_RUN, {'migration': dict(MIGRATION, lock_waits=dict(LOCK_WAITS, longest_wait_seconds=60))}, 'FAILED'),
    (MIGRATE_RUN, {'deploy': {}, 'smoke': {}}, 'PASSED'),
    (CHECK_RUN, {}, 'CHECK MODE'),
    (CHECK_RUN, {'check_mode': 'True'}, 'CHECK MODE'),
    (ROLLBACK_RUN, {}, 'PASSED'),
    (ROLLBACK_RUN, {'rollback': dict(ROLLBACK, ok=False), 'failure': failure('Rollback not proven')}, 'FAILED'),
    (ROLLBACK_RUN, {'check_mode': True}, 'CHECK MODE'),
    # A table never migrated: the rollback changed nothing and says so, never "PASSED ... fingerprint as before".
    (ROLLBACK_RUN, {'rollback': dict(ROLLBACK, nothing_to_do=True), 'migration': {}}, 'NOTHING TO ROLL BACK'),
    # The downgrade failed and the verified archive was restored instead: rolled back, the downgrade not passed.
    (ROLLBACK_RUN, {'rollback': dict(ROLLBACK, downgrade_replaced_by_restore=True, downgrade_error='e')}, 'PASSED'),
])
def test_verdict(base: dict, changes: dict, expected: str) -> None:
    assert run(base, **changes)['verdict'] == expected


# --- the report ------------------------------------------------------------------------------------

def test_report_keys_are_stable() -> None:
    report = run(MIGRATE_RUN)
    assert set(report) == {'kind', 'host', 'verdict', 'deployed_by', 'awx_job_id', 'date', 'finished', 'check_mode',
                           'migration_duration_seconds', 'row_count', 'revision_before', 'revision_after', 'backup',
                           'lock_waits', 'preflight', 'validation', 'rollback', 'failure', 'notes', 'items'}
    assert (report['host'], report['deployed_by'], report['row_count'], report['revision_before'],
            report['revision_after'], report['migration_duration_seconds']) == \
        ('db1', 'alice', 2000, BEFORE, AFTER, 3.5)
    assert report['backup'] == BACKUP and report['lock_waits'] == LOCK_WAITS and report['failure'] == {}
    assert report['notes'] == 'staging rehearsal'


def test_a_minimal_input_gives_a_whole_report() -> None:
    report = s.signoff({'kind': 'migrate'})
    assert report['verdict'] == 'PASSED' and {i['status'] for i in report['items']} == {'skipped'}
    assert (report['backup'], report['rollback'], report['failure'], report['validation']) == ({}, {}, {}, [])


@pytest.mark.parametrize(('proof', 'shown'), [
    ({'method': 'untouched_rows', 'rows_compared': 1988, 'rows_written': 12, 'matches': True,
      'written_sample_keys': [3]}, 'content proof: untouched_rows: 1988 rows compared, 12 written meanwhile'),
    ({'method': 'full', 'rows_compared': 2000, 'rows_written': None, 'matches': False},
     'content proof: full: 2000 rows compared - CONTENT DIFFERS'),
    ({'rows_written': 12, 'source': 'run history'}, 'content proof: rows_written=12, source=run history'),
    ({'summary': 'untouched rows: 12 written meanwhile', 'rows_written': 12},
     'content proof: untouched rows: 12 written meanwhile'),
    ('full (nobody wrote)', 'content proof: full (nobody wrote)'),
])
def test_proof_is_rendered_in_the_content_items(proof: t.Any, shown: str) -> None:
    migrate = run(MIGRATE_RUN, proof=proof)
    assert item(migrate, s.VALIDATION)['evidence'].endswith(shown)
    assert migrate['proof'] == proof
    rollback = run(ROLLBACK_RUN, proof=proof)
    assert item(rollback, s.ROLLBACK_VERIFIED)['evidence'].endswith(shown)
    in_rollback_report = run(MIGRATE_RUN, rollback=dict(ROLLBACK, proof=proof))
    assert item(in_rollback_report, s.ROLLBACK_PLAN)['evidence'].endswith(shown)


def test_no_proof_no_proof_key() -> None:
    assert 'proof' not in run(MIGRATE_RUN, proof={})
    assert 'content proof' not in item(run(MIGRATE_RUN), s.VALIDATION)['evidence']


def test_unknown_inputs_are_kept_and_never_replace_the_report() -> None:
    report = run(MIGRATE_RUN, run_record={'run_id': 'migrate-1', 'status': 'passed'}, half_applied=False,
                 items=['not mine'], verdict='PASSED?')
    assert report['run_record'] == {'run_id': 'migrate-1', 'status': 'passed'} and report['half_applied'] is False
    assert report['verdict'] == 'PASSED' and len(report['items']) == 8


@pytest.mark.parametrize(('inputs', 'message'), [
    ('migrate', 'expects a mapping'),
    ({}, "kind must be one of migrate, rollback, got None"),
    ({'kind': 'upgrade'}, "got 'upgrade'"),
])
def test_bad_input_is_a_clear_error(inputs: t.Any, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        s.signoff(inputs)


@pytest.mark.parametrize(('value', 'expected'), [
    (True, True), ('True', True), ('true', True), ('yes', True), (1, True),
    (False, False), ('False', False), ('false', False), ('', False), (None, False), (0, False),
    ({'a': 1}, True), ([], False),
])
def test_flag(value: t.Any, expected: bool) -> None:
    assert s.flag(value) is expected


def test_filter_is_registered() -> None:
    assert s.FilterModule().filters() == {'signoff': s.signoff}


def test_a_downgrade_replaced_by_a_restore_is_not_reported_as_passed() -> None:
    report = run(ROLLBACK_RUN, rollback=dict(ROLLBACK, downgrade_replaced_by_restore=True, downgrade_error='1 row(s)'))
    item = next(i for i in report['items'] if i['item'].startswith('Downgrade'))
    assert item['status'] == 'skipped' and 'the downgrade failed (1 row(s))' in item['evidence'], item


@pytest.mark.parametrize(('rollback', 'restore', 'verified'), [
    # Nothing to roll back: the requested restore is not needed, never "PASS".
    ({'ok': True, 'nothing_to_do': True, 'restore_requested': True, 'summary': 'Nothing to roll back: x'},
     'skipped', 'skipped'),
    # A dry run proves nothing: both would run.
    ({'ok': True, 'check_mode': True, 'restore_requested': True, 'summary': 'check mode: would downgrade'},
     'would run', 'would run'),
])
def test_rollback_items_never_pass_work_not_done(rollback: dict, restore: str, verified: str) -> None:
    report = run(ROLLBACK_RUN, rollback=rollback, restore_requested=True)
    statuses = {i['item'].split(' ')[0]: i['status'] for i in report['items']}
    assert statuses['Restored'] == restore and statuses['Rollback'] == verified, report['items']


def test_online_conversion_performance_says_what_is_known() -> None:
    migration = {'online': {'swap': {'tries': 2}}, 'lock_timeout_ms': 1000, 'direction': 'upgrade'}
    verdict, evidence = s.judge_performance(migration, False, 1000)
    assert verdict == s.SKIPPED and '2 tries of at most 1000 ms' in evidence and 'not sampled' in evidence
    verdict, evidence = s.judge_performance({'online': {'swap': {}}}, False, 1000)
    assert verdict == s.SKIPPED and 'nothing was swapped' in evidence


def test_a_run_stopped_before_the_migration_is_ready_for_approval_never_passed() -> None:
    stopped = dict(MIGRATE_RUN, migration={'skipped': True, 'skip_reason': 'stopped before the migration, as asked'},
                   validation=[], deploy={}, smoke={}, stopped_before_migration=True)
    report = s.signoff(stopped)
    assert report['verdict'] == 'READY FOR APPROVAL'
    migration = next(i for i in report['items'] if i['item'] == 'Migration applied successfully')
    assert migration['status'] == s.SKIPPED and 'stopped before the migration' in migration['evidence']
    # A failure still wins, and check mode says CHECK MODE.
    assert s.signoff(dict(stopped, failure={'task': 'Back up', 'msg': 'disk full'}))['verdict'] == 'FAILED'
    assert s.signoff(dict(stopped, check_mode=True))['verdict'] == 'CHECK MODE'


REHEARSAL = {'ok': True, 'dropped': True, 'restore_proven': True, 'scratch_database': 'lm_x_lm_rehearsal_1234abcd',
             'archive_fingerprint': 'f00d', 'rows': 2000, 'summary': 'migration took 1.2 s (lock held 0.4 s)',
             'steps': [{'name': 'rollback', 'evidence': 'downgraded'},
                       {'name': 'verify_rollback', 'evidence': 'text[]'}]}


@pytest.mark.parametrize(('rehearsal', 'failure', 'status', 'words'), [
    (REHEARSAL, {}, s.PASS, 'rehearsed on a scratch copy of the verified backup: migration took 1.2 s'),
    (dict(REHEARSAL, dropped=False), {}, s.FAIL, 'rehearsed'),
    (dict(REHEARSAL, ok=False, failure='validate: fingerprint differs'), {'task': 'Rehearse', 'msg': 'x',
                                                                          'phase': 'rehearsal'},
     s.FAIL, 'validate: fingerprint differs'),
    ({'skipped': True, 'summary': 'rehearsal off (ledgermind_rehearsal=false)'}, {}, s.SKIPPED, 'rehearsal off'),
    (dict(REHEARSAL, check_mode=True), {}, s.WOULD_RUN, 'migration took'),
])
def test_the_rehearsal_decides_the_rollback_plan_item(rehearsal, failure, status, words) -> None:
    assert s.judge_rollback_plan({}, rehearsal, failure)[0] == status
    assert words in s.judge_rollback_plan({}, rehearsal, failure)[1]


def test_a_restore_the_rehearsal_proved_is_backup_evidence() -> None:
    report = s.signoff(dict(MIGRATE_RUN, rehearsal=REHEARSAL))
    backup = next(i for i in report['items'] if i['item'] == 'Backup created and verified')
    assert backup['status'] == s.PASS and 'restored into scratch database lm_x_lm_rehearsal_1234abcd' in \
        backup['evidence']
    plan = next(i for i in report['items'] if i['item'] == 'Rollback plan tested')
    assert plan['status'] == s.PASS and report['verdict'] == 'PASSED'
