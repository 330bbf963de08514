"""Pure helpers of module_utils/_pg_clients.py: connection settings for the clients, TOC filtering, retention,
names, sidecars, versions."""
from __future__ import annotations

import hashlib
import json
import os
import stat
import time

import pytest

from ansible_collections.ledgermind.migrations.plugins.module_utils import _pg_clients as pc
from ansible_collections.ledgermind.migrations.plugins.module_utils._libpq import LibpqSettingsError

# `pg_restore --list --verbose` of a whole database (PostgreSQL 15): ml_features with a bigserial
# key, a comment, an index, an owned sequence, and `other`, whose foreign key references ml_features.
FULL_TOC = """\
;
; Archive created at 2026-01-01 12:00:00 UTC
;     dbname: ledgermind
;     TOC Entries: 17
;     Compression: -1
;     Dump Version: 1.14-0
;     Format: CUSTOM
;
; Selected TOC Entries:
;
3355; 0 0 ENCODING - ENCODING
3356; 0 0 STDSTRINGS - STDSTRINGS
3357; 0 0 SEARCHPATH - SEARCHPATH
3358; 1262 16462 DATABASE - ledgermind ledgermind
215; 1259 16464 TABLE public ml_features ledgermind
3359; 0 0 COMMENT public TABLE ml_features ledgermind
;\tdepends on: 215
214; 1259 16463 SEQUENCE public ml_features_txn_id_seq ledgermind
;\tdepends on: 215
3360; 0 0 SEQUENCE OWNED BY public ml_features_txn_id_seq ledgermind
;\tdepends on: 214
216; 1259 16473 TABLE public other ledgermind
3201; 2604 16467 DEFAULT public ml_features txn_id ledgermind
;\tdepends on: 215 214 215
3351; 0 16464 TABLE DATA public ml_features ledgermind
;\tdepends on: 215
3352; 0 16473 TABLE DATA public other ledgermind
;\tdepends on: 216
3361; 0 0 SEQUENCE SET public ml_features_txn_id_seq ledgermind
;\tdepends on: 214
3204; 2606 16471 CONSTRAINT public ml_features ml_features_pkey ledgermind
;\tdepends on: 215
3206; 2606 16477 CONSTRAINT public other other_pkey ledgermind
;\tdepends on: 216
3202; 1259 16472 INDEX public ix_merchant ledgermind
;\tdepends on: 215
3210; 1259 16480 INDEX public ix_other_f ledgermind
;\tdepends on: 216
3207; 2606 16478 FK CONSTRAINT public other other_f_fkey ledgermind
;\tdepends on: 216 3204 215
3208; 2606 16479 FK CONSTRAINT public ml_features ml_features_merchant_fkey ledgermind
;\tdepends on: 215 3206 216
3209; 2620 16481 TRIGGER public ml_features trg_touch ledgermind
;\tdepends on: 215
3362; 0 0 ACL public TABLE ml_features ledgermind
;\tdepends on: 215
3363; 0 0 COMMENT public COLUMN other.f ledgermind
;\tdepends on: 216
"""


def test_parse_toc_reads_multiword_types_and_dependencies():
    entries = {e.dump_id: e for e in pc.parse_toc(FULL_TOC)}
    assert entries[3351].desc == "TABLE DATA" and entries[3351].tag == "ml_features"
    assert entries[3207].desc == "FK CONSTRAINT" and entries[3207].tag == "other other_f_fkey"
    assert entries[3360].desc == "SEQUENCE OWNED BY" and entries[3360].deps == {214}
    assert entries[3201].deps == {214, 215}
    assert entries[3355].desc == "ENCODING" and entries[3355].deps == set()
    assert entries[215].owner == "ledgermind"


