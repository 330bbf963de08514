# Copyright: (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The runbook's sign-off, judged: each item's status and evidence, and the run's verdict.

Pure functions over what the run recorded; the signoff_report role passes every input explicitly and only
renders what comes back.
"""
from __future__ import annotations

DOCUMENTATION = r'''
name: signoff
version_added: 0.1.0
short_description: Judge the runbook's sign-off, each item's status and evidence and the verdict
description:
  - Turns what a migrate or rollback run recorded into the sign-off report the C(signoff_report) role writes, that
    is the runbook's sign-off items, each with a status and its evidence, and the run's verdict.
  - "Statuses: V(pass), V(fail), V(skipped) (the step did not run, or was not needed), and V(would run) in check
    mode for a step a real run would perform (its evidence starts with C(check mode: would))."
  - A phase that ran and failed is V(fail) with its full message (multi-line messages kept whole), also when it
    failed before recording its own result, provided O(_input.failure) names the phase (C(phase), or C(tags)
    holding one of C(preflight), C(backup), C(migrate), C(validate), C(deploy), C(smoke)).
  - "Verdict: V(FAILED) when a failure was recorded or any item failed; else V(READY FOR APPROVAL) for a migrate run
    that stopped before the real migration as asked; else V(NOTHING TO ROLL BACK) for a rollback
    run that found the table never migrated; else V(ROLLED BACK) for a migrate run that was rolled back; else
    V(CHECK MODE) in check mode (nothing was done, so nothing passed); else V(PASSED)."
  - Keys it does not know are copied into the report as they are (unless they would replace one of its own), so
    new inputs such as C(run_record) or C(half_applied) reach the JSON before the sign-off judges them.
positional: _input
options:
  _input:
    description: What the run recorded. Every key is optional except O(_input.kind).
    type: dict
    required: true
    suboptions:
      kind:
        description: Which runbook section the report signs off.
        type: str
        choices: [migrate, rollback]
        required: true
      check_mode:
        description: Whether the run was a dry run (C(--check)).
        type: bool
        default: false
      preflight:
        description: The pre-flight findings (C(total), C(nulls), C(empty), C(udt_name), C(fingerprint), C(pending),
          C(refusals), ...).
        type: dict
      backup:
        description:
          - The backup (C(path), C(size_bytes), C(sha256), C(verified), C(check_mode)), or C(failed) true and
            C(reason) when the backup failed; C(reason) alone when it was not taken on purpose.
        type: dict
      migration:
        description:
          - The migration's C(alembic_migrate) result (migrate), or the downgrade's (rollback), with
            C(current_before), C(current_after), C(revision), C(direction), C(pending), C(output), C(attempts),
            C(lock_waits), C(duration_seconds), C(failed), C(msg).
        type: dict
      validation:
        description: The post-migration checks, each C(item), C(passed) and C(evidence), judged as given.
        type: list
        elements: dict
      deploy:
        description: The deploy phase's C(ok) and C(evidence) (migrate), or the previous backend's redeploy (rollback).
        type: dict
      smoke:
        description: The smoke tests' C(ok) and C(evidence).
        type: dict
      rollback:
        description: The rollback's report (C(ok), C(summary), C(restore_requested), C(restored_from), C(proof)).
        type: dict
      failure:
        description: What failed (C(task), C(msg), and C(phase) or C(tags) naming the phase); empty when nothing did.
        type: dict
      restore_requested:
        description: Whether the rollback was asked to restore the table from the backup.
        type: bool
        default: false
      lock_timeout_ms:
        description:
          - The migration's lock timeout. A session queued behind the migration for longer than this plus one second
            is a performance degradation.
        type: int
        default: 1000
      rehearsal:
        description:
          - The rehearsal on a scratch copy (C(migration_rehearsal_report)). Without a rollback in the run, it decides
            C(Rollback plan tested) (PASS when it passed and the scratch database was dropped), and a restore it
            proved is added to C(Backup created and verified)'s evidence.
        type: dict
      stopped_before_migration:
        description:
          - The run stopped before the real migration as asked (pre-flight, backup and rehearsal only, the first node
            of AWX's approval gate). Its verdict is V(READY FOR APPROVAL) unless something failed.
        type: bool
        default: false
      latency:
        description:
          - The query latency before and after the migration, as the C(latency_comparison) filter judges it
            (C(ok), C(summary)). Given, it decides C(No performance degradation observed); the lock waits stay as
            evidence. Empty, the item is judged from the lock waits alone.
        type: dict
      proof:
        description:
          - How the content was proven, rendered in the content item (post-migration validation, or rollback
            verified) and kept in the report as C(proof). C(pg_jsonb_integrity)'s C(proof) (C(method),
            C(rows_compared), C(rows_written), C(matches)) reads as a sentence; another mapping is shown by its
            C(summary) (or C(description)), else as its keys and values; a text as it is.
        type: raw
      host:
        description: The inventory host the report is about.
        type: str
      deployed_by:
        description: Who ran it.
        type: str
      awx_job_id:
        description: The AWX job, when AWX ran it.
        type: raw
      date:
        description: When the run started (UTC, ISO 8601).
        type: str
      finished:
        description: When the sign-off was judged (UTC, ISO 8601).
        type: str
      notes:
        description: Free-text notes.
        type: str
author:
  - LedgerMind SRE (@ledgermind)
'''

EXAMPLES = r'''
- name: Judge the sign-off
  ansible.builtin.set_fact:
    signoff_report_data: >-
      {{ {'kind': 'migrate', 'check_mode': ansible_check_mode, 'preflight': migration_preflight_findings,
          'backup': pg_backup_report | default({}), 'migration': db_migration_result | default({}),
          'validation': migration_validate_checks | default([]), 'failure': ledgermind_failure | default({})}
         | ledgermind.migrations.signoff }}

# signoff_report_data.verdict: PASSED, FAILED, ROLLED BACK or CHECK MODE
# signoff_report_data['items']: [{item: Backup created and verified, status: pass, evidence: /var/backups/...}, ...]
'''

RETURN = r'''
_value:
  description:
    - The report, with the keys C(kind), C(host), C(verdict), C(deployed_by), C(awx_job_id), C(date), C(finished),
      C(check_mode), C(migration_duration_seconds), C(row_count), C(revision_before), C(revision_after), C(backup),
      C(lock_waits), C(preflight), C(validation), C(rollback), C(failure), C(notes) and C(items) (each C(item),
      C(status), C(evidence)); C(proof) when one was given, and any unknown input key.
  type: dict
'''

import typing as t  # noqa: E402
from collections.abc import Mapping, Sequence  # noqa: E402

from ansible.errors import AnsibleFilterError  # noqa: E402
from ansible.module_utils.parsing.convert_bool import boolean  # noqa: E402

PASS = 'pass'
FAIL = 'fail'
SKIPPED = 'skipped'
WOULD_RUN = 'would run'
PHASES = ('preflight', 'backup', 'rehearsal', 'migrate', 'validate', 'deploy', 'smoke')
KINDS = ('migrate', 'rollback')

PREFLIGHT = 'Pre-flight checks completed (schema, row counts, samples)'
BACKUP = 'Backup created and verified'
MIGRATION = 'Migration applied successfully'
VALIDATION = 'Post-migration validation passed (type, integrity, index)'
DEPLOY = 'Backend deployed with JSON model'
SMOKE = 'Smoke tests passed (stub mode, health, LLM)'
PERFORMANCE = 'No performance degradation observed'
ROLLBACK_PLAN = 'Rollback plan tested'
DOWNGRADE = 'Downgrade to the exact previous revision'
ROLLBACK_VERIFIED = 'Rollback verified (type text[], index gone, fingerprint as before the migration)'
PREVIOUS_BACKEND = 'Previous backend redeployed'
PREVIOUS_SMOKE = 'Smoke tests passed on the previous backend'
RESTORE = 'Restored from backup (worst case)'

# The inputs the sign-off reads; any other key is carried into the report as it is.
INPUT_KEYS = ('kind', 'check_mode', 'preflight', 'backup', 'migration', 'validation', 'deploy', 'smoke', 'rollback',
              'failure', 'restore_requested', 'lock_timeout_ms', 'latency', 'proof', 'host', 'deployed_by',
              'awx_job_id', 'date', 'finished', 'notes', 'stopped_before_migration', 'rehearsal')

Judged = tuple[str, str]  # (status, evidence)


# ---------------------------------------------------------------------------------------------
# Reading what the run recorded (values may be strings when a role templated them)
# ---------------------------------------------------------------------------------------------

def flag(value: t.Any) -> bool:
    """A recorded boolean read as Ansible's ``bool`` filter reads it (``'True'``, ``'yes'``, ``1`` are true);
    missing, or anything it does not know, is false; a container is true when it is not empty."""
    if value is None or isinstance(value, (str, bytes, bool, int, float)):
        return boolean(value, strict=False)
    return bool(value)


def mapping(value: t.Any) -> Mapping[str, t.Any]:
    return value if isinstance(value, Mapping) else {}


def records(value: t.Any) -> list[Mapping[str, t.Any]]:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [entry for entry in value if isinstance(entry, Mapping)]
    return []


def text(value: t.Any) -> str:
    """A value for evidence, whole (multi-line messages keep every line), without surrounding blanks."""
    return '' if value is None else str(value).strip()


def failed_phase(failure: Mapping[str, t.Any]) -> str | None:
    """The phase a failure names, by ``phase`` or among its ``tags`` (the failed task's play tags)."""
    phase = text(failure.get('phase'))
    if phase in PHASES:
        return phase
    tags = failure.get('tags')
    if isinstance(tags, Sequence) and not isinstance(tags, str):
        return next((tag for tag in tags if tag in PHASES), None)
    return None


def failure_text(failure: Mapping[str, t.Any]) -> str:
    """``failed at 'task': message``, the message whole."""
    msg = text(failure.get('msg')) or 'no message'
    task = text(failure.get('task'))
    return f"failed at '{task}': {msg}" if task and task != '?' else msg


def describe_proof(proof: t.Any) -> str:
    """How the content was proven, as one phrase (empty when there is no proof).

    pg_jsonb_integrity's ``proof`` (``method``, ``rows_compared``, ``rows_written``, ``matches``) reads
    ``untouched_rows: 9970 rows compared, 30 written meanwhile``; another mapping by its ``summary`` or
    ``description``, else its keys and values; a text as it is.
    """
    if not proof:
        return ''
    if isinstance(proof, Mapping):
        if text(proof.get('method')):
            phrase = text(proof['method'])
            if proof.get('rows_compared') is not None:
                phrase += f": {proof['rows_compared']} rows compared"
            if proof.get('rows_written') is not None:
                phrase += f", {proof['rows_written']} written meanwhile"
            if 'matches' in proof and not flag(proof.get('matches')):
                phrase += ' - CONTENT DIFFERS'
            return phrase
        for key in ('summary', 'description'):
            if text(proof.get(key)):
                return text(proof[key])
        return ', '.join(f'{key}={text(value)}' for key, value in proof.items())
    return text(proof)


def with_proof(evidence: str, proof: t.Any) -> str:
    described = describe_proof(proof)
    return f'{evidence}; content proof: {described}' if described else evidence


def pending(preflight: Mapping[str, t.Any]) -> bool:
    return flag(preflight.get('pending'))


def moves(migration: Mapping[str, t.Any]) -> bool:
    """Whether the migration result is (or in check mode would be) a move between revisions."""
    return text(migration.get('direction')) not in ('', 'none')


# ---------------------------------------------------------------------------------------------
# One judgement per sign-off item
# ---------------------------------------------------------------------------------------------

def judge_preflight(preflight: Mapping[str, t.Any], failure: Mapping[str, t.Any]) -> Judged:
    if 'total' in preflight:
        evidence = '{} {} rows ({} NULL, {} empty), fingerprint {}'.format(
            preflight.get('udt_name'), preflight.get('total'), preflight.get('nulls'), preflight.get('empty'),
            preflight.get('fingerprint'))
        refusals = [text(r) for r in preflight.get('refusals') or []]
        if refusals:
            return FAIL, f"{evidence}; refused: {'; '.join(refusals)}"
        return PASS, evidence
    if preflight or failed_phase(failure) == 'preflight':
        return FAIL, failure_text(failure) if failure else 'the pre-flight recorded no row counts'
    return SKIPPED, 'not run'


def judge_backup(backup: Mapping[str, t.Any], preflight: Mapping[str, t.Any], failure: Mapping[str, t.Any],
                 check_mode: bool, rehearsal: Mapping[str, t.Any] | None = None) -> Judged:
    path = text(backup.get('path'))
    if flag(backup.get('failed')):
        reason = text(backup.get('reason')) or (failure_text(failure) if failure else 'the backup failed')
        if path and flag(backup.get('verified')):
            reason += f' (the archive {path} was written and verified before that)'
        return FAIL, reason
    if path and (check_mode or flag(backup.get('check_mode'))):
        return WOULD_RUN, (f'check mode: would write {path}, read it back whole with pg_restore '
                           'and record its sha256')
    if path:
        evidence = '{} ({} bytes, sha256 {})'.format(path, backup.get('size_bytes'), backup.get('sha256'))
        restored = mapping(rehearsal) if rehearsal else {}
        if flag(restored.get('restore_proven')):
            evidence += '; restored into scratch database {}, content equal to its fingerprint {} ({} rows)'.format(
                restored.get('scratch_database'), restored.get('archive_fingerprint'), restored.get('rows'))
        if flag(backup.get('verified')):
            return PASS, evidence
        return FAIL, f'{evidence}: not verified (pg_restore did not read it back whole)'
    if failed_phase(failure) == 'backup':
        return FAIL, failure_text(failure)
    if text(backup.get('reason')):
        return SKIPPED, text(backup['reason'])
    if 'pending' in preflight and not pending(preflight):
        return SKIPPED, 'not needed: the migration is already applied'
    return SKIPPED, 'no backup taken in this run'


def judge_migration(migration: Mapping[str, t.Any], failure: Mapping[str, t.Any], check_mode: bool,
                    phase: str | None, rollback: Mapping[str, t.Any] | None = None) -> Judged:
    """The migration (migrate) or the downgrade (rollback); ``phase`` is the phase a failure must name to count."""
    if not migration or flag(migration.get('skipped')):
        if phase and failed_phase(failure) == phase:
            return FAIL, failure_text(failure)
        if migration.get('skip_reason'):
            return SKIPPED, text(migration.get('skip_reason'))
        if rollback and flag(rollback.get('nothing_to_do')):
            return SKIPPED, 'not needed: nothing to roll back'
        return SKIPPED, 'not run'
    attempts = migration.get('attempts') or []
    tries = ' ({} {})'.format(len(attempts), 'try' if len(attempts) == 1 else 'tries') if attempts else ''
    if rollback and flag(rollback.get('downgrade_replaced_by_restore')):
        return SKIPPED, 'the downgrade failed ({}); the table was restored from the archive instead{}'.format(
            text(rollback.get('downgrade_error')) or 'no message', tries)
    if flag(migration.get('failed')):
        return FAIL, (text(migration.get('msg')) or (failure_text(failure) if failure else 'failed')) + tries
    if check_mode and moves(migration):
        steps = ', '.join(text(r) for r in migration.get('pending') or [])
        return WOULD_RUN, 'check mode: would {} {} -> {}{}'.format(
            migration.get('direction'), migration.get('current_before'),
            migration.get('revision') or migration.get('current_after'), f' ({steps})' if steps else '')
    output = '; '.join(text(line) for line in migration.get('output') or [])
    return PASS, (output or f"already at {migration.get('current_after')}, nothing ran") + tries


def judge_validation(checks: list[Mapping[str, t.Any]], preflight: Mapping[str, t.Any],
                     failure: Mapping[str, t.Any], check_mode: bool, proof: t.Any) -> Judged:
    if checks:
        failed = [c for c in checks if not flag(c.get('passed'))]
        parts = []
        for check in checks:
            if flag(check.get('passed')):
                parts.append(f"{text(check.get('item'))}: PASS")
            else:
                evidence = text(check.get('evidence'))
                parts.append(f"{text(check.get('item'))}: FAIL" + (f' ({evidence})' if evidence else ''))
        return (FAIL if failed else PASS), with_proof('; '.join(parts), proof)
    if failed_phase(failure) == 'validate':
        return FAIL, failure_text(failure)
    if check_mode and pending(preflight):
        return WOULD_RUN, ('check mode: would check the type, every value, the fingerprint and row count, the index, '
                           'its use in the plan and the sample rows after the migration')
    return SKIPPED, 'not run'


def judge_phase_report(report: Mapping[str, t.Any], name: str, failure: Mapping[str, t.Any],
                       check_mode: bool) -> Judged:
    """The deploy and smoke phases: their own C(ok) and C(evidence), or the failure that stopped them."""
    if report:
        evidence = text(report.get('evidence')) or f'{name} phase recorded no evidence'
        if not flag(report.get('ok')):
            return FAIL, evidence
        if check_mode:
            return WOULD_RUN, evidence if evidence.startswith('check mode') else f'check mode: {evidence}'
        return PASS, evidence
    if failed_phase(failure) == name:
        return FAIL, failure_text(failure)
    return SKIPPED, f'{name} phase not run'


def judge_lock_waits(migration: Mapping[str, t.Any], check_mode: bool, lock_timeout_ms: t.Any) -> Judged:
    waits = mapping(migration.get('lock_waits'))
    online = mapping(migration.get('online'))
    if not waits and online:
        swap = mapping(online.get('swap'))
        if not swap:
            return SKIPPED, 'online conversion: nothing was swapped in this run'
        # Honest about what is known: no rewrite, and how the swap got its lock; nobody's latency was measured.
        return SKIPPED, ('online conversion, no table rewrite: the swap took its lock after {} {} of at most {} ms '
                         'and held it for one short transaction; query latency was not sampled').format(
            swap.get('tries'), 'try' if swap.get('tries') == 1 else 'tries', migration.get('lock_timeout_ms'))
    if not waits:
        if check_mode and moves(migration):
            return WOULD_RUN, 'check mode: would sample the sessions queued behind the migration while it runs'
        return SKIPPED, 'no migration ran'
    blocking = [text(pid) for pid in waits.get('blocking_pids') or []]
    evidence = ('{} lock-wait samples; at most {} sessions queued behind the migration, longest wait {}s; '
                'migration waited at most {}s{}').format(
        waits.get('samples'), waits.get('max_blocked_sessions'), waits.get('longest_wait_seconds'),
        waits.get('migration_longest_wait_seconds'), (', blocked by pids ' + ','.join(blocking)) if blocking else '')
    budget = float(lock_timeout_ms or 1000) / 1000 + 1
    if float(waits.get('longest_wait_seconds') or 0) <= budget:
        return PASS, evidence
    return FAIL, f'{evidence}; a session waited longer than the lock timeout plus 1 s ({budget:g}s)'


def judge_performance(migration: Mapping[str, t.Any], check_mode: bool, lock_timeout_ms: t.Any,
                      latency: Mapping[str, t.Any] | None = None) -> Judged:
    """Measured query latency decides (p50/p95 before and after); the lock waits are its evidence too. Without a
    latency reading, the lock waits alone."""
    locks = judge_lock_waits(migration, check_mode, lock_timeout_ms)
    if not latency or 'ok' not in latency:
        return locks
    evidence = 'query latency: {}; lock waits: {}'.format(text(latency.get('summary')), locks[1])
    return (PASS if flag(latency.get('ok')) else FAIL), evidence


def judge_rollback_plan(rollback: Mapping[str, t.Any], rehearsal: Mapping[str, t.Any] | None = None,
                        failure: Mapping[str, t.Any] | None = None) -> Judged:
    """A rollback that ran in this run is the plan tested for real; else the rehearsal on a scratch copy."""
    if rollback:
        return (PASS if flag(rollback.get('ok')) else FAIL), with_proof(
            text(rollback.get('summary')) or 'the rollback recorded no summary', rollback.get('proof'))
    rehearsal = rehearsal or {}
    if failure and failed_phase(failure) == 'rehearsal':
        return FAIL, text(rehearsal.get('failure')) or failure_text(failure)
    if not rehearsal or flag(rehearsal.get('skipped')):
        return SKIPPED, text(rehearsal.get('summary')) or 'no rollback and no rehearsal in this run'
    if flag(rehearsal.get('check_mode')):
        return WOULD_RUN, text(rehearsal.get('summary')) or 'check mode: would rehearse on a scratch copy'
    steps = {text(step.get('name')): step for step in rehearsal.get('steps') or [] if isinstance(step, Mapping)}
    rolled = '; '.join(f"{name}: {text(steps[name].get('evidence'))}" for name in ('rollback', 'verify_rollback')
                       if name in steps)
    evidence = 'rehearsed on a scratch copy of the verified backup: ' + text(rehearsal.get('summary')) + (
        f' ({rolled})' if rolled else '')
    if flag(rehearsal.get('ok')) and flag(rehearsal.get('dropped')):
        return PASS, evidence
    return FAIL, text(rehearsal.get('failure')) or evidence


def judge_rollback_verified(rollback: Mapping[str, t.Any], failure: Mapping[str, t.Any], proof: t.Any) -> Judged:
    if rollback and flag(rollback.get('nothing_to_do')):
        return SKIPPED, text(rollback.get('summary')) or 'nothing to roll back'
    if rollback and flag(rollback.get('check_mode')):
        return WOULD_RUN, text(rollback.get('summary')) or 'check mode: would roll back and verify'
    if rollback:
        return (PASS if flag(rollback.get('ok')) else FAIL), with_proof(
            text(rollback.get('summary')) or 'the rollback recorded no summary', proof or rollback.get('proof'))
    if failure:
        return FAIL, failure_text(failure)
    return SKIPPED, 'not run'


def judge_restore(rollback: Mapping[str, t.Any], requested: bool, failure: Mapping[str, t.Any],
                  check_mode: bool) -> Judged:
    if rollback and flag(rollback.get('nothing_to_do')):
        return SKIPPED, 'not needed: nothing to roll back' if requested else 'not requested'
    if rollback and flag(rollback.get('restore_requested')) and flag(rollback.get('check_mode')):
        return WOULD_RUN, text(rollback.get('summary')) or 'check mode: would restore from the verified archive'
    if rollback and flag(rollback.get('restore_requested')):
        evidence = text(rollback.get('restored_from')) or text(rollback.get('summary')) or 'no archive recorded'
        return (PASS if flag(rollback.get('ok')) else FAIL), evidence
    if requested and failure:
        return FAIL, f'requested, not done: {failure_text(failure)}'
    if requested and check_mode:
        return WOULD_RUN, 'check mode: would restore the table from the verified archive'
    if requested:
        return SKIPPED, 'requested, not done: the rollback did not run'
    return SKIPPED, 'not requested'


# ---------------------------------------------------------------------------------------------
# The sign-off
# ---------------------------------------------------------------------------------------------

def signoff_items(inputs: Mapping[str, t.Any]) -> list[dict[str, str]]:
    """Every sign-off item of the run's kind, in the runbook's order, with its status and evidence."""
    kind = inputs.get('kind')
    check_mode = flag(inputs.get('check_mode'))
    preflight = mapping(inputs.get('preflight'))
    migration = mapping(inputs.get('migration'))
    rollback = mapping(inputs.get('rollback'))
    failure = mapping(inputs.get('failure'))
    deploy, smoke = mapping(inputs.get('deploy')), mapping(inputs.get('smoke'))
    proof = inputs.get('proof')
    judged: list[tuple[str, Judged]]
    if kind == 'rollback':
        judged = [
            (DOWNGRADE, judge_migration(migration, failure, check_mode, None, rollback)),
            (ROLLBACK_VERIFIED, judge_rollback_verified(rollback, failure, proof)),
            (PREVIOUS_BACKEND, judge_phase_report(deploy, 'deploy', failure, check_mode)),
            (PREVIOUS_SMOKE, judge_phase_report(smoke, 'smoke', failure, check_mode)),
            (RESTORE, judge_restore(rollback, flag(inputs.get('restore_requested')), failure, check_mode)),
        ]
    else:
        judged = [
            (PREFLIGHT, judge_preflight(preflight, failure)),
            (BACKUP, judge_backup(mapping(inputs.get('backup')), preflight, failure, check_mode,
                                  mapping(inputs.get('rehearsal')))),
            (MIGRATION, judge_migration(migration, failure, check_mode, 'migrate')),
            (VALIDATION, judge_validation(records(inputs.get('validation')), preflight, failure, check_mode, proof)),
            (DEPLOY, judge_phase_report(deploy, 'deploy', failure, check_mode)),
            (SMOKE, judge_phase_report(smoke, 'smoke', failure, check_mode)),
            (PERFORMANCE, judge_performance(migration, check_mode, inputs.get('lock_timeout_ms'),
                                            mapping(inputs.get('latency')))),
            (ROLLBACK_PLAN, judge_rollback_plan(rollback, mapping(inputs.get('rehearsal')), failure)),
        ]
    return [{'item': item, 'status': status, 'evidence': evidence} for item, (status, evidence) in judged]


def verdict(kind: str, items: list[dict[str, str]], failure: Mapping[str, t.Any], rollback: Mapping[str, t.Any],
            check_mode: bool, stopped: bool = False) -> str:
    """FAILED, NOTHING TO ROLL BACK, ROLLED BACK, CHECK MODE, READY FOR APPROVAL or PASSED: never PASSED for work
    a dry run did not do, nor for a migration that stopped before the real change."""
    if failure or any(entry['status'] == FAIL for entry in items):
        return 'FAILED'
    if kind == 'migrate' and stopped and not check_mode:
        return 'READY FOR APPROVAL'
    if kind == 'rollback' and flag(rollback.get('nothing_to_do')):
        return 'NOTHING TO ROLL BACK'
    if kind == 'migrate' and rollback:
        return 'ROLLED BACK'
    if check_mode:
        return 'CHECK MODE'
    return 'PASSED'


def signoff(inputs: t.Any) -> dict[str, t.Any]:
    """The whole sign-off report from what the run recorded (see DOCUMENTATION)."""
    if not isinstance(inputs, Mapping):
        raise AnsibleFilterError(f'signoff expects a mapping of what the run recorded, got {type(inputs).__name__}')
    kind = inputs.get('kind')
    if kind not in KINDS:
        raise AnsibleFilterError(f"signoff: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    check_mode = flag(inputs.get('check_mode'))
    migration = mapping(inputs.get('migration'))
    rollback = mapping(inputs.get('rollback'))
    failure = mapping(inputs.get('failure'))
    items = signoff_items(inputs)
    report: dict[str, t.Any] = {
        'kind': kind,
        'host': inputs.get('host'),
        'verdict': verdict(kind, items, failure, rollback, check_mode, flag(inputs.get('stopped_before_migration'))),
        'deployed_by': text(inputs.get('deployed_by')),
        'awx_job_id': inputs.get('awx_job_id'),
        'date': inputs.get('date'),
        'finished': inputs.get('finished'),
        'check_mode': check_mode,
        'migration_duration_seconds': migration.get('duration_seconds'),
        'row_count': mapping(inputs.get('preflight')).get('total'),
        'revision_before': migration.get('current_before'),
        'revision_after': migration.get('current_after'),
        'backup': mapping(inputs.get('backup')),
        'lock_waits': mapping(migration.get('lock_waits')),
        'preflight': mapping(inputs.get('preflight')),
        'validation': records(inputs.get('validation')),
        'rollback': rollback,
        'failure': failure,
        'notes': inputs.get('notes') or '',
        'items': items,
    }
    if inputs.get('proof'):
        report['proof'] = inputs['proof']
    for key, value in inputs.items():
        if key not in INPUT_KEYS:
            report.setdefault(key, value)
    return report


class FilterModule:
    """signoff."""

    def filters(self) -> dict[str, t.Any]:
        return {'signoff': signoff}
