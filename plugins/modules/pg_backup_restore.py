#!/usr/bin/python
# Copyright (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: pg_backup_restore
short_description: Restore one table from a verified pg_dump archive, in a single transaction
version_added: 0.1.0
description:
  - B(Before) touching the database, also in check mode, proves the archive is a backup of this table of
    this database - M(ledgermind.migrations.pg_backup_archive) records in its sidecar C(<archive>.json) the
    C(identity) it read from the database it dumped, and the module reads the target's own identity and
    refuses on any difference (database name and oid, cluster system identifier, database uuid, schema,
    table), naming both, whatever the file names say. An archive without a sidecar, or whose sidecar
    records no identity (written before identities were recorded), is refused with what to do.
  - Optionally refuses an archive whose recorded column type is not O(expected_column_type) (the state a
    rollback means to return to, e.g. C(text[])) or whose C(metadata.run_id) is not O(expected_run_id).
  - Checks the archive's SHA-256 against its sidecar's (and O(expected_sha256) when given) and reads the
    whole archive (C(pg_restore --file=/dev/null)); a truncated or altered archive, or one whose own
    header names another database than its sidecar, is refused.
  - Selects the table's entries from the archive's table of contents (the table, its data,
    indexes, constraints, foreign keys, triggers, defaults, owned sequences, comments and ACLs;
    not other tables' foreign keys pointing at it) and restores them with
    C(pg_restore --single-transaction --clean --if-exists --use-list) as a script (written once, in a private
    directory next to the archive, removed at the end), which C(psql) runs with C(ON_ERROR_STOP), so the table is
    dropped and recreated in one transaction and a failure leaves it exactly as it was.
  - B(Under the lock budget.) The restore's C(DROP)/C(ALTER)/C(CREATE) take C(ACCESS EXCLUSIVE) on the table, and a
    statement waiting for that lock makes every application query on the table queue behind it. Each try therefore
    runs with C(lock_timeout) set to O(lock_timeout_ms) (pg_restore's script sets C(lock_timeout = 0) in its header;
    the module replaces that line), and a try that gives up on a lock (SQLSTATE C(55P03)) is rolled back whole and
    retried after a back-off, at most O(lock_retries) tries. Giving up names the sessions holding locks on the table
    (pid, application_name, state, how long their transaction has been open, the lock, the query), and says, read back
    from the database, that the table is the one it was before (same table oid, same column type).
  - The verdict is read from the database, not from the clients' exit codes - after the restore the table is read
    back and must exist with the archived column type.
  - Works whatever the live table looks like (for example C(tokens) already converted to jsonb with
    an extra GIN index, which goes with the dropped table), or when it does not exist.
  - Works with archives of one table or of the whole database (only the table is restored).
  - With O(restore_into=scratch), restores a B(copy) of the archived table into another, new database (a
    rehearsal's scratch database). The database's identity is not compared, but everything else still is
    (the schema and table, O(expected_column_type), O(expected_run_id), the checksum, the full read); the target
    must not be the archived database itself and must not have the table yet (a scratch copy never replaces a
    table); and the restored column's type is read back and must be the archived one, and so must its content
    fingerprint, when the sidecar records the archive's (RV(restored_content)).
  - Connection settings reach pg_restore as C(PG*) environment variables, so the password is never
    on a command line, in the process list or in the module output.
author:
  - LedgerMind SRE (@ledgermind)
extends_documentation_fragment:
  - ledgermind.migrations.connection
  - ledgermind.migrations.connection.lock_timeout
  - ledgermind.migrations.lock_budget
  - ledgermind.migrations.connection.clients
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: >-
      Verifies the archive (read-only) and returns the entries that would be restored; the database
      is not touched.
options:
  src:
    description: The archive (a custom-format file or a directory-format directory).
    type: path
    required: true
  expected_sha256:
    description:
      - SHA-256 the archive must have (e.g. the one in the run's record), besides the C(sha256) of its sidecar
        C(<src>.json), which it must match in any case.
    type: str
  expected_column_type:
    description:
      - The type the archive's column must have had when it was taken (C(identity.column_type) in its sidecar,
        recorded from pg_backup_archive's O(ledgermind.migrations.pg_backup_archive#module:column)), e.g. C(text[])
        for the state before the migration. C(_text) and C(text ARRAY) mean the same as C(text[]).
      - The archive is refused, naming both types, when it differs or was recorded without a column type.
      - Not checked when omitted.
    type: str
  expected_run_id:
    description:
      - The run whose backup this must be (C(metadata.run_id) in the sidecar, as the migration recorded it).
      - The archive is refused, naming both, when it differs or records none. Not checked when omitted.
    type: str
  schema:
    description: Schema of the table to restore. Default the sidecar's, else C(public).
    type: str
  table:
    description:
      - Table to restore. Default the sidecar's; required for an archive of the whole database.
    type: str
  restore_into:
    description:
      - V(same_database) restores the table into the database the archive was taken from, and only into it (its
        identity must match the sidecar's, see above).
      - V(scratch) restores a copy of the archived table into another database, for example a rehearsal's scratch
        database on the same server or on a rehearsal server. The database's identity (name, oid, system identifier,
        uuid) is not compared; the schema and table still are, and so are O(expected_column_type),
        O(expected_run_id), the SHA-256 and the full read of the archive. Refused when the target is the archived
        database itself (use V(same_database)) or already has the table, since a scratch copy goes into a new
        database and never replaces a table.
      - With V(scratch) the owner and privileges are not restored (C(pg_restore --no-owner --no-privileges)); the
        copy belongs to the role that restores it (a rehearsal server may not even have the archived owner's roles).
        After the restore the copy's column type is read back and must be the one the archive recorded.
    type: str
    choices: [same_database, scratch]
    default: same_database
  exclude_triggers:
    description:
      - Triggers of the table, by name, left out of the restore (with anything depending on them, such as a
        comment), reported in RV(excluded_entries). For example C(ledgermind_write_log), the write log's trigger
        (M(ledgermind.migrations.pg_write_log)) that an archive taken during a run holds, and whose function lives in
        a schema a scratch database does not have.
      - Leave empty for a rollback's restore, whose restored write-log trigger keeps logging under the run that
        took the backup.
    type: list
    elements: str
    default: []
  lock_timeout_ms:
    description:
      - Longest wait for a lock of one try, in milliseconds (the restore session's C(lock_timeout)); an application
        query queued behind the restore waits at most about this long before the try gives up and lets it through.
    type: int
    default: 1000
  lock_retries:
    description:
      - Tries at most. A try that fails on anything but a lock timeout is not retried.
    type: int
    default: 10
  # retry_delay, max_retry_delay: ledgermind.migrations.lock_budget documents them; their defaults here.
  retry_delay:
    default: 2.0
  max_retry_delay:
    default: 30.0
  psql_path:
    description:
      - psql that runs pg_restore's script. Default the one next to pg_restore (the same release, which knows the
        script's meta-commands), else found as pg_restore is.
    type: path
  pg_restore_path:
    description:
      - pg_restore to use.
      - Default found on C(PATH), then in C(pg_config --bindir), then the newest C(/usr/lib/postgresql/*/bin).
    type: path
requirements:
  - psycopg2 (C(psycopg2-binary) from PyPI is enough), to read the target database's identity
  - pg_restore and psql of the same release
notes:
  - Objects of other tables that depend on the table (a foreign key referencing it, a view) make
    the restore fail, and roll back, rather than being dropped.
  - Owners and privileges are restored as archived; run as the table's owner or a superuser.
seealso:
  - module: ledgermind.migrations.pg_backup_archive
'''

EXAMPLES = r'''
- name: Restore ml_features from the pre-migration backup of this run, and only from it
  ledgermind.migrations.pg_backup_restore:
    database_url: "{{ ledgermind_db | ledgermind.migrations.libpq_url }}"
    src: "{{ pg_backup_result.path }}"
    expected_column_type: text[]
    expected_run_id: "{{ ledgermind_run_id }}"

- name: Restore a copy of the run's backup into a rehearsal's new scratch database
  ledgermind.migrations.pg_backup_restore:
    database_url: "{{ scratch_url }}"
    src: "{{ pg_backup_report.path }}"
    restore_into: scratch
    exclude_triggers: [ledgermind_write_log]
    expected_column_type: text[]
    expected_run_id: "{{ ledgermind_run.id }}"

- name: Show what a restore would do
  ledgermind.migrations.pg_backup_restore:
    database_url: "{{ ledgermind_db | ledgermind.migrations.libpq_url }}"
    src: /var/backups/ledgermind/ledgermind_full_20260101T120000Z.dump
    expected_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    table: ml_features
  check_mode: true
'''

RETURN = r'''
restored_entries:
  description: The archive entries restored (in check mode, that would be), as C(<type> <schema> <name>).
  returned: success
  type: list
  elements: str
  sample: [TABLE public ml_features, TABLE DATA public ml_features, CONSTRAINT public ml_features ml_features_pkey]
excluded_entries:
  description: The archive entries of the table left out (O(exclude_triggers)), as C(<type> <schema> <name>).
  returned: success
  type: list
  elements: str
  sample: [TRIGGER public ml_features ledgermind_write_log]
restored_content:
  description:
    - With O(restore_into=scratch), the copy's content fingerprint read back after the restore by the column and key
      the sidecar's RV(archive_content) names (C(fingerprint), C(fingerprint_sums), C(total), C(column), C(key),
      C(matches)); the restore fails when it is not the archive's. Empty when the sidecar records no content.
  returned: success, with O(restore_into=scratch) outside check mode
  type: dict
  sample: {fingerprint: 3f1c0e5d9a7b2c4e8f6a1b3c5d7e9f01, total: 20000, column: tokens, key: txn_id, matches: true}
restored_identity:
  description:
    - The table's identity read back after the restore (in check mode, not read); its C(column_type) is the archived
      one. After a failed restore, the identity read back to show the table is as it was.
  returned: when the restore ran (not in check mode)
  type: dict
sha256:
  description: The archive's verified SHA-256.
  returned: success
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
verified:
  description: Whether the checksum matched and pg_restore read the whole archive.
  returned: success
  type: bool
  sample: true
attempts:
  description:
    - One entry per try (C(try), C(seconds), C(lock_timeout) whether it gave up on a lock, C(error) the failing
      statement's error, empty on success).
  returned: when the restore ran (not in check mode)
  type: list
  elements: dict
  sample: [{try: 1, seconds: 1.04, lock_timeout: true, error: 'ERROR:  55P03: canceling statement due to lock timeout'},
           {try: 2, seconds: 0.21, lock_timeout: false, error: ''}]
lock_holders:
  description:
    - The sessions holding locks on the table, read on the module's own connection after the last try that gave up
      on a lock (C(pid), C(usename), C(application_name), C(mode), C(state), C(transaction_seconds), C(query)).
  returned: when a try gave up on a lock
  type: list
  elements: dict
lock_timeout_ms:
  description: O(lock_timeout_ms), the lock budget of each try.
  returned: always
  type: int
  sample: 1000
psql_command:
  description: The psql command line that runs pg_restore's script (no secrets).
  returned: success
  type: list
  elements: str
  sample: [/usr/bin/psql, --no-psqlrc, --quiet, --no-password, --set=ON_ERROR_STOP=1, --set=VERBOSITY=verbose,
           --file=/var/backups/ledgermind/pg_backup_restore.x/restore.sql,
           "--dbname=application_name='ledgermind.migrations.pg_backup_restore'"]
command:
  description: The pg_restore command line writing the restore's script (no secrets; it connects nowhere).
  returned: success
  type: list
  elements: str
  sample:
    - /usr/bin/pg_restore
    - --single-transaction
    - --clean
    - --if-exists
    - --use-list=/var/backups/ledgermind/pg_backup_restore.x/restore.list
    - --file=/var/backups/ledgermind/pg_backup_restore.x/restore.raw.sql
    - /var/backups/ledgermind/ledgermind_ml_features_20260101T120000Z.dump
duration_seconds:
  description: Time spent verifying and restoring.
  returned: always
  type: float
  sample: 0.31
archive_identity:
  description:
    - The identity recorded in the archive's sidecar
      (see RV(ledgermind.migrations.pg_backup_archive#module:identity)).
  returned: when the sidecar records one
  type: dict
  sample:
    system_identifier: "7301234567890123456"
    database: ledgermind
    database_oid: 16384
    database_uuid: null
    schema: public
    table: ml_features
    table_oid: 16390
    column: tokens
    column_type: text[]
    server_version_num: 150018
archive_metadata:
  description:
    - The O(ledgermind.migrations.pg_backup_archive#module:metadata) recorded in the archive's sidecar, for example
      the run id, fingerprint, fingerprint sums and snapshot the migration recorded with its backup.
  returned: when the sidecar records an identity
  type: dict
archive_content:
  description:
    - The table's content as the archive holds it, recorded in the sidecar by
      M(ledgermind.migrations.pg_backup_archive) in the very snapshot it dumped
      (see RV(ledgermind.migrations.pg_backup_archive#module:content)), with C(fingerprint), C(fingerprint_sums),
      C(snapshot), C(column) and C(key). The table restored from the archive has this fingerprint, so it is the
      baseline of a proof after the restore; RV(archive_metadata) holds what the caller recorded, possibly taken
      at another moment.
    - Empty when the sidecar records none (an archive of the whole database, one taken without
      O(ledgermind.migrations.pg_backup_archive#module:column), or before content was recorded).
  returned: when the sidecar records an identity
  type: dict
  sample:
    fingerprint: 3f1c0e5d9a7b2c4e8f6a1b3c5d7e9f01
    fingerprint_sums: {total: 20000, hash1: "-1234567890123456789012", hash2: "987654321098765432101"}
    snapshot: "63951:63955:63952"
    column: tokens
    key: txn_id
target_identity:
  description:
    - The target's identity, read before anything changes; C(column_type) is the column's type before the restore.
  returned: when the target was reached
  type: dict
  sample:
    system_identifier: "7301234567890123456"
    database: ledgermind
    database_oid: 16384
    database_uuid: null
    schema: public
    table: ml_features
    table_oid: 16502
    column: tokens
    column_type: jsonb
    server_version_num: 150018
'''

import os
import re
import shutil
import tempfile
import time
import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ledgermind.migrations.plugins.module_utils._connection import (
    close,
    connect,
    fail,
    fail_on_query_error,
    postgres_connection_argument_spec,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._libpq import LibpqSettingsError
from ansible_collections.ledgermind.migrations.plugins.module_utils._pg_clients import (
    ClientError,
    client_env,
    describe,
    find_client,
    parse_toc,
    read_identity,
    read_sidecar,
    run_client,
    sha256_archive,
    sidecar_path,
    table_entries,
    toc_list_text,
    verify_archive,
    without_triggers,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._queries import (
    COLUMN_SQL,
    RELATION_SQL,
    TABLE_LOCK_SESSIONS_SQL,
    Sums,
    column_kind,
    identity_mismatches,
    integrity_counts_sql,
    integrity_params,
    lock_timeout_statement,
    normalize_type_name,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._retry import LockBusy, run_under_lock_budget

# How the restore's session shows in pg_stat_activity, unless connect_params names it.
APPLICATION_NAME = 'ledgermind.migrations.pg_backup_restore'
# The database the archive was dumped from, in the header of `pg_restore --list`.
_TOC_DBNAME = re.compile(r'^;\s+dbname:\s*(?P<name>.*?)\s*$', re.M)
# The line of pg_restore's script header that turns the lock budget off; the module replaces it.
SCRIPT_LOCK_TIMEOUT_OFF = b'SET lock_timeout = 0;'
# Lines of the script's header (before its first statement on the table): settings, comments, BEGIN, \restrict.
_HEADER_LINE = re.compile(rb'^(?:|--.*|SET .*|SELECT pg_catalog\.set_config\(.*|BEGIN;|\\restrict .*)$')
# A statement that gave up waiting for a lock, as psql (VERBOSITY=verbose) prints it, in any server language.
_LOCK_TIMEOUT = re.compile(r'\b55P03\b|canceling statement due to lock timeout')
COPY_CHUNK = 1024 * 1024


class Try(t.NamedTuple):
    """One try of the restore: psql's exit code and error output, how long it took, whether it gave up on a lock."""

    number: int
    rc: int
    stderr: str
    seconds: float
    lock_timeout: bool

    def record(self) -> dict[str, t.Any]:
        return {'try': self.number, 'seconds': round(self.seconds, 3), 'lock_timeout': self.lock_timeout,
                'error': '' if self.rc == 0 else error_line(self.stderr)}


def argument_spec() -> dict[str, t.Any]:
    spec = postgres_connection_argument_spec()
    spec.update(
        src=dict(type='path', required=True),
        expected_sha256=dict(type='str'),
        expected_column_type=dict(type='str'),
        expected_run_id=dict(type='str'),
        schema=dict(type='str'),
        table=dict(type='str'),
        pg_restore_path=dict(type='path'),
        psql_path=dict(type='path'),
        restore_into=dict(type='str', default='same_database', choices=['same_database', 'scratch']),
        exclude_triggers=dict(type='list', elements='str', default=[]),
        lock_timeout_ms=dict(type='int', default=1000),
        lock_retries=dict(type='int', default=10),
        retry_delay=dict(type='float', default=2.0),
        max_retry_delay=dict(type='float', default=30.0),
    )
    return spec


def dbname_conninfo(application_name: str) -> str:
    """psql's --dbname: a conninfo string holding only the session's name, as it would override PGAPPNAME;
    libpq takes every other setting, the database included, from the PG* environment."""
    value = application_name.replace('\\', '\\\\').replace("'", "\\'")
    return f"application_name='{value}'"


def restore_argv(pg_restore: str, list_file: str, script: str, src: str, scratch: bool = False) -> list[str]:
    """pg_restore writing the restore's script (one transaction: BEGIN ... COMMIT) to ``script``; a scratch copy
    (``scratch``) keeps neither the archived owner nor privileges. It connects nowhere."""
    return [
        pg_restore, '--single-transaction', '--clean', '--if-exists',
        *(['--no-owner', '--no-privileges'] if scratch else []),
        f'--use-list={list_file}', f'--file={script}', src,
    ]


def psql_argv(psql: str, script: str, application_name: str) -> list[str]:
    """psql running the script; the first error stops it, and its transaction is never committed."""
    return [psql, '--no-psqlrc', '--quiet', '--no-password', '--set=ON_ERROR_STOP=1', '--set=VERBOSITY=verbose',
            f'--file={script}', f'--dbname={dbname_conninfo(application_name)}']


def lock_timeout_line(lock_timeout_ms: int) -> bytes:
    return f'{lock_timeout_statement(lock_timeout_ms)}\n'.encode()


def feed_script(source: t.BinaryIO, sink: t.BinaryIO, lock_line: bytes) -> bool:
    """Copy pg_restore's script from ``source`` to ``sink`` with the lock budget in force: the header's
    ``SET lock_timeout = 0;`` becomes ``lock_line``, which is also put before the first statement when the header
    has no such line. Returns whether the budget was set. Only the header is read line by line (the data is copied
    in chunks, untouched)."""
    placed = False
    for line in iter(source.readline, b''):
        stripped = line.strip()
        if stripped == SCRIPT_LOCK_TIMEOUT_OFF:
            sink.write(lock_line)
            placed = True
            continue
        if not _HEADER_LINE.match(stripped):
            if not placed:
                sink.write(lock_line)
                placed = True
            sink.write(line)
            break
        sink.write(line)
    shutil.copyfileobj(source, sink, COPY_CHUNK)
    return placed


def is_lock_timeout(stderr: str) -> bool:
    return bool(_LOCK_TIMEOUT.search(stderr))


def error_line(stderr: str) -> str:
    """The first ERROR line of psql's output (else its last line), without psql's ``psql:<stdin>:12:`` prefix."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    chosen = next((line for line in lines if 'ERROR:' in line), lines[-1] if lines else 'no error output')
    return re.sub(r'^psql:[^:]*:\d+:\s*', '', chosen)


def elapsed(result: dict[str, t.Any], started: float) -> dict[str, t.Any]:
    result['duration_seconds'] = round(time.monotonic() - started, 3)
    return result


def same_type(expected: str, recorded: str) -> bool:
    """Whether two spellings name one type (``text[]``, ``_text``, ``text ARRAY``)."""
    try:
        return normalize_type_name(expected) == normalize_type_name(recorded)
    except ValueError:
        return False


def sidecar_refusal(src: str, sidecar_file: str, sidecar: dict[str, t.Any] | None, expected_column_type: str | None,
                    expected_run_id: str | None) -> str | None:
    """Why the sidecar alone forbids restoring ``src`` (no sidecar, no identity, another column type or
    run than expected), or None. Runs before anything else, the database included."""
    if sidecar is None:
        return (
            f'refusing to restore {src}: there is no sidecar {sidecar_file}, so nothing records which database '
            'the archive is of, nor its checksum. Restore an archive written by pg_backup_archive, with its sidecar.'
        )
    identity = sidecar.get('identity')
    if not identity:
        taken_from = f" (it says it was taken from {sidecar['database']})" if sidecar.get('database') else ''
        return (
            f'refusing to restore {src}: its sidecar {sidecar_file} records no database identity{taken_from}; it was '
            'written before pg_backup_archive recorded one, so nothing proves the archive is of this database. Take '
            "a new backup with this collection's pg_backup_archive and restore that; to use this archive anyway, "
            'check by hand that it is of this database (`pg_restore --list` shows its dbname) and run pg_restore '
            'yourself. Nothing was changed.'
        )
    if expected_run_id:
        metadata = sidecar.get('metadata') or {}
        recorded_run = metadata.get('run_id')
        if recorded_run is None or str(recorded_run) != expected_run_id:
            return (
                f"refusing to restore {src}: it is the backup of run {recorded_run or '(none recorded)'}, expected "
                f'run {expected_run_id} (metadata.run_id in {sidecar_file}). Restore the archive of run '
                f'{expected_run_id}. Nothing was changed.'
            )
    if expected_column_type:
        recorded_type = identity.get('column_type')
        if not recorded_type or not same_type(expected_column_type, recorded_type):
            column = '{}.{}.{}'.format(identity.get('schema'), identity.get('table'), identity.get('column'))
            held = f'holds {column} as {recorded_type}' if recorded_type else (
                "records no column type (a whole-database archive, or one taken without pg_backup_archive's column)")
            return (
                f'refusing to restore {src}: the archive {held}, the restore expects {expected_column_type} '
                f'(identity.column_type in {sidecar_file}). Restore an archive taken while the column was '
                f'{expected_column_type}. Nothing was changed.'
            )
    return None


def identity_refusal(src: str, recorded: dict[str, t.Any], current: dict[str, t.Any]) -> str | None:
    """Why the archive (``recorded`` identity) is not a backup of the target (``current``), naming both, or None."""
    mismatches = identity_mismatches(recorded, current)
    if not mismatches:
        return None
    return (
        f'refusing to restore {src} into {describe(current)}: the archive is of {describe(recorded)} '
        f"(differs in {'; '.join(mismatches)}). Restore a backup of this database; nothing was changed."
    )


# The fields naming the database (not the table) in an identity (_queries.IDENTITY_FIELDS).
DATABASE_IDENTITY_FIELDS = ('system_identifier', 'database', 'database_oid', 'database_uuid')


def scratch_refusal(src: str, recorded: dict[str, t.Any], current: dict[str, t.Any]) -> str | None:
    """Why a scratch copy of the archive (``recorded`` identity) may not go into the target (``current``), or None:
    another table than the archived one, the archived database itself, or a target that already has the table."""
    archived = '{}.{}'.format(recorded.get('schema'), recorded.get('table'))
    named = '{}.{}'.format(current.get('schema'), current.get('table'))
    if archived != named:
        return (
            f'refusing to restore a scratch copy of {src} as {named}: the archive is of {archived}, and a scratch '
            f"copy keeps the archived table's name. Restore {archived}; nothing was changed."
        )
    same = {name: recorded.get(name) for name in DATABASE_IDENTITY_FIELDS}
    if not identity_mismatches(dict(same, schema=None, table=None), dict(current, schema=None, table=None)):
        return (
            f'refusing to restore a scratch copy of {src} into {describe(current)}: that is the archived database '
            'itself, and a scratch copy goes into another, new database. To restore this database\'s table from its '
            'backup use restore_into=same_database; nothing was changed.'
        )
    if current.get('table_oid') is not None:
        return (
            f'refusing to restore a scratch copy of {src} into {describe(current)}: the table already exists there, '
            'and a scratch copy never replaces a table. Restore into a new, empty database; nothing was changed.'
        )
    return None


def header_refusal(src: str, listing: str, recorded: dict[str, t.Any]) -> str | None:
    """Why the archive's own header (``pg_restore --list``) contradicts its sidecar's database, or None."""
    match = _TOC_DBNAME.search(listing)
    if match and recorded.get('database') and match.group('name') != recorded['database']:
        return (
            f"refusing to restore {src}: pg_restore says it was dumped from database {match.group('name')}, but its "
            f"sidecar records {recorded['database']}; the sidecar is not this archive's. Nothing was changed."
        )
    return None


def describe_holder(row: dict[str, t.Any]) -> str:
    seconds = row.get('transaction_seconds')
    open_for = f', transaction open {seconds:.1f} s' if isinstance(seconds, (int, float)) else ''
    query = ' '.join(str(row.get('query') or '').split())
    return (f"pid {row.get('pid')} (application_name {row.get('application_name') or '(none)'!r}, user "
            f"{row.get('usename')}, state {row.get('state') or '?'}{open_for}, holding {row.get('mode')}"
            f"{', last query: ' + query if query else ''})")


def budget_refusal(lock_timeout_ms: int, lock_retries: int, retry_delay: float, max_retry_delay: float) -> str | None:
    """Why the lock budget's options cannot be used, or None."""
    if lock_timeout_ms < 1 or lock_retries < 1:
        return (f'lock_timeout_ms and lock_retries must be at least 1 (got {lock_timeout_ms} and {lock_retries}): '
                'the restore never waits for a lock without a bound. Nothing was changed.')
    if retry_delay < 0 or max_retry_delay < 0:
        return (f'retry_delay and max_retry_delay must be 0 or more (got {retry_delay:g} and {max_retry_delay:g}). '
                'Nothing was changed.')
    return None


def unchanged_evidence(relation: str, column: str | None, before: dict[str, t.Any],
                       after: dict[str, t.Any]) -> tuple[bool, str]:
    """Whether the table read back after a failed restore is the one read before it, and the words saying so."""
    def shape(identity: dict[str, t.Any]) -> str:
        if identity.get('table_oid') is None:
            return 'no such table'
        return f"table oid {identity['table_oid']}, column {column} {identity.get('column_type')}"

    same = (before.get('table_oid'), before.get('column_type')) == (after.get('table_oid'), after.get('column_type'))
    if same:
        return True, (f'Nothing was changed: read back from the database, {relation} is as it was before the restore '
                      f'({shape(after)}); the restore\'s transaction, which drops and recreates the table, never '
                      'committed.')
    return False, (f'The table is NOT as it was: read back, {relation} is {shape(after)}, before the restore it was '
                   f'{shape(before)}; inspect it before anything else.')


# ---------------------------------------------------------------------------------------------
# Steps of main()
# ---------------------------------------------------------------------------------------------

def check_options(module: AnsibleModule, result: dict[str, t.Any], started: float) -> tuple[str, dict[str, str]]:
    """The archive's path and the clients' PG* environment; refuses an unusable option first."""
    p = module.params
    result['lock_timeout_ms'] = p['lock_timeout_ms']
    refusal = budget_refusal(p['lock_timeout_ms'], p['lock_retries'], p['retry_delay'], p['max_retry_delay'])
    if refusal:
        fail(module, refusal, **elapsed(result, started))
    src = p['src'].rstrip('/') or p['src']
    if not os.path.exists(src):
        fail(module, f'archive {src} does not exist', **elapsed(result, started))
    try:
        env = client_env(p, APPLICATION_NAME)
    except LibpqSettingsError as exc:
        fail(module, f'invalid connection settings: {exc}', **elapsed(result, started))
    return src, env


def read_archive_record(module: AnsibleModule, src: str, result: dict[str, t.Any],
                        started: float) -> tuple[dict[str, t.Any], str, str]:
    """The sidecar (refused without identity, or of another run or column type), the schema and the table."""
    p = module.params
    sidecar_file = sidecar_path(src)
    try:
        sidecar = read_sidecar(sidecar_file)
    except ClientError as exc:
        fail(module, f'refusing to restore {src}: {exc}', **elapsed(result, started))
    refusal = sidecar_refusal(src, sidecar_file, sidecar, p['expected_column_type'], p['expected_run_id'])
    if refusal or sidecar is None:
        fail(module, refusal or 'no sidecar', **elapsed(result, started))
    result['archive_identity'] = sidecar['identity']
    # What the caller recorded with the backup (run id, fingerprint): the proof of a restore compares with it.
    result['archive_metadata'] = sidecar.get('metadata') or {}
    # The archive's own content (its dump's snapshot), when recorded: what the restored table must hold.
    result['archive_content'] = sidecar.get('content') or {}
    schema = p['schema'] or sidecar.get('schema') or 'public'
    table = p['table'] or sidecar.get('table')
    if not table:
        fail(module, f'{src} is an archive of the whole database: name the table to restore (table)',
             **elapsed(result, started))
    return sidecar, schema, table


def check_target(module: AnsibleModule, src: str, recorded: dict[str, t.Any], schema: str, table: str,
                 result: dict[str, t.Any], started: float) -> dict[str, t.Any]:
    """The target's identity, read on our own connection; another database's archive is refused here, and a
    scratch copy is refused in the archived database itself or over an existing table."""
    current = read_identity(module, schema, table, recorded.get('column'))
    result['target_identity'] = current
    scratch = module.params['restore_into'] == 'scratch'
    refusal = scratch_refusal(src, recorded, current) if scratch else identity_refusal(src, recorded, current)
    if refusal:
        fail(module, refusal, **elapsed(result, started))
    return current


def verify(module: AnsibleModule, src: str, sidecar: dict[str, t.Any], schema: str, table: str,
           result: dict[str, t.Any], started: float) -> tuple[str, str, list[t.Any]]:
    """Checksum, full read and header of the archive; the clients; the entries of the table to restore."""
    p = module.params
    try:
        expected = (sidecar.get('sha256') or '').strip().lower()
        if not expected:
            raise ClientError(f'refusing to restore {src}: its sidecar {sidecar_path(src)} records no sha256')
        wanted = (p['expected_sha256'] or '').strip().lower()
        if wanted and wanted != expected:
            raise ClientError(
                f'refusing to restore {src}: expected SHA-256 {wanted}, but its sidecar {sidecar_path(src)} records '
                f'{expected}; the sidecar describes another archive'
            )
        actual = sha256_archive(src)
        if actual != expected:
            raise ClientError(
                f'refusing to restore {src}: its SHA-256 is {actual}, expected {expected}; '
                'the archive was altered or truncated'
            )
        pg_restore = find_client('pg_restore', p['pg_restore_path'], module=module)
        psql = find_client('psql', p['psql_path'], near=pg_restore, module=module)
        verify_archive(pg_restore, src, module=module)
        listing = run_client([pg_restore, '--list', '--verbose', src], module=module)
        if listing.rc != 0:
            raise ClientError(f'pg_restore --list failed: {listing.stderr.strip()}')
        refusal = header_refusal(src, listing.stdout, sidecar['identity'])
        if refusal:
            raise ClientError(refusal)
    except (ClientError, OSError) as exc:
        fail(module, str(exc), **elapsed(result, started))
    result.update(sha256=actual, verified=True)
    entries = table_entries(parse_toc(listing.stdout), schema, table)
    if not entries:
        fail(module, f'archive {src} holds no table {schema}.{table}', **elapsed(result, started))
    entries, excluded = without_triggers(entries, table, p['exclude_triggers'])
    result['restored_entries'] = [entry.label for entry in entries]
    result['excluded_entries'] = [entry.label for entry in excluded]
    return pg_restore, psql, entries


def write_script(module: AnsibleModule, workdir: str, result: dict[str, t.Any], started: float) -> str:
    """pg_restore's script for the selected entries, written once for every try, with the lock budget in force."""
    raw = os.path.join(workdir, 'restore.raw.sql')
    try:
        made = run_client(result['command'], module=module)
    except ClientError as exc:
        fail(module, f'{exc}. Nothing was changed.', **elapsed(result, started))
    if made.rc != 0:
        fail(module, f'pg_restore could not write the restore script (exit code {made.rc}): {made.stderr.strip()}. '
                     'Nothing was changed.', **elapsed(result, started))
    script = os.path.join(workdir, 'restore.sql')
    with open(raw, 'rb') as source, open(script, 'wb') as sink:
        feed_script(source, sink, lock_timeout_line(module.params['lock_timeout_ms']))
    os.unlink(raw)
    return script


def run_try(module: AnsibleModule, number: int, env: dict[str, str], argv: list[str]) -> Try:
    """One try: psql runs the script in one transaction, under the lock budget."""
    started = time.monotonic()
    try:
        done = run_client(argv, env, module=module)
    except ClientError as exc:
        return Try(number, 1, str(exc), time.monotonic() - started, False)
    return Try(number, done.rc, done.stderr.strip(), time.monotonic() - started,
               done.rc != 0 and is_lock_timeout(done.stderr))


def read_lock_holders(module: AnsibleModule, schema: str, table: str) -> list[dict[str, t.Any]]:
    """Sessions holding (granted) locks on the table, read on the module's own read-only connection; best effort."""
    conn = connect(module)
    try:
        with conn.cursor() as cur:
            cur.execute(TABLE_LOCK_SESSIONS_SQL, {'schema': schema, 'table': table})
            rows = [dict(row) for row in cur.fetchall()]
        return [row for row in rows if row.get('granted') and row.get('application_name') != APPLICATION_NAME]
    except Exception:  # noqa: BLE001 - the message still explains the lock timeout without them
        return []
    finally:
        close(conn)


class GaveWay(LockBusy):
    """A try that gave up on its lock (rolled back whole), for the lock-budget runner to back off and retry."""

    def __init__(self, attempt: Try) -> None:
        super().__init__(attempt.stderr)
        self.attempt = attempt


def last_try(error: BaseException, _tries: int) -> Try:
    """The lock budget is spent: the last try, whose lock timeout judge() explains (naming the holders)."""
    if isinstance(error, GaveWay):
        return error.attempt
    raise error


def run_restore(module: AnsibleModule, env: dict[str, str], schema: str, table: str,
                result: dict[str, t.Any]) -> Try:
    """The restore under the lock budget (``run_under_lock_budget``), each try in one transaction; a try that gave
    up on a lock is retried after the back-off. Returns the last try, failed or not: judge() reads the table back."""
    p = module.params
    result['attempts'] = []

    def one_try(number: int) -> Try:
        attempt = run_try(module, number, env, result['psql_command'])
        result['attempts'].append(attempt.record())
        if attempt.lock_timeout:
            # Read while the holder likely still holds the lock: the message names it even after the last try.
            result['lock_holders'] = read_lock_holders(module, schema, table)
            raise GaveWay(attempt)
        return attempt

    return run_under_lock_budget(one_try, p['lock_retries'], p['retry_delay'], p['max_retry_delay'], last_try)


def work_directory(src: str) -> str:
    """A private directory for the restore's list and script: next to the archive when that directory is writable
    (the backup directory, whose room was checked for the archive), else the system's temporary directory."""
    near = os.path.dirname(os.path.abspath(src))
    return tempfile.mkdtemp(prefix='pg_backup_restore.', dir=near if os.access(near, os.W_OK) else None)


def failure_message(module: AnsibleModule, relation: str, last: Try, result: dict[str, t.Any], evidence: str) -> str:
    p = module.params
    if not last.lock_timeout:
        return (f'the restore of {relation} failed (exit code {last.rc}); it ran in one transaction, which was '
                f'rolled back: {last.stderr.strip()[-2000:]} {evidence}')
    tries = result['attempts']
    holders = '; '.join(describe_holder(row) for row in result.get('lock_holders') or []) or (
        'none any more (they ended after the last try; see pg_locks and pg_stat_activity)')
    waited = ', '.join(f"{a['seconds']:.2f} s" for a in tries)
    return (
        f"{relation} stayed locked by another session: {len(tries)} tr{'y' if len(tries) == 1 else 'ies'} of the "
        f"restore each waited at most {p['lock_timeout_ms']} ms for its lock, so that no application query queued "
        f'behind the restore for longer, and all gave up (each try took {waited}, back-off between them). Holding '
        f'locks on the table: {holders}. {evidence} Retry the restore once that session has finished (or end it: '
        'SELECT pg_terminate_backend(<pid>)), or give it more tries (lock_retries, retry_delay).'
    )


def read_content(module: AnsibleModule, schema: str, table: str, archived: dict[str, t.Any]) -> dict[str, t.Any]:
    """The restored table's content fingerprint, read as pg_backup_archive recorded the archive's (the same pass of
    pg_jsonb_integrity, by the same column and key), compared with the sidecar's (``archived``); empty when the
    sidecar records none or the column is not one the fingerprint reads."""
    column, key = archived.get('column'), archived.get('key')
    if not (archived.get('fingerprint') and column and key):
        return {}
    conn = connect(module)
    try:
        with conn.cursor() as cur:
            cur.execute(RELATION_SQL, {'schema': schema, 'table': table})
            relation = cur.fetchone()
            cur.execute(COLUMN_SQL, {'schema': schema, 'table': table, 'relid': relation['relid'], 'column': column})
            info = cur.fetchone()
            kind = column_kind(info['data_type'], info['udt_name']) if info else None
            if kind is None:
                return {}
            cur.execute(integrity_counts_sql(schema, table, key, column, kind), integrity_params('array', 'string'))
            row = cur.fetchone()
    except Exception as exc:  # noqa: BLE001 - psycopg2.Error: a clear message, never a traceback
        fail_on_query_error(module, conn, exc, f'{schema}.{table}')
    finally:
        close(conn)
    sums = Sums(int(row['total']), int(row['hash1']), int(row['hash2']))
    return {'fingerprint': sums.fingerprint(), 'fingerprint_sums': sums.as_json(), 'total': sums.total,
            'column': column, 'key': key, 'matches': sums.fingerprint() == archived['fingerprint']}


def judge(module: AnsibleModule, src: str, recorded: dict[str, t.Any], before: dict[str, t.Any], last: Try,
          schema: str, table: str, result: dict[str, t.Any], started: float) -> None:
    """The verdict, from the table read back: on failure, that it is as it was; on success, that it exists
    with the archived column type."""
    relation = f'{schema}.{table}'
    column = recorded.get('column')
    after = read_identity(module, schema, table, column)
    result['restored_identity'] = after
    if last.rc != 0:
        unchanged, evidence = unchanged_evidence(relation, column, before, after)
        result['changed'] = not unchanged
        fail(module, failure_message(module, relation, last, result, evidence), **elapsed(result, started))
    result['changed'] = True
    recorded_type = recorded.get('column_type')
    wrong_type = recorded_type and not same_type(recorded_type, after.get('column_type') or '')
    if after.get('table_oid') is None or wrong_type:
        copy = 'the scratch copy of ' if module.params['restore_into'] == 'scratch' else ''
        has = after.get('column_type') if after.get('table_oid') is not None else 'no such table'
        fail(module, f'{copy}{relation} restored from {src} is not the archived table: the archive recorded column '
                     f'{column} as {recorded_type}, the database has {has}', **elapsed(result, started))
    if module.params['restore_into'] == 'scratch':
        # A copy is read back whole: its content must be the one the archive's sidecar records.
        content = read_content(module, schema, table, result.get('archive_content') or {})
        result['restored_content'] = content
        if content and not content['matches']:
            fail(module, f"the scratch copy of {relation} restored from {src} does not hold the archive's content: "
                         f"fingerprint {content['fingerprint']} over {content['total']} rows, the archive's sidecar "
                         f"records {result['archive_content']['fingerprint']}", **elapsed(result, started))


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    started = time.monotonic()
    result: dict[str, t.Any] = dict(changed=False)
    src, env = check_options(module, result, started)
    sidecar, schema, table = read_archive_record(module, src, result, started)
    before = check_target(module, src, sidecar['identity'], schema, table, result, started)
    pg_restore, psql, entries = verify(module, src, sidecar, schema, table, result, started)
    workdir = work_directory(src)
    try:
        list_file, script = os.path.join(workdir, 'restore.list'), os.path.join(workdir, 'restore.sql')
        result['command'] = restore_argv(pg_restore, list_file, os.path.join(workdir, 'restore.raw.sql'), src,
                                         module.params['restore_into'] == 'scratch')
        result['psql_command'] = psql_argv(psql, script, env['PGAPPNAME'])
        if module.check_mode:
            result['changed'] = True
            module.exit_json(**elapsed(result, started))
        with open(list_file, 'w', encoding='utf-8') as handle:
            handle.write(toc_list_text(entries))
        write_script(module, workdir, result, started)
        last = run_restore(module, env, schema, table, result)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    judge(module, src, sidecar['identity'], before, last, schema, table, result, started)
    module.exit_json(**elapsed(result, started))


if __name__ == '__main__':
    main()