def test_table_entries_keep_the_table_and_everything_of_it_only():
    kept = pc.table_entries(pc.parse_toc(FULL_TOC), "public", "ml_features")
    assert [e.label for e in kept] == [
        "TABLE public ml_features",
        "COMMENT public TABLE ml_features",
        "SEQUENCE public ml_features_txn_id_seq",
        "SEQUENCE OWNED BY public ml_features_txn_id_seq",
        "DEFAULT public ml_features txn_id",
        "TABLE DATA public ml_features",
        "SEQUENCE SET public ml_features_txn_id_seq",
        "CONSTRAINT public ml_features ml_features_pkey",
        "INDEX public ix_merchant",
        "FK CONSTRAINT public ml_features ml_features_merchant_fkey",
        "TRIGGER public ml_features trg_touch",
        "ACL public TABLE ml_features",
    ]


def test_table_entries_exclude_other_tables_referencing_it():
    labels = [e.label for e in pc.table_entries(pc.parse_toc(FULL_TOC), "public", "ml_features")]
    assert "FK CONSTRAINT public other other_f_fkey" not in labels
    assert not [label for label in labels if label.split()[0] in ("DATABASE", "ENCODING", "STDSTRINGS", "SEARCHPATH")]
    assert not [label for label in labels if label.endswith(" other") or " other " in label]


def test_table_entries_for_the_other_table():
    labels = [e.label for e in pc.table_entries(pc.parse_toc(FULL_TOC), "public", "other")]
    assert labels == [
        "TABLE public other",
        "TABLE DATA public other",
        "CONSTRAINT public other other_pkey",
        "INDEX public ix_other_f",
        "FK CONSTRAINT public other other_f_fkey",
        "COMMENT public COLUMN other.f",
    ]


@pytest.mark.parametrize(
    ("schema", "table"), [("public", "missing"), ("audit", "ml_features"), ("public", "ml_feature")]
)
def test_table_entries_empty_when_the_table_is_not_archived(schema, table):
    assert pc.table_entries(pc.parse_toc(FULL_TOC), schema, table) == []


def test_toc_list_text_is_the_original_lines():
    kept = pc.table_entries(pc.parse_toc(FULL_TOC), "public", "ml_features")
    text = pc.toc_list_text(kept)
    assert text.splitlines()[0] == "215; 1259 16464 TABLE public ml_features ledgermind"
    assert "depends on" not in text and len(text.splitlines()) == len(kept)


PREFIX = "ledgermind_ml_features"


@pytest.mark.parametrize(
    ("names", "keep", "expired"),
    [
        # newest first by timestamp, whatever the listing order
        (
            [f"{PREFIX}_20260103T000000Z.dump", f"{PREFIX}_20260101T000000Z.dump", f"{PREFIX}_20260102T000000Z.dump"],
            2,
            [f"{PREFIX}_20260101T000000Z.dump"],
        ),
        # two in the same second: -2 is newer than the plain name
        (
            [f"{PREFIX}_20260101T000000Z.dump", f"{PREFIX}_20260101T000000Z-2.dump", f"{PREFIX}_20251231T000000Z.dir"],
            1,
            [f"{PREFIX}_20260101T000000Z.dump", f"{PREFIX}_20251231T000000Z.dir"],
        ),
        # sidecars, partial files, other prefixes and foreign files never count
        (
            [
                f"{PREFIX}_20260101T000000Z.dump.json",
                f"{PREFIX}_20260101T000000Z.dump.partial",
                f"{PREFIX}_x_20250101T000000Z.dump",
                "ledgermind_full_20200101T000000Z.dump",
                "notes.txt",
                f"{PREFIX}_20260102T000000Z.dump",
            ],
            1,
            [],
        ),
        # keep 0 keeps everything
        ([f"{PREFIX}_20260101T000000Z.dump", f"{PREFIX}_20260102T000000Z.dump"], 0, []),
        ([f"{PREFIX}_20260101T000000Z.dump"], 5, []),
    ],
)
def test_select_expired(names, keep, expired):
    assert pc.select_expired(names, PREFIX, keep) == expired


