#!/usr/bin/python
# Copyright (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: pg_backup_archive
short_description: Write a verified, checksummed pg_dump archive of a table or a database
version_added: 0.1.0
description:
  - Runs C(pg_dump) into a compact archive (custom or directory format) under a C(.partial) name,
    has C(pg_restore --file=/dev/null) read the whole archive (a truncated archive fails there, while
    C(pg_restore --list) would still pass), computes its SHA-256, makes it private (0600) and only then
    gives it its final, timestamped name.
  - In custom format the dump is streamed once, as C(pg_dump -Fc > archive) would write it, into the
    archive file, the checksum and C(pg_restore) at the same time, so verifying costs no extra pass.
    A directory archive is read back after C(pg_dump) finishes.
  - Writes a JSON sidecar C(<archive>.json) with the checksum, size, creation time, database
    (without password), scope, table, pg_dump version, caller-supplied O(metadata) and the database
    C(identity) the module reads itself, on its own connection, so a caller cannot mislabel an archive
    (see RV(identity)).
  - With O(column), records the table's content as it is in the archive (RV(content)). The module opens a READ ONLY,
    REPEATABLE READ transaction, locks the table (ACCESS SHARE, as pg_dump does, before any snapshot exists, so no
    C(ALTER TABLE) commits in between), exports its snapshot and has pg_dump dump that very snapshot
    (C(--snapshot)). In the same transaction, while pg_dump runs, it computes the fingerprint exactly as
    M(ledgermind.migrations.pg_jsonb_integrity) does (the same counting pass, keyed by the table's single-column
    primary key). Under live writes that fingerprint describes the archive, whatever the application writes
    before or during the dump; a fingerprint taken earlier (a pre-flight's) need not. The transaction stays open
    until pg_dump ends. Without a single-column primary key, or for a column that is not an array, C(json) or
    C(jsonb), the module warns and records no content.
  - Keeps the newest O(keep) archives of this database's table with the same O(prefix) and deletes
    older ones with their sidecars, only after the new archive is verified. Only archives whose sidecar
    identity is this database's table are ever deleted - never another database's, whatever the prefix,
    nor one without a readable sidecar or identity - and the newest archive of each recorded column type
    is always kept (RV(kept_last_of_type)), so the last backup of the pre-migration state survives any
    number of later backups.
  - Connection settings reach pg_dump as C(PG*) environment variables, so the password is never
    on a command line, in the process list or in the module output. SSL settings reach pg_dump too.
  - pg_dump waits at most O(lock_timeout) seconds for its table locks (C(--lock-wait-timeout)), so a
    backup fails rather than queueing behind an C(ALTER TABLE).
  - Refuses early, with the fix, when pg_dump is missing or older than the server.
  - Refuses before pg_dump starts, also in check mode and with nothing written, when the file system of O(dest_dir)
    has less free space than the archive is expected to take times O(free_space_margin), naming both and how much to
    free (RV(space)). The archive is expected to take the table's C(pg_total_relation_size) (C(pg_database_size) for
    O(scope=full)) times 0.2 when compressed, 0.7 with O(compress_level=0) (the ratios measured on the demo table,
    rounded up). Free space that cannot be read is reported with a warning, never refused.
author:
  - LedgerMind SRE (@ledgermind)
extends_documentation_fragment:
  - ledgermind.migrations.connection
  - ledgermind.migrations.connection.lock_timeout
  - ledgermind.migrations.connection.clients
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: >-
      Checks the connection, the client version and the free space (RV(space)), writes nothing and returns the command
      that would run.
