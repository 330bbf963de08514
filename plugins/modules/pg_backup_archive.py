#!/usr/bin/python
# Copyright: (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
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
    (without password), scope, table, pg_dump version and caller-supplied O(metadata).
  - Keeps the newest O(keep) archives with the same O(prefix) and deletes older ones with their
    sidecars, only after the new archive is verified.
  - Connection settings reach pg_dump as C(PG*) environment variables, so the password is never
    on a command line, in the process list or in the module output. SSL settings reach pg_dump too.
  - pg_dump waits at most O(lock_timeout) seconds for its table locks (C(--lock-wait-timeout)), so a
    backup fails rather than queueing behind an C(ALTER TABLE).
  - Refuses early, with the fix, when pg_dump is missing or older than the server.
author:
  - LedgerMind SRE (@ledgermind)
extends_documentation_fragment:
  - ledgermind.migrations.connection
  - ledgermind.migrations.connection.clients
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Checks the connection and the client version, writes nothing and returns the command that would run.
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
    description: Table to dump, for O(scope=table).
    type: str
    default: ml_features
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
    description: How many archives with this O(prefix) to keep, including the new one; C(0) keeps all.
    type: int
    default: 5
  metadata:
    description: Anything to record in the sidecar, e.g. the pre-flight fingerprint and row count.
    type: dict
    default: {}
  pg_dump_path:
    description:
      - pg_dump to use.
      - Default found on C(PATH), then in C(pg_config --bindir), then the newest C(/usr/lib/postgresql/*/bin).
    type: path
  pg_restore_path:
    description: pg_restore used for verification. Default next to pg_dump, then found like O(pg_dump_path).
    type: path
notes:
  - The password is passed in C(PGPASSWORD) to the client processes only; it is masked in any
    output of this module, also when it is part of O(database_url).
  - For a directory archive, RV(sha256) is the SHA-256 of the C(sha256sum)-style listing of its files.
seealso:
  - module: ledgermind.migrations.pg_backup_restore
"""

EXAMPLES = r"""
- name: Back up ml_features before the migration
  ledgermind.migrations.pg_backup_archive:
    database_url: "{{ ledgermind_db | ledgermind.migrations.libpq_url }}"
    dest_dir: /var/backups/ledgermind
    metadata:
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
"""

RETURN = r"""
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
created:
  description: When the archive was written (UTC, ISO 8601), as in the sidecar.
  returned: success and not check mode
  type: str
  sample: "2026-01-01T12:00:00Z"
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
"""

import os  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.ledgermind.migrations.plugins.module_utils._connection import (  # noqa: E402
    postgres_connection_argument_spec,
)
from ansible_collections.ledgermind.migrations.plugins.module_utils._libpq import LibpqSettingsError  # noqa: E402
from ansible_collections.ledgermind.migrations.plugins.module_utils._pg_clients import (  # noqa: E402
    PARTIAL_SUFFIX,
    ClientError,
    archive_name,
    archive_size,
    client_env,
    client_version,
    database_name,
    default_prefix,
    dump_error,
    find_client,
    lock_wait_argv,
    public_url,
    remove_archive,
    restrict_mode,
    run_client,
    safe_prefix,
    scrub,
    secrets,
    select_expired,
    sha256_archive,
    sidecar_path,
    stream_verified_archive,
    verify_archive,
    version_problem,
    write_sidecar,
)

SERVER_VERSION_SQL = "SHOW server_version_num"
# How pg_dump and psql show in pg_stat_activity, unless connect_params names them.
APPLICATION_NAME = "ledgermind.migrations.pg_backup_archive"


def quote_ident(name: str) -> str:
    """A pg_dump pattern matching exactly this name (no wildcards, case kept)."""
    escaped = name.replace('"', '""')
    return f'"{escaped}"'


def dump_argv(pg_dump: str, params: dict, target: str | None) -> list[str]:
    """pg_dump's command line; ``target`` None writes to stdout (the streamed custom format)."""
    argv = [pg_dump, f"--format={params['format']}", f"--compress={params['compress_level']}", "--no-password",
            *lock_wait_argv(params["lock_timeout"])]
    if params["scope"] == "table":
        argv += ["--strict-names", f"--table={quote_ident(params['schema'])}.{quote_ident(params['table'])}"]
    return argv + ([f"--file={target}"] if target else [])


def server_version_num(psql: str, env: dict[str, str]) -> int:
    result = run_client([psql, "--no-psqlrc", "--no-password", "--tuples-only", "--no-align", "--quiet",
                         f"--command={SERVER_VERSION_SQL}"], env)
    if result.rc != 0:
        raise ClientError(f"cannot connect to the database: {result.stderr.strip()}")
    try:
        return int(result.stdout.strip())
    except ValueError:
        raise ClientError(f"unexpected server_version_num {result.stdout.strip()!r}") from None


def main() -> None:
    argument_spec = postgres_connection_argument_spec()
    argument_spec.update(
        dest_dir=dict(type="path", required=True),
        prefix=dict(type="str"),
        scope=dict(type="str", choices=["table", "full"], default="table"),
        schema=dict(type="str", default="public"),
        table=dict(type="str", default="ml_features"),
        format=dict(type="str", choices=["custom", "directory"], default="custom"),
        compress_level=dict(type="int", default=1),
        keep=dict(type="int", default=5),
        metadata=dict(type="dict", default={}),
        pg_dump_path=dict(type="path"),
        pg_restore_path=dict(type="path"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    hidden = secrets(params)
    started = time.monotonic()
    result: dict = dict(changed=False, deleted=[], verified=False)

    def fail(msg: str, **extra) -> None:
        extra = {key: scrub(value, hidden) if isinstance(value, str) else value for key, value in extra.items()}
        result.update(extra)
        result["duration_seconds"] = round(time.monotonic() - started, 3)
        module.fail_json(msg=scrub(msg, hidden), **result)

    if not 0 <= params["compress_level"] <= 9:
        fail(f"compress_level must be 0 (none) to 9, got {params['compress_level']}.")
        return
    try:
        env = client_env(params, APPLICATION_NAME)
        dbname = database_name(params)
        database = public_url(params)
    except LibpqSettingsError as exc:
        fail(f"invalid connection settings: {exc}")
        return
    prefix = safe_prefix(params["prefix"]) if params["prefix"] else default_prefix(
        dbname, params["scope"], params["schema"], params["table"])
    dest_dir = params["dest_dir"]

    try:
        pg_dump = find_client("pg_dump", params["pg_dump_path"])
        pg_restore = find_client("pg_restore", params["pg_restore_path"], near=pg_dump)
        psql = find_client("psql", near=pg_dump)
        dump_major, dump_version = client_version(pg_dump)
        server_num = server_version_num(psql, env)
    except ClientError as exc:
        fail(str(exc))
        return
    result.update(pg_dump_version=dump_version, server_version_num=server_num)
    problem = version_problem("pg_dump", dump_major, server_num)
    if problem:
        fail(problem)

    existing = os.listdir(dest_dir) if os.path.isdir(dest_dir) else []
    name = archive_name(prefix, params["format"], time.gmtime(), set(existing))
    final = os.path.join(dest_dir, name)
    partial = final + PARTIAL_SUFFIX
    streamed = params["format"] == "custom"
    argv = dump_argv(pg_dump, params, None if streamed else partial)
    expired = select_expired(existing + [name], prefix, params["keep"])
    result.update(path=final, sidecar=sidecar_path(final), command=argv)

    if module.check_mode:
        result.update(
            changed=True,
            deleted=[os.path.join(dest_dir, n) for n in expired],
            duration_seconds=round(time.monotonic() - started, 3),
        )
        module.exit_json(**result)

    try:
        if not os.path.isdir(dest_dir):
            os.makedirs(dest_dir, mode=0o700)
            os.chmod(dest_dir, 0o700)
        # Private from the first byte: pg_dump writes into what we create with 0600/0700.
        if params["format"] == "custom":
            os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        else:
            os.mkdir(partial, 0o700)
    except OSError as exc:
        fail(f"cannot create {partial}: {exc}")

    try:
        if streamed:
            archive = stream_verified_archive(argv, env, pg_restore, partial)
            if archive.dump_rc != 0:
                raise ClientError(dump_error(archive.dump_rc, archive.dump_stderr, params["lock_timeout"]))
            sha256, size = archive.sha256, archive.size
        else:
            dumped = run_client(argv, env)
            if dumped.rc != 0:
                raise ClientError(dump_error(dumped.rc, dumped.stderr, params["lock_timeout"]))
            verify_archive(pg_restore, partial)
            sha256, size = sha256_archive(partial), archive_size(partial)
        restrict_mode(partial)
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        sidecar = {
            "archive": name,
            "sha256": sha256,
            "size_bytes": size,
            "created": created,
            "database": database,
            "scope": params["scope"],
            "schema": params["schema"] if params["scope"] == "table" else None,
            "table": params["table"] if params["scope"] == "table" else None,
            "format": params["format"],
            "pg_dump_version": dump_version,
            "server_version_num": server_num,
            "metadata": params["metadata"],
        }
        write_sidecar(sidecar_path(partial), sidecar)
        os.rename(partial, final)
        os.rename(sidecar_path(partial), sidecar_path(final))
    except (ClientError, OSError) as exc:
        remove_archive(partial)
        for leftover in (sidecar_path(partial), sidecar_path(partial) + PARTIAL_SUFFIX):
            if os.path.exists(leftover):
                os.unlink(leftover)
        fail(str(exc))
        return

    deleted = []
    try:
        for old in expired:
            path = os.path.join(dest_dir, old)
            remove_archive(path)
            deleted.append(path)
            if os.path.exists(sidecar_path(path)):
                os.unlink(sidecar_path(path))
                deleted.append(sidecar_path(path))
    except OSError as exc:
        result.update(changed=True, deleted=deleted, sha256=sha256, size_bytes=size, verified=True)
        fail(f"the archive {final} is written and verified, but retention failed: {exc}")

    result.update(
        changed=True,
        path=final,
        size_bytes=size,
        sha256=sha256,
        verified=True,
        deleted=deleted,
        created=created,
        duration_seconds=round(time.monotonic() - started, 3),
    )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