def test_archive_name_avoids_taken_names():
    when = time.strptime("2026-01-02 03:04:05", "%Y-%m-%d %H:%M:%S")
    first = pc.archive_name(PREFIX, "custom", when)
    assert first == f"{PREFIX}_20260102T030405Z.dump"
    assert pc.archive_name(PREFIX, "custom", when, {first}) == f"{PREFIX}_20260102T030405Z-2.dump"
    assert pc.archive_name(PREFIX, "directory", when, {first + ".partial"}) == f"{PREFIX}_20260102T030405Z.dir"


@pytest.mark.parametrize(
    ("dbname", "scope", "schema", "table", "expected"),
    [
        ("ledgermind", "table", "public", "ml_features", "ledgermind_ml_features"),
        ("ledgermind", "table", "audit", "ml_features", "ledgermind_audit.ml_features"),
        ("ledgermind", "full", "public", "ml_features", "ledgermind_full"),
        ("my db/x", "table", "public", "t", "my_db_x_t"),
    ],
)
def test_default_prefix(dbname, scope, schema, table, expected):
    assert pc.default_prefix(dbname, scope, schema, table) == expected


def test_sidecar_round_trip_is_private(tmp_path):
    path = str(tmp_path / "a.dump.json")
    pc.write_sidecar(path, {"sha256": "ab", "metadata": {"total": 3}})
    assert pc.read_sidecar(path) == {"sha256": "ab", "metadata": {"total": 3}}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not os.path.exists(path + ".partial")
    assert pc.read_sidecar(str(tmp_path / "missing.json")) is None


@pytest.mark.parametrize("content", ["[1, 2]", "{not json"])
def test_read_sidecar_refuses_garbage(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(pc.ClientError, match="sidecar"):
        pc.read_sidecar(str(path))


def test_sha256_of_file_and_directory(tmp_path):
    data = os.urandom(3 * pc.CHUNK_SIZE + 7)
    (tmp_path / "f.dump").write_bytes(data)
    assert pc.sha256_archive(str(tmp_path / "f.dump")) == hashlib.sha256(data).hexdigest()
    archive = tmp_path / "d.dir"
    archive.mkdir()
    (archive / "toc.dat").write_bytes(b"toc")
    (archive / "3346.dat.gz").write_bytes(b"data")
    files = [("3346.dat.gz", b"data"), ("toc.dat", b"toc")]
    manifest = "".join(f"{hashlib.sha256(c).hexdigest()}  {n}\n" for n, c in files)
    assert pc.sha256_archive(str(archive)) == hashlib.sha256(manifest.encode()).hexdigest()
    assert pc.archive_size(str(archive)) == 7


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n", (15, "15.18")),
        ("pg_dump (PostgreSQL) 13.16\n", (13, "13.16")),
        ("pg_restore (PostgreSQL) 17beta1\n", (17, "17")),
        ("pg_dump (PostgreSQL) 9.6.24\n", (9, "9.6.24")),
    ],
)
def test_parse_client_version(output, expected):
    assert pc.parse_client_version(output) == expected


@pytest.mark.parametrize(
    ("client_major", "server_num", "problem"),
    [
        (15, 150018, None),
        (16, 150018, None),
        (13, 150018, "pg_dump 13 cannot dump server 15: install postgresql-client-15"),
        (9, 100023, "pg_dump 9 cannot dump server 10"),
    ],
)
def test_version_problem(client_major, server_num, problem):
    found = pc.version_problem("pg_dump", client_major, server_num)
    assert found == problem if problem is None else found.startswith(problem)


