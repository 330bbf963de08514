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
  - Checks the archive's SHA-256 against O(expected_sha256) (default the one in its sidecar
    C(<archive>.json)) and reads the whole archive (C(pg_restore --file=/dev/null)) B(before)
    touching the database; a truncated or altered archive is refused.
  - Selects the table's entries from the archive's table of contents (the table, its data,
    indexes, constraints, foreign keys, triggers, defaults, owned sequences, comments and ACLs;
    not other tables' foreign keys pointing at it) and restores them with
    C(pg_restore --single-transaction --clean --if-exists --exit-on-error --use-list), so the table
    is dropped and recreated in one transaction and a failure leaves it exactly as it was.
  - Works whatever the live table looks like (for example C(tokens) already converted to jsonb with
    an extra GIN index, which goes with the dropped table), or when it does not exist.
  - Works with archives of one table or of the whole database (only the table is restored).
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
      - SHA-256 the archive must have. Default the C(sha256) of the sidecar C(<src>.json).
      - Without either, the module refuses to restore.
    type: str
  schema:
    description: Schema of the table to restore. Default the sidecar's, else C(public).
    type: str
  table:
    description: Table to restore. Default the sidecar's, else C(ml_features).
    type: str
  pg_restore_path:
    description:
      - pg_restore to use.
      - Default found on C(PATH), then in C(pg_config --bindir), then the newest C(/usr/lib/postgresql/*/bin).
    type: path
notes:
  - Objects of other tables that depend on the table (a foreign key referencing it, a view) make
    the restore fail, and roll back, rather than being dropped.
  - Owners and privileges are restored as archived; run as the table's owner or a superuser.
seealso:
  - module: ledgermind.migrations.pg_backup_archive
"""

EXAMPLES = r"""
- name: Restore ml_features from the pre-migration backup
  ledgermind.migrations.pg_backup_restore:
    database_url: "{{ ledgermind_db | ledgermind.migrations.libpq_url }}"
    src: "{{ pg_backup_result.path }}"

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
"""

import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.ledgermind.migrations.plugins.module_utils._connection import (  # noqa: E402
    postgres_connection_argument_spec,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._libpq import LibpqSettingsError  # noqa: E402
from ansible_collections.ledgermind.migrations.plugins.module_utils._pg_clients import (  # noqa: E402
    ClientError,
    client_env,
    find_client,
    parse_toc,
    read_sidecar,
    run_client,
    scrub,
    secrets,
    sha256_archive,
    sidecar_path,
    table_entries,
    toc_list_text,
    verify_archive,
)

# How pg_restore shows in pg_stat_activity, unless connect_params names it.
APPLICATION_NAME = "ledgermind.migrations.pg_backup_restore"


def dbname_conninfo(application_name: str) -> str:
    """pg_restore's --dbname (without one it prints SQL instead of restoring): a conninfo string holding
    only the session's name, as it would override PGAPPNAME; libpq takes every other setting, the
    database included, from the PG* environment."""
    value = application_name.replace("\\", "\\\\").replace("'", "\\'")
    return f"application_name='{value}'"


def restore_argv(pg_restore: str, list_file: str, src: str, application_name: str) -> list[str]:
    return [
        pg_restore, "--single-transaction", "--clean", "--if-exists", "--exit-on-error", "--no-password",
        f"--use-list={list_file}", f"--dbname={dbname_conninfo(application_name)}", src,
    ]


def main() -> None:
    argument_spec = postgres_connection_argument_spec()
    argument_spec.update(
        src=dict(type="path", required=True),
        expected_sha256=dict(type="str"),
        schema=dict(type="str"),
        table=dict(type="str"),
        pg_restore_path=dict(type="path"),
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

    try:
        sidecar = read_sidecar(sidecar_path(src)) or {}
        expected = (params["expected_sha256"] or sidecar.get("sha256") or "").strip().lower()
        if not expected:
            raise ClientError(
                f"refusing to restore {src}: no sidecar {sidecar_path(src)} and no expected_sha256 to check it against"
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
    except (ClientError, OSError) as exc:
        fail(str(exc))
        return
    result.update(sha256=actual, verified=True)

    schema = params["schema"] or sidecar.get("schema") or "public"
    table = params["table"] or sidecar.get("table") or "ml_features"
    entries = table_entries(parse_toc(listing.stdout), schema, table)
    if not entries:
        fail(f"archive {src} holds no table {schema}.{table}")
    result["restored_entries"] = [entry.label for entry in entries]

    workdir = tempfile.mkdtemp(prefix="pg_backup_restore.")
    try:
        list_file = os.path.join(workdir, "restore.list")
        argv = restore_argv(pg_restore, list_file, src, env["PGAPPNAME"])
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

    result.update(changed=True, duration_seconds=round(time.monotonic() - started, 3))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