options:
  dest_dir:
    description: Directory receiving the archive; created with mode 0700 when missing.
    type: path
    required: true
  prefix:
    description:
      - Start of the archive's file name, also the group O(keep) counts within.
      - Default C(<database>_<table>) (C(<database>_<schema>.<table>) outside C(public)), or
        C(<database>_full) for O(scope=full).
    type: str
  scope:
    description: Dump one table (with its indexes, constraints, owned sequences...) or the whole database.
    type: str
    choices: [table, full]
    default: table
  schema:
    description: Schema of the table, for O(scope=table).
    type: str
    default: public
  table:
    description: Table to dump; required for O(scope=table).
    type: str
  column:
    description:
      - A column of O(table) whose type the sidecar records in C(identity.column_type) (PostgreSQL's
        spelling, e.g. C(text[]) or C(jsonb)), checked by
        O(ledgermind.migrations.pg_backup_restore#module:expected_column_type) and kept apart by retention,
        which keeps the newest archive of each column type.
      - The column whose content fingerprint is taken in the dump's own snapshot and recorded as RV(content)
        (sidecar C(content)); without O(column) none is.
      - The module fails before dumping when the table has no such column. Ignored for O(scope=full).
    type: str
  format:
    description: pg_dump archive format; both are compressed and can be restored selectively.
    type: str
    choices: [custom, directory]
    default: custom
  compress_level:
    description:
      - pg_dump compression level, C(0) (none) to C(9). Level 1 is the measured sweet spot (C(make bench)) -
        about twice as fast as the default level 6 and still about 3 times smaller than a plain dump.
    type: int
    default: 1
  keep:
    description:
      - How many archives of this database's table with this O(prefix) to keep, including the new one; C(0) keeps all.
      - Archives of other databases or tables, and archives whose sidecar is missing, unreadable or records no
        identity, are never deleted and do not count (RV(retention_skipped)).
    type: int
    default: 5
  metadata:
    description: Anything to record in the sidecar, e.g. the pre-flight fingerprint and row count.
    type: dict
    default: {}
  free_space_margin:
    description:
      - The free space asked for in O(dest_dir)'s file system is the archive's expected size times this factor. The
        expected size comes from the demo data, whose tokens compress better than most; the default 2 leaves room for
        data that compresses half as well.
      - C(0) checks nothing.
    type: float
    default: 2.0
  pg_dump_path:
    description:
      - pg_dump to use.
      - Default found on C(PATH), then in C(pg_config --bindir), then the newest C(/usr/lib/postgresql/*/bin).
    type: path
  pg_restore_path:
    description: pg_restore used for verification. Default next to pg_dump, then found like O(pg_dump_path).
    type: path
requirements:
  - psycopg2 (C(psycopg2-binary) from PyPI is enough), to read the database identity
notes:
  - The content scan runs, like pg_dump, without a statement timeout (O(query_timeout) is not applied) and with
    C(idle_in_transaction_session_timeout) off for its transaction, which must outlive pg_dump's import of its
    snapshot; its table lock waits at most O(lock_timeout) seconds, as pg_dump's does.
  - An C(ALTER TABLE) that arrives after the content transaction locked the table but before pg_dump did queues
    behind the one and ahead of the other; pg_dump then gives up after O(lock_timeout) seconds and the backup fails
    (with O(lock_timeout=0), both wait until the C(ALTER TABLE) gives up).
  - The password is passed in C(PGPASSWORD) to the client processes only; it is masked in any
    output of this module, also when it is part of O(database_url).
  - For a directory archive, RV(sha256) is the SHA-256 of the C(sha256sum)-style listing of its files.
seealso:
  - module: ledgermind.migrations.pg_backup_restore
'''

EXAMPLES = r'''
- name: Back up ml_features before the migration, recording the type of tokens
  ledgermind.migrations.pg_backup_archive:
    database_url: "{{ ledgermind_db | ledgermind.migrations.libpq_url }}"
    dest_dir: /var/backups/ledgermind
    table: ml_features
    column: tokens
    metadata:
      run_id: "{{ ledgermind_run_id }}"
      fingerprint: "{{ migration_preflight_findings.fingerprint }}"
      total: "{{ migration_preflight_findings.total }}"
  register: backup

- name: Back up the whole database in directory format, keeping 3
  ledgermind.migrations.pg_backup_archive:
    login_host: db.internal
    login_user: ledgermind
    login_password: "{{ vault_db_password }}"
    login_db: ledgermind
    ssl_mode: verify-full
    ca_cert: /etc/ssl/ledgermind-ca.pem
    scope: full
    format: directory
    keep: 3
    dest_dir: /var/backups/ledgermind
'''

RETURN = r'''
path:
  description: The verified archive (in check mode, the name it would get).
  returned: always
  type: str
  sample: /var/backups/ledgermind/ledgermind_ml_features_20260101T120000Z.dump
sidecar:
  description: The JSON sidecar written next to the archive.
  returned: always
  type: str
  sample: /var/backups/ledgermind/ledgermind_ml_features_20260101T120000Z.dump.json
size_bytes:
  description: Size of the archive (sum of its files for a directory archive).
  returned: success and not check mode
  type: int
  sample: 140213
sha256:
  description: SHA-256 of the archive.
  returned: success and not check mode
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
duration_seconds:
  description: Time spent dumping, verifying and hashing.
  returned: always
  type: float
  sample: 0.42
verified:
  description: Whether pg_restore read the whole archive back without error (false in check mode).
  returned: always
  type: bool
  sample: true
command:
  description:
    - The pg_dump command line (no secrets; connection settings travel in the environment).
    - Without C(--file) in custom format, whose output the module streams into the archive.
    - With C(--snapshot=<id>) when RV(content) is taken (not in check mode, where no snapshot is exported).
  returned: always
  type: list
  elements: str
  sample:
    - /usr/bin/pg_dump
    - --format=custom
    - --compress=1
    - --no-password
    - --lock-wait-timeout=5000
    - --strict-names
    - --table="public"."ml_features"
    - --file=/var/backups/ledgermind/ledgermind_ml_features_20260101T120000Z.dump.partial
deleted:
  description: Older archives and sidecars deleted by retention (in check mode, those that would be).
  returned: always
  type: list
  elements: str
  sample: [/var/backups/ledgermind/ledgermind_ml_features_20251231T120000Z.dump]
kept_last_of_type:
  description:
    - Archives beyond O(keep) that retention kept (in check mode, would keep) because each is the newest archive of
      its recorded column type, e.g. the last C(text[]) backup after backups of the converted C(jsonb) table.
  returned: always
  type: list
  elements: str
  sample: [/var/backups/ledgermind/ledgermind_ml_features_20251230T120000Z.dump]
retention_skipped:
  description:
    - Archives with this O(prefix) that retention left alone because they are not this database's table, or nothing
      proves they are (no sidecar, an unreadable one, no identity); each with the reason. Empty when O(keep=0).
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The archive.
      type: str
    reason:
      description: Why it is not a candidate for deletion.
      type: str
  sample:
    - path: /var/backups/ledgermind/tokens_20251229T120000Z.dump
      reason: "another database or table: database lm_other (recorded) vs ledgermind (target)"
identity:
  description:
    - The database identity recorded in the sidecar as C(identity), read by the module on its own connection
      (C(database_identity) in the collection's C(_queries) module_utils).
    - For O(scope=full) the database alone (C(schema), C(table), C(column) and C(column_type) null).
  returned: success
  type: dict
  contains:
    system_identifier:
      description: The cluster's C(pg_control_system()) identifier; null when the role may not read it.
      type: str
    database:
      description: C(current_database()).
      type: str
    database_oid:
      description: The database's oid.
      type: int
    database_uuid:
      description: The database's id in C(ledgermind_migrations.database_instance); null before the first run record.
      type: str
    schema:
      description: The table's schema.
      type: str
    table:
      description: The table.
      type: str
    table_oid:
      description: The table's oid (recorded, never compared - a restore recreates the table under a new one).
      type: int
    column:
      description: O(column).
      type: str
    column_type:
      description: The column's type, e.g. C(text[]) or C(jsonb).
      type: str
    server_version_num:
      description: The server's C(server_version_num).
      type: int
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
content:
  description:
    - The table's content in the archive, recorded in the sidecar as C(content); computed in the snapshot pg_dump
      dumped, exactly as M(ledgermind.migrations.pg_jsonb_integrity) computes its
      RV(ledgermind.migrations.pg_jsonb_integrity#module:fingerprint), so a table restored from the archive has
      this fingerprint.
    - Null without O(column), for O(scope=full), and when the table has no single-column primary key or the
      column is not an array, C(json) or C(jsonb) (the module then warns).
  returned: success and not check mode
  type: dict
  contains:
    fingerprint:
      description: The content fingerprint of the archived rows.
      type: str
    fingerprint_sums:
      description:
        - The fingerprint's exact parts, as pg_jsonb_integrity's
          RV(ledgermind.migrations.pg_jsonb_integrity#module:fingerprint_sums) (hash sums as decimal strings); with
          RV(content.snapshot), its O(ledgermind.migrations.pg_jsonb_integrity#module:baseline).
      type: dict
      contains:
        total:
          description: Rows.
          type: int
        hash1:
          description: Sum of the first row hashes.
          type: str
        hash2:
          description: Sum of the second row hashes.
          type: str
    snapshot:
      description: The dump's snapshot, C(pg_current_snapshot()) text, the baseline snapshot of a write-log proof.
      type: str
    column:
      description: O(column).
      type: str
    key:
      description: The primary key column the fingerprint's rows are keyed by.
      type: str
  sample:
    fingerprint: 3f1c0e5d9a7b2c4e8f6a1b3c5d7e9f01
    fingerprint_sums: {total: 20000, hash1: "-1234567890123456789012", hash2: "987654321098765432101"}
    snapshot: "63951:63955:63952"
    column: tokens
    key: txn_id
created:
  description: When the archive was written (UTC, ISO 8601), as in the sidecar.
  returned: success and not check mode
  type: str
  sample: "2026-01-01T12:00:00Z"
space:
  description:
    - The free space check made before pg_dump starts (in check mode too).
  returned: when the table or database was read
  type: dict
  contains:
    checked:
      description: Whether the free space was compared (false when it could not be read, or O(free_space_margin=0)).
      type: bool
    enough:
      description: Whether the free space covers RV(space.needed_bytes); null when not checked.
      type: bool
    directory:
      description: The directory whose file system was measured (O(dest_dir), or its nearest existing parent).
      type: str
    free_bytes:
      description: Free bytes there (for an unprivileged writer); null when they could not be read.
      type: int
    basis:
      description:
        - What the estimate starts from, C(pg_total_relation_size(<schema>.<table>)) or
          C(pg_database_size(<database>)).
        - C(pg_class.relpages(<schema>.<table>)), the planner's page counts, while another session holds a lock on
          the table or one of its indexes that C(pg_total_relation_size) would wait for; the backup then waits for its
          own lock as usual.
      type: str
    basis_bytes:
      description: Its size.
      type: int
    factor:
      description: The archive's expected size per byte of RV(space.basis_bytes) at this O(compress_level).
      type: float
    estimated_bytes:
      description: The archive's expected size.
      type: int
    margin:
      description: O(free_space_margin).
      type: float
    needed_bytes:
      description: RV(space.estimated_bytes) times RV(space.margin).
      type: int
    summary:
      description: One line with the numbers, or why they were not compared.
      type: str
  sample:
    checked: true
    enough: true
    directory: /var/backups/ledgermind
    free_bytes: 10737418240
    basis: pg_total_relation_size(public.ml_features)
    basis_bytes: 36175872
    factor: 0.2
    estimated_bytes: 7235175
    margin: 2.0
    needed_bytes: 14470350
    summary: "free space in /var/backups/ledgermind: 10240.0 MiB, 13.8 MiB needed (archive ~6.9 MiB x2)"
pg_dump_version:
  description: Version of the pg_dump used.
  returned: always
  type: str
  sample: "15.18"
server_version_num:
  description: The server's C(server_version_num).
  returned: always
  type: int
  sample: 150018
'''

import os
import time
import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ledgermind.migrations.plugins.module_utils._connection import (
    fail,
    postgres_connection_argument_spec,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._inspect import run_read_only
from ansible_collections.ledgermind.migrations.plugins.module_utils._libpq import LibpqSettingsError
from ansible_collections.ledgermind.migrations.plugins.module_utils._pg_clients import (
    PARTIAL_SUFFIX,
    ClientError,
    DumpSnapshot,
    RetentionPlan,
    archive_name,
    archive_size,
    archives_newest_first,
    client_env,
    client_version,
    database_name,
    default_prefix,
    dump_error,
    find_client,
    lock_wait_argv,
    open_dump_snapshot,
    plan_retention,
    public_url,
    read_identity,
    remove_archive,
    restrict_mode,
    run_client,
    safe_prefix,
    scrub,
    secrets,
    sha256_archive,
    sidecar_or_reason,
    sidecar_path,
    stream_verified_archive,
    verify_archive,
    version_problem,
    write_sidecar,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._queries import (
    DATABASE_SIZE_SQL,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._space import (
    archive_factor,
    directory_free,
    estimate_archive_bytes,
    mib,
    needed_bytes,
    shortfall,
    table_size,
    verdict,
)

# How pg_dump shows in pg_stat_activity, unless connect_params names it.
APPLICATION_NAME = 'ledgermind.migrations.pg_backup_archive'


def quote_ident(name: str) -> str:
    """A pg_dump pattern matching exactly this name (no wildcards, case kept)."""
    escaped = name.replace('"', '""')
    return f'"{escaped}"'


def dump_argv(pg_dump: str, params: dict, target: str | None, snapshot_id: str | None = None) -> list[str]:
    """pg_dump's command line; ``target`` None writes to stdout (the streamed custom format); ``snapshot_id``
    (``pg_export_snapshot()``) makes pg_dump dump that snapshot."""
    argv = [pg_dump, f"--format={params['format']}", f"--compress={params['compress_level']}", '--no-password',
            *lock_wait_argv(params['lock_timeout'])]
    if snapshot_id:
        argv.append(f'--snapshot={snapshot_id}')
    if params['scope'] == 'table':
        argv += ['--strict-names', f"--table={quote_ident(params['schema'])}.{quote_ident(params['table'])}"]
    return argv + ([f'--file={target}'] if target else [])


def wants_content(params: dict) -> bool:
    """Whether the archive's content fingerprint is taken: a table backup naming its column."""
    return params['scope'] == 'table' and bool(params['column'])


def dump_failure(rc: int, stderr: str, lock_timeout: int | None, scan_problem: str | None) -> str:
    """pg_dump's failure (``dump_error``); a content scan that failed first comes first, since its transaction,
    and with it the snapshot pg_dump was to import, ended then."""
    failure = dump_error(rc, stderr, lock_timeout)
    return f'{scan_problem}; then {failure}' if scan_problem else failure


def identity_target(params: dict) -> tuple[str | None, str | None, str | None]:
    """What the identity describes: the table and column for scope=table, the database alone for full."""
    if params['scope'] == 'full':
        return None, None, None
    return params['schema'], params['table'], params['column']


def subject_problem(identity: dict, params: dict) -> str | None:
    """Why the table or column to back up is not there, or None (checked before dumping)."""
    if params['scope'] != 'table':
        return None
    where = f"{params['schema']}.{params['table']}"
    if identity.get('table_oid') is None:
        return f"table {where} does not exist in database {identity.get('database')}: check schema and table"
    if params['column'] and identity.get('column_type') is None:
        return f"table {where} of database {identity.get('database')} has no column {params['column']}: check column"
    return None


def read_size_basis(module: AnsibleModule, params: dict) -> tuple[str, int]:
    """What the archive's size is estimated from: the table's pg_total_relation_size (TOAST and indexes included,
    summed over partitions; the planner's page counts while another session holds a lock on it), or the database's
    size for scope=full."""
    where = f"{params['schema']}.{params['table']}" if params['scope'] == 'table' else 'the database'

    def inspect(conn: t.Any) -> tuple[str, int]:
        with conn.cursor() as cur:
            if params['scope'] == 'full':
                cur.execute(DATABASE_SIZE_SQL)
                row = cur.fetchone()
                return f"pg_database_size({row['database']})", int(row['total_bytes'])
            row, measure = table_size(cur, params['schema'], params['table'])
            return f'{measure}({where})', int(row['total_bytes']) if row else 0

    return run_read_only(module, inspect, where)


def space_check(free: int | None, directory: str, unknown: str, basis: str, basis_bytes: int, compress_level: int,
                margin: float) -> dict:
    """The free space check's record (RV(space)): the estimate, the room asked for, and whether there is that much."""
    estimate = estimate_archive_bytes(basis_bytes, compress_level)
    needed = needed_bytes(estimate, margin)
    space = dict(checked=False, enough=None, directory=directory, free_bytes=free, basis=basis,
                 basis_bytes=basis_bytes, factor=archive_factor(compress_level), estimated_bytes=estimate,
                 margin=margin, needed_bytes=needed)
    if margin <= 0:
        space['summary'] = 'free space not checked (free_space_margin 0)'
    elif free is None:
        space['summary'] = f'free space could not be checked: {unknown}; the archive needs about {mib(needed)}'
    else:
        space.update(checked=True, enough=verdict(free, needed))
        space['summary'] = (f'free space in {directory}: {mib(free)}, {mib(needed)} needed '
                            f'(archive ~{mib(estimate)} x{margin:g})')
    return space


def space_refusal(space: dict, dest_dir: str, compress_level: int) -> str | None:
    """Why the backup does not fit in ``dest_dir``, with the numbers and what to do; None when it fits or was not
    checked."""
    if space['enough'] is not False:
        return None
    measured = '' if space['directory'] == dest_dir else f" (measured at {space['directory']}, it does not exist yet)"
    return (f"Not enough free space for the backup in {dest_dir}{measured}: the archive is expected to take about "
            f"{mib(space['estimated_bytes'])} ({space['basis']} {mib(space['basis_bytes'])} x{space['factor']:g} at "
            f"compress_level {compress_level}), x{space['margin']:g} margin = {mib(space['needed_bytes'])} needed, "
            f"and its file system has {mib(space['free_bytes'])} free. Free "
            f"{mib(shortfall(space['free_bytes'], space['needed_bytes']))} in {dest_dir} or set ledgermind_backup_dir "
            f"(dest_dir) to a directory with room; free_space_margin (pg_backup_free_space_margin) sets the margin. "
            f"Nothing was changed.")


def retention(dest_dir: str, names: list[str], prefix: str, keep: int, new_name: str,
              identity: dict) -> RetentionPlan:
    """What retention does in ``dest_dir``: the sidecars of the other archives with ``prefix`` are read
    (one that cannot be read keeps its archive); the new archive counts as this database's."""
    archives = [
        (name, {'identity': identity} if name == new_name
         else sidecar_or_reason(sidecar_path(os.path.join(dest_dir, name))))
        for name in archives_newest_first(names + [new_name], prefix)
    ]
    return plan_retention(archives, identity, keep)


def argument_spec() -> dict[str, t.Any]:
    spec = postgres_connection_argument_spec()
    spec.update(
        dest_dir=dict(type='path', required=True),
        prefix=dict(type='str'),
        scope=dict(type='str', choices=['table', 'full'], default='table'),
        schema=dict(type='str', default='public'),
        table=dict(type='str'),
        column=dict(type='str'),
        format=dict(type='str', choices=['custom', 'directory'], default='custom'),
        compress_level=dict(type='int', default=1),
        keep=dict(type='int', default=5),
        metadata=dict(type='dict', default={}),
        free_space_margin=dict(type='float', default=2.0),
        pg_dump_path=dict(type='path'),
        pg_restore_path=dict(type='path'),
    )
    return spec


class Backup:
    """One run's decisions and partial result; every step fails through ``fail(module, msg, **run.so_far())``."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = module.params
        self.started = time.monotonic()
        self.result: dict[str, t.Any] = dict(changed=False, deleted=[], kept_last_of_type=[], retention_skipped=[],
                                             verified=False)
        self.hidden = secrets(self.params)
        self.dest_dir: str = self.params['dest_dir']
        self.env: dict[str, str] = {}
        self.database = ''
        self.prefix = ''
        self.pg_dump = self.pg_restore = self.dump_version = ''
        self.identity: dict[str, t.Any] = {}
        self.existing: list[str] = []
        self.name = self.final = self.partial = ''
        self.argv: list[str] = []
        self.snapshot: DumpSnapshot | None = None

    def so_far(self, **extra: t.Any) -> dict[str, t.Any]:
        """The result so far, for ``fail(module, msg, **run.so_far())``."""
        return dict(self.result, **extra, duration_seconds=self.elapsed())

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 3)

    @property
    def streamed(self) -> bool:
        return self.params['format'] == 'custom'


def check_inputs(run: Backup) -> None:
    """The options, the connection settings the clients get, the archive's prefix and the clients themselves."""
    params = run.params
    if not 0 <= params['compress_level'] <= 9:
        fail(run.module, f"compress_level must be 0 (none) to 9, got {params['compress_level']}.", **run.so_far())
    if params['free_space_margin'] < 0:
        fail(run.module, f"free_space_margin must be 0 (no check) or more, got {params['free_space_margin']:g}.",
             **run.so_far())
    try:
        run.env = client_env(params, APPLICATION_NAME)
        dbname = database_name(params)
        run.database = public_url(params)
    except LibpqSettingsError as exc:
        fail(run.module, f'invalid connection settings: {exc}', **run.so_far())
    run.prefix = safe_prefix(params['prefix']) if params['prefix'] else default_prefix(
        dbname, params['scope'], params['schema'], params['table'])
    try:
        run.pg_dump = find_client('pg_dump', params['pg_dump_path'], module=run.module)
        run.pg_restore = find_client('pg_restore', params['pg_restore_path'], near=run.pg_dump, module=run.module)
        dump_major, run.dump_version = client_version(run.pg_dump, module=run.module)
    except ClientError as exc:
        fail(run.module, str(exc), **run.so_far())
    # Read on our own connection, with the settings pg_dump gets: what the sidecar says the archive is of.
    run.identity = read_identity(run.module, *identity_target(params))
    server_num = run.identity['server_version_num']
    run.result.update(pg_dump_version=run.dump_version, server_version_num=server_num)
    problem = version_problem('pg_dump', dump_major, server_num) or subject_problem(run.identity, params)
    if problem:
        fail(run.module, problem, **run.so_far())


def check_space(run: Backup) -> None:
    """Before pg_dump starts, in check mode too: the archive's expected size against the room where it goes."""
    params = run.params
    basis, basis_bytes = read_size_basis(run.module, params)
    free, measured, unknown = directory_free(run.dest_dir)
    space = space_check(free, measured, unknown, basis, basis_bytes, params['compress_level'],
                        params['free_space_margin'])
    run.result['space'] = space
    if space['enough'] is None and space['margin'] > 0:
        run.module.warn(f'The free space for the backup in {run.dest_dir} could not be checked: {unknown}. The archive '
                        f"is expected to take about {mib(space['estimated_bytes'])}.")
    refusal = space_refusal(space, run.dest_dir, params['compress_level'])
    if refusal:
        fail(run.module, refusal, **run.so_far())


def plan(run: Backup) -> None:
    """The archive's name and pg_dump's command line; in check mode, what retention would delete, and exit."""
    run.existing = os.listdir(run.dest_dir) if os.path.isdir(run.dest_dir) else []
    run.name = archive_name(run.prefix, run.params['format'], time.gmtime(), set(run.existing))
    run.final = os.path.join(run.dest_dir, run.name)
    run.partial = run.final + PARTIAL_SUFFIX
    run.argv = dump_argv(run.pg_dump, run.params, None if run.streamed else run.partial)
    run.result.update(path=run.final, sidecar=sidecar_path(run.final), command=run.argv, identity=run.identity)
    if run.module.check_mode:
        expired = report_retention(run)
        run.result.update(changed=True, deleted=[os.path.join(run.dest_dir, n) for n in expired],
                          duration_seconds=run.elapsed())
        run.module.exit_json(**run.result)


def open_snapshot(run: Backup) -> None:
    """The content in the very snapshot pg_dump dumps: exported by a transaction that stays open until pg_dump ends."""
    params = run.params
    if not wants_content(params):
        return
    opened = open_dump_snapshot(run.module, params['schema'], params['table'], params['column'], APPLICATION_NAME)
    if isinstance(opened, str):
        run.module.warn(opened)
        return
    run.snapshot = opened
    run.argv = dump_argv(run.pg_dump, params, None if run.streamed else run.partial, opened.snapshot_id)
    run.result['command'] = run.argv


def create_partial(run: Backup) -> None:
    """The archive's partial file or directory, private from the first byte (pg_dump writes into it)."""
    try:
        if not os.path.isdir(run.dest_dir):
            os.makedirs(run.dest_dir, mode=0o700)
            os.chmod(run.dest_dir, 0o700)
        if run.streamed:
            os.close(os.open(run.partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        else:
            os.mkdir(run.partial, 0o700)
    except OSError as exc:
        fail(run.module, f'cannot create {run.partial}: {exc}', **run.so_far())


def dump_and_verify(run: Backup) -> tuple[str, int, dict[str, t.Any] | None]:
    """pg_dump into the partial archive, read back completely by pg_restore: its SHA-256, size and content record.
    Raises ClientError (or OSError) for the caller to clean up."""
    snapshot = run.snapshot
    if snapshot is not None:
        snapshot.start_scan()  # alongside pg_dump, in the snapshot pg_dump imports as it starts
    if run.streamed:
        archive = stream_verified_archive(run.argv, run.env, run.pg_restore, run.partial, module=run.module)
        rc, stderr = archive.dump_rc, archive.dump_stderr
    else:
        dumped = run_client(run.argv, run.env, module=run.module)
        rc, stderr = dumped.rc, dumped.stderr
    if rc != 0:
        raise ClientError(dump_failure(rc, stderr, run.params['lock_timeout'],
                                       snapshot.scan_error() if snapshot is not None else None))
    if run.streamed:
        sha256, size = archive.sha256, archive.size
    else:
        verify_archive(run.pg_restore, run.partial, module=run.module)
        sha256, size = sha256_archive(run.partial), archive_size(run.partial)
    content = None
    if snapshot is not None:
        content = snapshot.content()
        snapshot.close()
    restrict_mode(run.partial)
    return sha256, size, content


def write_sidecar_and_publish(run: Backup, sha256: str, size: int, content: dict[str, t.Any] | None) -> str:
    """The sidecar next to the partial archive, then both renamed to their final names; returns the creation time."""
    params = run.params
    created = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())
    table_scope = params['scope'] == 'table'
    write_sidecar(sidecar_path(run.partial), {
        'archive': run.name,
        'sha256': sha256,
        'size_bytes': size,
        'created': created,
        'database': run.database,
        'identity': run.identity,
        'scope': params['scope'],
        'schema': params['schema'] if table_scope else None,
        'table': params['table'] if table_scope else None,
        'format': params['format'],
        'pg_dump_version': run.dump_version,
        'server_version_num': run.identity['server_version_num'],
        'metadata': params['metadata'],
        'content': content,
    })
    os.rename(run.partial, run.final)
    os.rename(sidecar_path(run.partial), sidecar_path(run.final))
    return created


def back_up(run: Backup) -> None:
    """Dump, verify, write the sidecar and publish; any failure removes what was written, and every way out ends
    the snapshot's transaction (cancelling a scan still running)."""
    try:
        create_partial(run)
        try:
            sha256, size, content = dump_and_verify(run)
            created = write_sidecar_and_publish(run, sha256, size, content)
        except (ClientError, OSError) as exc:
            remove_archive(run.partial)
            for leftover in (sidecar_path(run.partial), sidecar_path(run.partial) + PARTIAL_SUFFIX):
                if os.path.exists(leftover):
                    os.unlink(leftover)
            fail(run.module, str(exc), **run.so_far())
    finally:
        if run.snapshot is not None:
            run.snapshot.close()
    run.result.update(changed=True, content=content, size_bytes=size, sha256=sha256, verified=True, created=created)


def report_retention(run: Backup) -> list[str]:
    """Retention's plan in the result (kept and skipped archives); returns the names it deletes."""
    plan = retention(run.dest_dir, run.existing, run.prefix, run.params['keep'], run.name, run.identity)
    run.result.update(
        kept_last_of_type=[os.path.join(run.dest_dir, n) for n in plan.kept_last_of_type],
        retention_skipped=[dict(path=os.path.join(run.dest_dir, n), reason=scrub(why, run.hidden))
                           for n, why in plan.skipped],
    )
    return plan.expired


def apply_retention(run: Backup) -> None:
    """Deletes the archives (and sidecars) beyond keep; sidecars are read now, after the dump."""
    deleted: list[str] = []
    try:
        for old in report_retention(run):
            path = os.path.join(run.dest_dir, old)
            remove_archive(path)
            deleted.append(path)
            if os.path.exists(sidecar_path(path)):
                os.unlink(sidecar_path(path))
                deleted.append(sidecar_path(path))
    except OSError as exc:
        fail(run.module, f'the archive {run.final} is written and verified, but retention failed: {exc}',
             **run.so_far(deleted=deleted))
    run.result['deleted'] = deleted


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_if=[('scope', 'table', ('table',))])
    run = Backup(module)
    check_inputs(run)
    check_space(run)
    plan(run)
    open_snapshot(run)
    back_up(run)
    apply_retention(run)
    module.exit_json(**run.result, duration_seconds=run.elapsed())


if __name__ == '__main__':
    main()