def test_client_env_uses_libpq_and_hides_nothing_on_argv():
    params = {
        "database_url": "postgresql://u:s3cr%40t@db.example:6543/ledgermind?sslmode=verify-full",
        "login_host": None, "login_port": None, "login_user": None, "login_password": None, "login_db": None,
        "login_unix_socket": None, "ssl_mode": None, "ca_cert": "/etc/ssl/ca.pem",
    }
    env = pc.client_env(params)
    assert env["PGPASSWORD"] == "s3cr@t"
    assert env["PGSSLMODE"] == "verify-full" and env["PGSSLROOTCERT"] == "/etc/ssl/ca.pem"
    assert env["PGHOST"] == "db.example" and env["PGPORT"] == "6543" and env["PGDATABASE"] == "ledgermind"
    assert pc.public_url(params) == "postgresql://u@db.example:6543/ledgermind?sslmode=verify-full&sslrootcert=/etc/ssl/ca.pem"
    assert "s3cr@t" in pc.secrets(params)
    assert pc.scrub("FATAL: s3cr@t and s3cr%40t", pc.secrets(params)) == "FATAL: ******** and ********"


APP = {"PGAPPNAME": "ledgermind.migrations"}  # build_connect_kwargs' default session name


@pytest.mark.parametrize(
    ("params", "env"),
    [
        ({}, APP),
        ({"connect_timeout": 10, "query_timeout": 300, "lock_timeout": 5}, {**APP, "PGCONNECT_TIMEOUT": "10"}),
        ({"connect_timeout": 0}, {**APP, "PGCONNECT_TIMEOUT": "0"}),
        # As community.postgresql: the socket directory replaces an unset or localhost host only.
        ({"login_unix_socket": "/run/postgresql"}, {**APP, "PGHOST": "/run/postgresql"}),
        ({"login_unix_socket": "/run/postgresql", "login_host": "localhost"}, {**APP, "PGHOST": "/run/postgresql"}),
        ({"login_unix_socket": "/run/postgresql", "login_host": "db"}, {**APP, "PGHOST": "db"}),
        ({"database_url": "postgresql://u@db/x", "login_unix_socket": "/run/postgresql"},
         {**APP, "PGHOST": "/run/postgresql", "PGUSER": "u", "PGDATABASE": "x"}),
        # connect_params win over everything, and those without a ledgermind_db key travel too.
        ({"connect_params": {"sslcert": "/c.pem", "sslkey": "/k.pem", "sslrootcert": "/ca.pem", "sslmode": "verify-ca",
                             "application_name": "nightly", "options": "-c work_mem=64MB",
                             "target_session_attrs": "read-write"}},
         {"PGSSLCERT": "/c.pem", "PGSSLKEY": "/k.pem", "PGSSLROOTCERT": "/ca.pem", "PGSSLMODE": "verify-ca",
          "PGAPPNAME": "nightly", "PGOPTIONS": "-c work_mem=64MB", "PGTARGETSESSIONATTRS": "read-write"}),
        ({"login_host": "db", "ca_cert": "/ca.pem", "connect_timeout": 10,
          "connect_params": {"host": "replica", "dbname": "other", "sslrootcert": "/other.pem", "connect_timeout": 3}},
         {**APP, "PGHOST": "replica", "PGDATABASE": "other", "PGSSLROOTCERT": "/other.pem", "PGCONNECT_TIMEOUT": "3"}),
        ({"connect_params": {"sslsni": False, "sslcompression": True, "hostaddr": "10.0.0.5", "port": 6432}},
         {**APP, "PGSSLSNI": "0", "PGSSLCOMPRESSION": "1", "PGHOSTADDR": "10.0.0.5", "PGPORT": "6432"}),
        ({"connect_params": {"sslcert": None, "options": ""}}, APP),
    ],
)
def test_client_env_maps_the_shared_options(params, env):
    # pg_dump and pg_restore always get statement_timeout=0 as a connection option, after the caller's own.
    env = {**env, "PGOPTIONS": (env.get("PGOPTIONS", "") + " -c statement_timeout=0").strip()}
    assert pc.client_env(params) == env


@pytest.mark.parametrize(
    ("connect_params", "application_name", "expected"),
    [
        ({}, "ledgermind.migrations.pg_backup_archive", "ledgermind.migrations.pg_backup_archive"),
        ({"application_name": "nightly"}, "ledgermind.migrations.pg_backup_archive", "nightly"),
        ({}, None, "ledgermind.migrations"),
    ],
)
def test_client_env_names_the_session_unless_connect_params_do(connect_params, application_name, expected):
    assert pc.client_env({"connect_params": connect_params}, application_name)["PGAPPNAME"] == expected


