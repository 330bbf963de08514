#!/usr/bin/python
# Copyright: (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
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
    C(pg_restore --single-transaction --clean --if-exists --exit-on-error --use-list), so the table
    is dropped and recreated in one transaction and a failure leaves it exactly as it was.
  - Works whatever the live table looks like (for example C(tokens) already converted to jsonb with
    an extra GIN index, which goes with the dropped table), or when it does not exist.
  - Works with archives of one table or of the whole database (only the table is restored).
  - With O(restore_into=scratch), restores a B(copy) of the archived table into another, new database (a
    rehearsal's scratch database). The database's identity is not compared, but everything else still is
    (the schema and table, O(expected_column_type), O(expected_run_id), the checksum, the full read); the target
    must not be the archived database itself and must not have the table yet (a scratch copy never replaces a
    table); and the restored column's type is read back and must be the archived one.
  - Connection settings reach pg_restore as C(PG*) environment variables, so the password is never
    on a command line, in the process list or in the module output.
author:
  - LedgerMind SRE (@ledgermind)
extends_documentation_fragment:
  - ledgermind.migrations.connection
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
  pg_restore_path:
    description:
      - pg_restore to use.
      - Default found on C(PATH), then in C(pg_config --bindir), then the newest C(/usr/lib/postgresql/*/bin).
    type: path
requirements:
  - psycopg2 (C(psycopg2-binary) from PyPI is enough), to read the target database's identity
notes:
  - Objects of other tables that depend on the table (a foreign key referencing it, a view) make
    the restore fail, and roll back, rather than being dropped.
  - Owners and privileges are restored as archived; run as the table's owner or a superuser.
seealso:
  - module: ledgermind.migrations.pg_backup_archive
"""

EXAMPLES = r"""
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
"""

RETURN = r"""
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
restored_identity:
  description:
    - With O(restore_into=scratch), the copy's identity read back after the restore (in check mode, not read);
      its C(column_type) is the archived one.
  returned: success, with O(restore_into=scratch) outside check mode
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
command:
  description: The pg_restore command line (no secrets; connection settings travel in the environment).
  returned: success
  type: list
  elements: str
  sample:
    - /usr/bin/pg_restore
    - --single-transaction
    - --clean
    - --if-exists
    - --exit-on-error
    - --no-password
    - --use-list=/tmp/pg_backup_restore.x/restore.list
    - --dbname=application_name='ledgermind.migrations.pg_backup_restore'
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
"""

import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.ledgermind.migrations.plugins.module_utils._connection import (  # noqa: E402
    postgres_connection_argument_spec,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._libpq import LibpqSettingsError  # noqa: E402
from ansible_collections.ledgermind.migrations.plugins.module_utils._pg_clients import (  # noqa: E402
    ClientError,
    client_env,
    describe,
    find_client,
    parse_toc,
    read_identity,
    read_sidecar,
    run_client,
    scrub,
    secrets,
    sha256_archive,
    sidecar_path,
    table_entries,
    toc_list_text,
    verify_archive,
    without_triggers,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._queries import (  # noqa: E402
    identity_mismatches,
    normalize_type_name,
)

# How pg_restore shows in pg_stat_activity, unless connect_params names it.
APPLICATION_NAME = "ledgermind.migrations.pg_backup_restore"
# The database the archive was dumped from, in the header of `pg_restore --list`.
_TOC_DBNAME = re.compile(r"^;\s+dbname:\s*(?P<name>.*?)\s*$", re.M)


def dbname_conninfo(application_name: str) -> str:
    """pg_restore's --dbname (without one it prints SQL instead of restoring): a conninfo string holding
    only the session's name, as it would override PGAPPNAME; libpq takes every other setting, the
    database included, from the PG* environment."""
    value = application_name.replace("\\", "\\\\").replace("'", "\\'")
    return f"application_name='{value}'"


def restore_argv(pg_restore: str, list_file: str, src: str, application_name: str, scratch: bool = False) -> list[str]:
    """pg_restore's command line; a scratch copy (``scratch``) keeps neither the archived owner nor privileges."""
    return [
        pg_restore, "--single-transaction", "--clean", "--if-exists", "--exit-on-error", "--no-password",
        *(["--no-owner", "--no-privileges"] if scratch else []),
        f"--use-list={list_file}", f"--dbname={dbname_conninfo(application_name)}", src,
    ]


def same_type(expected: str, recorded: str) -> bool:
    """Whether two spellings name one type (``text[]``, ``_text``, ``text ARRAY``)."""
    try:
        return normalize_type_name(expected) == normalize_type_name(recorded)
    except ValueError:
        return False


def sidecar_refusal(src: str, sidecar_file: str, sidecar: dict[str, Any] | None, expected_column_type: str | None,
                    expected_run_id: str | None) -> str | None:
    """Why the sidecar alone forbids restoring ``src`` (no sidecar, no identity, another column type or
    run than expected), or None. Runs before anything else, the database included."""
    if sidecar is None:
        return (
            f"refusing to restore {src}: there is no sidecar {sidecar_file}, so nothing records which database "
            "the archive is of, nor its checksum. Restore an archive written by pg_backup_archive, with its sidecar."
        )
    identity = sidecar.get("identity")
    if not identity:
        taken_from = f" (it says it was taken from {sidecar['database']})" if sidecar.get("database") else ""
        return (
            f"refusing to restore {src}: its sidecar {sidecar_file} records no database identity{taken_from}; it was "
            "written before pg_backup_archive recorded one, so nothing proves the archive is of this database. Take "
            "a new backup with this collection's pg_backup_archive and restore that; to use this archive anyway, "
            "check by hand that it is of this database (`pg_restore --list` shows its dbname) and run pg_restore "
            "yourself. Nothing was changed."
        )
    if expected_run_id:
        metadata = sidecar.get("metadata") or {}
        recorded_run = metadata.get("run_id")
        if recorded_run is None or str(recorded_run) != expected_run_id:
            return (
                f"refusing to restore {src}: it is the backup of run {recorded_run or '(none recorded)'}, expected "
                f"run {expected_run_id} (metadata.run_id in {sidecar_file}). Restore the archive of run "
                f"{expected_run_id}. Nothing was changed."
            )
    if expected_column_type:
        recorded_type = identity.get("column_type")
        if not recorded_type or not same_type(expected_column_type, recorded_type):
            column = "{}.{}.{}".format(identity.get("schema"), identity.get("table"), identity.get("column"))
            held = f"holds {column} as {recorded_type}" if recorded_type else (
                "records no column type (a whole-database archive, or one taken without pg_backup_archive's column)")
            return (
                f"refusing to restore {src}: the archive {held}, the restore expects {expected_column_type} "
                f"(identity.column_type in {sidecar_file}). Restore an archive taken while the column was "
                f"{expected_column_type}. Nothing was changed."
            )
    return None


def identity_refusal(src: str, recorded: dict[str, Any], current: dict[str, Any]) -> str | None:
    """Why the archive (``recorded`` identity) is not a backup of the target (``current``), naming both, or None."""
    mismatches = identity_mismatches(recorded, current)
    if not mismatches:
        return None
    return (
        f"refusing to restore {src} into {describe(current)}: the archive is of {describe(recorded)} "
        f"(differs in {'; '.join(mismatches)}). Restore a backup of this database; nothing was changed."
    )


# The fields naming the database (not the table) in an identity (_queries.IDENTITY_FIELDS).
DATABASE_IDENTITY_FIELDS = ("system_identifier", "database", "database_oid", "database_uuid")


def scratch_refusal(src: str, recorded: dict[str, Any], current: dict[str, Any]) -> str | None:
    """Why a scratch copy of the archive (``recorded`` identity) may not go into the target (``current``), or None:
    another table than the archived one, the archived database itself, or a target that already has the table."""
    archived = "{}.{}".format(recorded.get("schema"), recorded.get("table"))
    named = "{}.{}".format(current.get("schema"), current.get("table"))
    if archived != named:
        return (
            f"refusing to restore a scratch copy of {src} as {named}: the archive is of {archived}, and a scratch "
            f"copy keeps the archived table's name. Restore {archived}; nothing was changed."
        )
    same = {name: recorded.get(name) for name in DATABASE_IDENTITY_FIELDS}
    if not identity_mismatches(dict(same, schema=None, table=None), dict(current, schema=None, table=None)):
        return (
            f"refusing to restore a scratch copy of {src} into {describe(current)}: that is the archived database "
            "itself, and a scratch copy goes into another, new database. To restore this database's table from its "
            "backup use restore_into=same_database; nothing was changed."
        )
    if current.get("table_oid") is not None:
        return (
            f"refusing to restore a scratch copy of {src} into {describe(current)}: the table already exists there, "
            "and a scratch copy never replaces a table. Restore into a new, empty database; nothing was changed."
        )
    return None


def header_refusal(src: str, listing: str, recorded: dict[str, Any]) -> str | None:
    """Why the archive's own header (``pg_restore --list``) contradicts its sidecar's database, or None."""
    match = _TOC_DBNAME.search(listing)
    if match and recorded.get("database") and match.group("name") != recorded["database"]:
        return (
            f"refusing to restore {src}: pg_restore says it was dumped from database {match.group('name')}, but its "
            f"sidecar records {recorded['database']}; the sidecar is not this archive's. Nothing was changed."
        )
    return None


def main() -> None:
    argument_spec = postgres_connection_argument_spec()
    argument_spec.update(
        src=dict(type="path", required=True),
        expected_sha256=dict(type="str"),
        expected_column_type=dict(type="str"),
        expected_run_id=dict(type="str"),
        schema=dict(type="str"),
        table=dict(type="str"),
        pg_restore_path=dict(type="path"),
        restore_into=dict(type="str", default="same_database", choices=["same_database", "scratch"]),
        exclude_triggers=dict(type="list", elements="str", default=[]),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    hidden = secrets(params)
    started = time.monotonic()
    result: dict = dict(changed=False)

    def fail(msg: str) -> None:
        result["duration_seconds"] = round(time.monotonic() - started, 3)
        module.fail_json(msg=scrub(msg, hidden), **result)

    src = params["src"].rstrip("/") or params["src"]
    if not os.path.exists(src):
        fail(f"archive {src} does not exist")
    try:
        env = client_env(params, APPLICATION_NAME)
    except LibpqSettingsError as exc:
        fail(f"invalid connection settings: {exc}")
        return

    # What the archive is, from its sidecar, before anything else.
    sidecar_file = sidecar_path(src)
    try:
        sidecar = read_sidecar(sidecar_file)
    except ClientError as exc:
        fail(f"refusing to restore {src}: {exc}")
        return
    refusal = sidecar_refusal(src, sidecar_file, sidecar, params["expected_column_type"], params["expected_run_id"])
    if refusal or sidecar is None:
        fail(refusal or "no sidecar")
        return
    recorded = sidecar["identity"]
    result["archive_identity"] = recorded
    # What the caller recorded with the backup (run id, fingerprint): the proof of a restore compares with it.
    result["archive_metadata"] = sidecar.get("metadata") or {}
    # The archive's own content (its dump's snapshot), when recorded: what the restored table must hold.
    result["archive_content"] = sidecar.get("content") or {}
    schema = params["schema"] or sidecar.get("schema") or "public"
    table = params["table"] or sidecar.get("table")
    if not table:
        fail(f"{src} is an archive of the whole database: name the table to restore (table)")
        return

    scratch = params["restore_into"] == "scratch"
    # Whose database this is, read on our own connection; another database's archive is refused here, and a
    # scratch copy is refused in the archived database itself or over an existing table.
    current = read_identity(module, schema, table, recorded.get("column"))
    result["target_identity"] = current
    refusal = scratch_refusal(src, recorded, current) if scratch else identity_refusal(src, recorded, current)
    if refusal:
        fail(refusal)

    try:
        expected = (sidecar.get("sha256") or "").strip().lower()
        if not expected:
            raise ClientError(f"refusing to restore {src}: its sidecar {sidecar_file} records no sha256")
        wanted = (params["expected_sha256"] or "").strip().lower()
        if wanted and wanted != expected:
            raise ClientError(
                f"refusing to restore {src}: expected SHA-256 {wanted}, but its sidecar {sidecar_file} records "
                f"{expected}; the sidecar describes another archive"
            )
        actual = sha256_archive(src)
        if actual != expected:
            raise ClientError(
                f"refusing to restore {src}: its SHA-256 is {actual}, expected {expected}; "
                "the archive was altered or truncated"
            )
        pg_restore = find_client("pg_restore", params["pg_restore_path"])
        verify_archive(pg_restore, src)
        listing = run_client([pg_restore, "--list", "--verbose", src])
        if listing.rc != 0:
            raise ClientError(f"pg_restore --list failed: {listing.stderr.strip()}")
        refusal = header_refusal(src, listing.stdout, recorded)
        if refusal:
            raise ClientError(refusal)
    except (ClientError, OSError) as exc:
        fail(str(exc))
        return
    result.update(sha256=actual, verified=True)

    entries = table_entries(parse_toc(listing.stdout), schema, table)
    if not entries:
        fail(f"archive {src} holds no table {schema}.{table}")
    entries, excluded = without_triggers(entries, table, params["exclude_triggers"])
    result["restored_entries"] = [entry.label for entry in entries]
    result["excluded_entries"] = [entry.label for entry in excluded]

    workdir = tempfile.mkdtemp(prefix="pg_backup_restore.")
    try:
        list_file = os.path.join(workdir, "restore.list")
        argv = restore_argv(pg_restore, list_file, src, env["PGAPPNAME"], scratch)
        result["command"] = argv
        if module.check_mode:
            result.update(changed=True, duration_seconds=round(time.monotonic() - started, 3))
            module.exit_json(**result)
        with open(list_file, "w", encoding="utf-8") as handle:
            handle.write(toc_list_text(entries))
        restored = run_client(argv, env)
        if restored.rc != 0:
            fail(
                f"pg_restore failed (exit code {restored.rc}); the restore ran in one transaction, so "
                f"{schema}.{table} is unchanged: {restored.stderr.strip()}"
            )
    except ClientError as exc:
        fail(str(exc))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    result["changed"] = True
    if scratch:
        # The copy is the archived table: its column has the type the archive recorded.
        restored = read_identity(module, schema, table, recorded.get("column"))
        result["restored_identity"] = restored
        recorded_type = recorded.get("column_type")
        if restored.get("table_oid") is None or (
                recorded_type and not same_type(recorded_type, restored.get("column_type") or "")):
            fail(
                f"the scratch copy of {schema}.{table} restored from {src} is not the archived table: the archive "
                f"recorded column {recorded.get('column')} as {recorded_type}, the copy has "
                f"{restored.get('column_type') if restored.get('table_oid') is not None else 'no such table'}"
            )
    result["duration_seconds"] = round(time.monotonic() - started, 3)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