@pytest.mark.parametrize(
    ("connect_params", "named"),
    [
        ({"keepalives": 1}, "keepalives"),
        ({"sslcert": "/c.pem", "tcp_user_timeout": 1000}, "tcp_user_timeout"),
        ({"sslpassword": "k3y-pass", "replication": "database"}, "replication, sslpassword"),
    ],
)
def test_connect_params_without_a_libpq_variable_are_refused_by_name(connect_params, named):
    with pytest.raises(LibpqSettingsError) as caught:
        pc.client_env({"connect_params": connect_params})
    message = str(caught.value)
    assert message.startswith(f"connection parameter(s) {named} cannot be passed")
    assert "sslcert" in message and "target_session_attrs" in message
    assert "k3y-pass" not in message


@pytest.mark.parametrize(
    ("lock_timeout", "argv"),
    [
        (5, ["--lock-wait-timeout=5000"]),
        (1, ["--lock-wait-timeout=1000"]),
        (0, []),  # waits forever, as lock_timeout 0 does
        (None, []),
    ],
)
def test_lock_wait_argv(lock_timeout, argv):
    assert pc.lock_wait_argv(lock_timeout) == argv


LOCK_WAIT_STDERR = """pg_dump: error: query failed: ERROR:  canceling statement due to statement timeout
pg_dump: detail: Query was: LOCK TABLE public.ml_features IN ACCESS SHARE MODE
"""


@pytest.mark.parametrize(
    ("rc", "stderr", "lock_timeout", "starts"),
    [
        (1, LOCK_WAIT_STDERR, 5, "pg_dump gave up after lock_timeout=5s waiting for a table lock"),
        (1, "pg_dump: error: connection to server failed\n", 5, "pg_dump failed (exit code 1): pg_dump: error: conn"),
        (1, "pg_dump: error: query failed: ERROR:  canceling statement due to statement timeout\n", 5,
         "pg_dump failed (exit code 1)"),
        (-9, "", 5, "pg_dump failed (exit code -9): no error output"),
    ],
)
def test_dump_error_explains_a_lock_wait(rc, stderr, lock_timeout, starts):
    assert pc.dump_error(rc, stderr, lock_timeout).startswith(starts)


@pytest.mark.parametrize(
    ("params", "hidden"),
    [
        ({"connect_params": {"password": "cp-s3cret"}}, ["cp-s3cret"]),
        ({"database_url": "postgresql://u:url-pw@db/x", "login_password": "login-pw"}, ["url-pw", "login-pw"]),
        ({"database_url": "postgresql://u:p%2Fw@db/x"}, ["p/w", "p%2Fw"]),
    ],
)
def test_secrets_cover_every_way_to_give_a_password(params, hidden):
    found = pc.secrets(params)
    assert all(value in found for value in hidden)
    text = " ".join(hidden)
    assert pc.scrub(text, found).replace("********", "").strip() == ""


def test_public_url_and_database_name_follow_connect_params():
    params = {"database_url": "postgresql://u:pw@db/x", "connect_params": {"dbname": "y", "password": "cp"}}
    assert pc.public_url(params) == "postgresql://u@db/y"
    assert pc.database_name(params) == "y"


def test_sidecar_is_plain_json(tmp_path):
    path = str(tmp_path / "x.json")
    pc.write_sidecar(path, {"b": 1, "a": 2})
    with open(path, encoding="utf-8") as handle:
        assert json.load(handle) == {"a": 2, "b": 1}


def test_parse_toc_tolerates_pg_restore_trailing_blanks():
    (entry,) = pc.parse_toc("3355; 0 0 ENCODING - ENCODING \n")
    assert (entry.desc, entry.schema, entry.tag, entry.owner) == ("ENCODING", "-", "ENCODING", "")
