"""pg_backup_archive / pg_backup_restore and the pg_backup role, through real Ansible and PostgreSQL.

Each test gets a fresh scratch database ``lm_test_backup`` (dropped afterwards) holding a small
``ml_features`` table with text[] tokens, NULL and '{}' among them; tests of archives shared between
databases (issue 9) also get ``lm_test_peer``, a smaller database of the same shape.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg2
import pytest
from stackdb import drop_database, server_url, with_db

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / ".build" / "collections"))

from ansible_collections.ledgermind.migrations.plugins.module_utils import _pg_clients as pc  # noqa: E402

BIN = Path(sys.executable).parent
SCRATCH_DB = "lm_test_backup"
PEER_DB = "lm_test_peer"
WRONG_PASSWORD = "Wr0ng-S3cret-pw-7781"
SEED_SQL = """
CREATE TABLE ml_features (txn_id bigint primary key, tokens text[], merchant text);
COMMENT ON TABLE ml_features IS 'token features';
INSERT INTO ml_features VALUES
  (1, '{coffee,shop}', 'Blue Bottle'),
  (2, NULL, 'Unknown'),
  (3, '{}', 'Empty'),
  (4, '{"with space","quote\\"d",comma\\,here}', 'Odd "Tokens"');
INSERT INTO ml_features SELECT g, ARRAY['tok' || g, 'm' || (g % 97)], 'merchant ' || (g % 101)
  FROM generate_series(5, :rows) g;
"""
TO_JSONB_SQL = "ALTER TABLE ml_features ALTER COLUMN tokens TYPE jsonb USING to_jsonb(tokens)"


def psql(url: str, sql: str, check: bool = True) -> str:
    out = subprocess.run(
        [pc.find_client("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
        capture_output=True, text=True, check=False,
    )
    if check and out.returncode != 0:
        raise AssertionError(out.stderr)
    return out.stdout.strip()


def snapshot(url: str) -> dict:
    """What must come back exactly: rows (tokens as text), the column type, the indexes."""
    return {
        "rows": psql(url, "SELECT md5(string_agg(format('%s|%s|%s', txn_id, tokens, merchant), E'\\n'"
                          " ORDER BY txn_id)), count(*) FROM ml_features"),
        "type": psql(url, "SELECT udt_name FROM information_schema.columns"
                          " WHERE table_name = 'ml_features' AND column_name = 'tokens'"),
        "indexes": psql(url, "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes"
                             " WHERE tablename = 'ml_features'"),
        "comment": psql(url, "SELECT obj_description('ml_features'::regclass)"),
    }


def ansible_env() -> dict[str, str]:
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "PATH": "{}:{}".format(BIN, os.environ.get("PATH", "")),
        "ANSIBLE_NOCOLOR": "1",
    }


def run_module(module: str, args: dict, check: bool = False) -> dict:
    """One ad-hoc module run; returns the host's result (``failed`` set on failure)."""
    env = {**ansible_env(), "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"}
    argv = [str(BIN / "ansible"), "localhost", "-i", "inventories/local", "-m", "ledgermind.migrations." + module,
            "-a", json.dumps(args)]
    out = subprocess.run(argv + (["--check"] if check else []), cwd=REPO, env=env, capture_output=True, text=True,
                         check=False)
    try:
        report = json.loads(out.stdout)
    except ValueError:
        raise AssertionError(f"no JSON from ansible:\n{out.stdout}\n{out.stderr}") from None
    return report["plays"][0]["tasks"][0]["hosts"]["localhost"]


def run_playbook(tmp_path: Path, tasks: list[dict], extra: list[str] = ()) -> subprocess.CompletedProcess:
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps([{"hosts": "database", "gather_facts": False, "tasks": tasks}]))
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "inventories/local", str(playbook), *extra],
        cwd=REPO, env=ansible_env(), capture_output=True, text=True, check=False,
    )


def scratch_database(name: str, rows: int) -> Iterator[str]:
    admin = server_url()
    drop_database(admin, name)
    psql(admin, f"CREATE DATABASE {name}")
    url = with_db(admin, name)
    psql(url, SEED_SQL.replace(":rows", str(rows)))
    yield url
    drop_database(admin, name)


@pytest.fixture
def db() -> Iterator[str]:
    yield from scratch_database(SCRATCH_DB, 20000)


@pytest.fixture
def peer() -> Iterator[str]:
    """Another database on the same server, whose archives may land in the same directory."""
    yield from scratch_database(PEER_DB, 500)


def backup(url: str, dest: Path, **args) -> dict:
    result = run_module("pg_backup_archive", {"database_url": url, "dest_dir": str(dest), "table": "ml_features",
                                              "column": "tokens", **args})
    assert not result.get("failed"), result.get("msg")
    return result


def restore(url: str, src: str, check: bool = False, **args) -> dict:
    return run_module("pg_backup_restore", {"database_url": url, "src": src, **args}, check=check)


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_backup_is_private_verified_and_described(db, tmp_path):
    dest = tmp_path / "backups"
    result = backup(db, dest, metadata={"fingerprint": "abc123", "total": 20000})
    archive = Path(result["path"])

    assert result["changed"] and result["verified"]
    assert archive.name.startswith("lm_test_backup_ml_features_") and archive.suffix == ".dump"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert not list(dest.glob("*.partial"))
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == result["sha256"]
    assert archive.stat().st_size == result["size_bytes"]

    sidecar_file = Path(result["sidecar"])
    assert sidecar_file == Path(str(archive) + ".json")
    assert stat.S_IMODE(sidecar_file.stat().st_mode) == 0o600
    sidecar = json.loads(sidecar_file.read_text())
    assert sidecar["sha256"] == result["sha256"] and sidecar["size_bytes"] == result["size_bytes"]
    assert sidecar["scope"] == "table" and sidecar["table"] == "ml_features" and sidecar["schema"] == "public"
    assert sidecar["metadata"] == {"fingerprint": "abc123", "total": 20000}
    assert sidecar["pg_dump_version"].startswith("15") and sidecar["created"].endswith("Z")
    password = urlsplit(db).password
    assert sidecar["database"] == with_db(db, SCRATCH_DB).replace(f":{password}@", "@")
    assert password not in json.dumps(result["command"])
    assert any(arg.startswith("--table=") for arg in result["command"])
    # Which database and table the archive is of, read by the module itself (issue 9).
    identity = sidecar["identity"]
    assert identity == result["identity"]
    assert identity["database"] == SCRATCH_DB and identity["database_oid"] == int(
        psql(db, "SELECT oid FROM pg_database WHERE datname = current_database()"))
    assert (identity["schema"], identity["table"], identity["column"]) == ("public", "ml_features", "tokens")
    assert identity["column_type"] == "text[]"
    assert identity["table_oid"] == int(psql(db, "SELECT 'ml_features'::regclass::oid"))


def test_directory_format_full_scope_and_restore_from_it(db, tmp_path):
    result = backup(db, tmp_path, scope="full", format="directory")
    archive = Path(result["path"])
    assert archive.is_dir() and archive.name.startswith("lm_test_backup_full_") and archive.suffix == ".dir"
    identity = json.loads(Path(result["sidecar"]).read_text())["identity"]
    assert identity["database"] == SCRATCH_DB and identity["table"] is None and identity["column_type"] is None
    assert stat.S_IMODE(archive.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in archive.iterdir())
    before = snapshot(db)
    psql(db, "UPDATE ml_features SET tokens = '{changed}'; CREATE TABLE unrelated (id int)")
    restored = run_module("pg_backup_restore", {"database_url": db, "src": str(archive), "table": "ml_features"})
    assert not restored.get("failed"), restored.get("msg")
    assert snapshot(db) == before
    assert psql(db, "SELECT to_regclass('unrelated') IS NOT NULL") == "t"  # only the table was restored


def test_truncated_archive_passes_list_but_fails_verification_and_restore(db, tmp_path):
    result = backup(db, tmp_path / "good")
    archive = Path(result["path"])
    data = archive.read_bytes()
    cut = tmp_path / "cut" / archive.name
    cut.parent.mkdir()
    cut.write_bytes(data[: len(data) // 2])
    pg_restore = pc.find_client("pg_restore")

    # Why `--list` is not a verification: it reads the table of contents only.
    listing = subprocess.run([pg_restore, "--list", str(cut)], capture_output=True, text=True, check=False)
    assert listing.returncode == 0 and "TABLE DATA public ml_features" in listing.stdout
    # Reading every data block is.
    with pytest.raises(pc.ClientError, match="failed verification"):
        pc.verify_archive(pg_restore, str(cut))

    psql(db, "UPDATE ml_features SET merchant = 'after backup' WHERE txn_id = 1")
    before = snapshot(db)
    # The original sidecar's checksum no longer matches: refused before anything else.
    sidecar = json.loads(Path(result["sidecar"]).read_text())
    Path(str(cut) + ".json").write_text(json.dumps(sidecar))
    refused = restore(db, str(cut))
    assert refused["failed"] and "refusing to restore" in refused["msg"] and "SHA-256" in refused["msg"]
    # Even with a sidecar whose checksum matches the truncated bytes, the full read refuses it.
    truncated_sha = hashlib.sha256(cut.read_bytes()).hexdigest()
    Path(str(cut) + ".json").write_text(json.dumps(dict(sidecar, sha256=truncated_sha)))
    refused = restore(db, str(cut), expected_sha256=truncated_sha)
    assert refused["failed"] and "failed verification" in refused["msg"]
    assert snapshot(db) == before


def test_archive_module_rejects_a_truncated_dump_and_keeps_older_archives(db, tmp_path):
    dest = tmp_path / "backups"
    older = backup(db, dest, keep=1)
    # A pg_dump that "succeeds" but delivers only half its archive (a full disk, a killed writer...).
    fake = tmp_path / "pg_dump"
    fake.write_text(
        "#!/bin/sh\n"
        'case "$1" in --version) exec {0} --version;; esac\n'
        'full=$(mktemp); {0} "$@" > "$full" || exit $?\n'
        'head -c $(( $(stat -c %s "$full") / 2 )) "$full"; rm -f "$full"\n'.format(pc.find_client("pg_dump"))
    )
    fake.chmod(0o755)
    failed = run_module("pg_backup_archive", {
        "database_url": db, "dest_dir": str(dest), "table": "ml_features", "keep": 1, "pg_dump_path": str(fake),
        "pg_restore_path": pc.find_client("pg_restore"),
    })
    assert failed["failed"] and "failed verification" in failed["msg"]
    assert sorted(p.name for p in dest.iterdir()) == sorted([Path(older["path"]).name, Path(older["sidecar"]).name])


def test_retention_keeps_the_newest_n(db, tmp_path):
    dest = tmp_path / "backups"
    dest.mkdir()
    (dest / "notes.txt").write_text("not ours")
    (dest / "other_prefix_20200101T000000Z.dump").write_text("not ours either")
    paths = [backup(db, dest, keep=2, prefix="tokens")["path"] for _round in range(2)]
    last = backup(db, dest, keep=2, prefix="tokens")
    paths.append(last["path"])
    assert last["deleted"] == [paths[0], paths[0] + ".json"]
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        [Path(p).name for p in paths[1:]] + [Path(p).name + ".json" for p in paths[1:]]
        + ["notes.txt", "other_prefix_20200101T000000Z.dump"]
    )


def test_check_mode_writes_nothing(db, tmp_path):
    dest = tmp_path / "never"
    result = run_module("pg_backup_archive", {"database_url": db, "dest_dir": str(dest), "table": "ml_features"},
                        check=True)
    assert result["changed"] and not result.get("failed")
    assert result["command"][0].endswith("pg_dump") and result["command"][-1] == '--table="public"."ml_features"'
    assert not any(arg.startswith("--file") for arg in result["command"])  # streamed, see the module's docs
    assert not dest.exists()


def test_wrong_password_is_clear_and_never_shown(db, tmp_path):
    wrong = with_db(db, SCRATCH_DB, password=WRONG_PASSWORD)
    dest = tmp_path / "backups"
    out = run_playbook(tmp_path, [
        {"ansible.builtin.include_role": {"name": "ledgermind.migrations.pg_backup"},
         "vars": {"pg_backup_connection": {"url": wrong}, "pg_backup_dir": str(dest)}},
    ], extra=["-vvv"])
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "password authentication failed" in text
    assert WRONG_PASSWORD not in text
    assert not dest.exists()
    # The same through login_password, ad hoc.
    host = urlsplit(db)
    result = run_module("pg_backup_archive", {
        "login_host": host.hostname, "login_port": host.port, "login_user": host.username,
        "login_password": WRONG_PASSWORD, "login_db": SCRATCH_DB, "dest_dir": str(dest), "table": "ml_features",
    })
    assert result["failed"] and "password authentication failed" in result["msg"]
    assert WRONG_PASSWORD not in json.dumps(result)


def test_right_password_is_never_shown_either(db, tmp_path):
    password = urlsplit(db).password
    assert password and password not in ("ledgermind", SCRATCH_DB), "needs a password distinct from other names"
    out = run_playbook(tmp_path, [
        {"ansible.builtin.include_role": {"name": "ledgermind.migrations.pg_backup"},
         "vars": {"pg_backup_connection": {"url": db}, "pg_backup_dir": str(tmp_path / "b")}},
        {"ansible.builtin.include_role": {"name": "ledgermind.migrations.pg_backup", "tasks_from": "restore"},
         "vars": {"pg_backup_connection": {"url": db}, "pg_backup_restore_src": "{{ pg_backup_result.path }}"}},
    ], extra=["-vvv"])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "TABLE DATA public ml_features" in out.stdout
    assert password not in out.stdout + out.stderr
    sidecar = next((tmp_path / "b").glob("*.json")).read_text()
    assert password not in sidecar


def test_password_travels_in_the_environment_only(db, tmp_path):
    argv_log, env_log = tmp_path / "argv", tmp_path / "env"
    spy = tmp_path / "pg_dump"
    spy.write_text(
        "#!/bin/sh\n"
        'printf "%s\\n" "$@" >> {}\n'
        'echo "PGPASSWORD=${{PGPASSWORD:+set}} PGHOST=$PGHOST" >> {}\n'
        'exec {} "$@"\n'.format(argv_log, env_log, pc.find_client("pg_dump"))
    )
    spy.chmod(0o755)
    result = backup(db, tmp_path / "b", pg_dump_path=str(spy), pg_restore_path=pc.find_client("pg_restore"))
    assert result["verified"]
    # The dump itself (the second call; the first is --version) got the password in its environment...
    assert env_log.read_text().splitlines()[-1] == f"PGPASSWORD=set PGHOST={urlsplit(db).hostname}"
    # ...and nothing of the connection on its command line, which `ps` shows to every user.
    argv = argv_log.read_text()
    assert "--format=custom" in argv and urlsplit(db).password + "@" not in argv
    assert "postgresql://" not in argv and "password=" not in argv.lower().replace("--no-password", "")


def test_pg_dump_older_than_the_server_is_refused_with_the_fix(db, tmp_path):
    old = tmp_path / "pg_dump"
    old.write_text('#!/bin/sh\necho "pg_dump (PostgreSQL) 13.16"\n')
    old.chmod(0o755)
    result = run_module("pg_backup_archive", {"database_url": db, "dest_dir": str(tmp_path / "b"),
                                              "table": "ml_features", "pg_dump_path": str(old)})
    assert result["failed"]
    assert result["msg"].startswith("pg_dump 13 cannot dump server 15: install postgresql-client-15")
    assert not (tmp_path / "b").exists()


def test_role_backup_then_restore_after_the_migration_shape(db, tmp_path):
    dest = tmp_path / "backups"
    before = snapshot(db)
    assert before["type"] == "_text"
    out = run_playbook(tmp_path, [
        {"ansible.builtin.include_role": {"name": "ledgermind.migrations.pg_backup"},
         "vars": {"pg_backup_connection": {"url": db}, "pg_backup_dir": str(dest),
                  "pg_backup_metadata": {"total": 20000}}},
        {"ansible.builtin.copy": {"content": "{{ pg_backup_report | to_json }}", "dest": str(tmp_path / "report.json"),
                                  "mode": "0600"}},
    ])
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["verified"] and report["sha256"] and report["table"] == "public.ml_features"

    # What the migration does, plus data drift afterwards.
    psql(db, "ALTER TABLE ml_features ALTER COLUMN tokens TYPE jsonb USING to_jsonb(tokens);"
             " CREATE INDEX ix_ml_features_tokens_gin ON ml_features USING gin (tokens);"
             " DELETE FROM ml_features WHERE txn_id > 19000; UPDATE ml_features SET merchant = 'x' WHERE txn_id < 10;"
             " INSERT INTO ml_features VALUES (99999, '[\"new\"]', 'new')")
    migrated = snapshot(db)
    assert migrated["type"] == "jsonb" and "ix_ml_features_tokens_gin" in migrated["indexes"]

    role = {"name": "ledgermind.migrations.pg_backup", "tasks_from": "restore"}
    restore_task = {"ansible.builtin.include_role": role,
                    "vars": {"pg_backup_connection": {"url": db}, "pg_backup_restore_src": report["path"]}}
    # Check mode: verifies and lists, changes nothing.
    out = run_playbook(tmp_path, [restore_task], extra=["--check", "-v"])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "TABLE DATA public ml_features" in out.stdout
    assert snapshot(db) == migrated

    out = run_playbook(tmp_path, [restore_task])
    assert out.returncode == 0, out.stdout + out.stderr
    assert snapshot(db) == before  # exact rows, text[] again, the GIN index gone with the dropped table


def test_failed_restore_leaves_the_table_as_it_was(db, tmp_path):
    result = backup(db, tmp_path)
    # Another table now references ml_features: dropping it (to restore) must fail, and roll back.
    psql(db, "ALTER TABLE ml_features ALTER COLUMN tokens TYPE jsonb USING to_jsonb(tokens);"
             " CREATE INDEX ix_ml_features_tokens_gin ON ml_features USING gin (tokens);"
             " UPDATE ml_features SET merchant = 'changed' WHERE txn_id <= 100;"
             " CREATE TABLE labels (txn_id bigint REFERENCES ml_features (txn_id), label text);"
             " INSERT INTO labels VALUES (1, 'fraud')")
    before = snapshot(db)
    failed = run_module("pg_backup_restore", {"database_url": db, "src": result["path"]})
    assert failed["failed"]
    assert "one transaction" in failed["msg"] and "depend" in failed["msg"]
    assert snapshot(db) == before
    assert psql(db, "SELECT count(*) FROM labels") == "1"


# ---------------------------------------------------------------------------------------------
# Issue 9: one directory, two databases. Archives are bound to the database they are of.
# ---------------------------------------------------------------------------------------------

def test_restore_refuses_another_databases_archive_whatever_its_name(db, peer, tmp_path):
    dest = tmp_path / "shared"
    ours = backup(db, dest, prefix="tokens")
    theirs = backup(peer, dest, prefix="tokens")  # the newest file in the directory, of the other database
    psql(db, TO_JSONB_SQL)
    before = snapshot(db)

    for check in (True, False):  # refused before anything changes, in check mode too
        refused = restore(db, theirs["path"], check=check)
        assert refused["failed"], refused
        msg = refused["msg"]
        assert msg.startswith(f"refusing to restore {theirs['path']} into database {SCRATCH_DB} (oid ")
        assert f"the archive is of database {PEER_DB} (oid " in msg
        assert f"database {PEER_DB} (recorded) vs {SCRATCH_DB} (target)" in msg
        assert refused["archive_identity"]["database"] == PEER_DB
        assert refused["target_identity"]["database"] == SCRATCH_DB
        assert "restored_entries" not in refused
        assert snapshot(db) == before

    # Renamed to look like ours: the sidecar's identity still says whose it is.
    disguised = dest / Path(ours["path"]).name.replace("tokens_", "tokens_z")
    disguised.write_bytes(Path(theirs["path"]).read_bytes())
    Path(str(disguised) + ".json").write_text(Path(theirs["sidecar"]).read_text())
    refused = restore(db, str(disguised))
    assert refused["failed"] and f"the archive is of database {PEER_DB}" in refused["msg"]
    # Their archive under our sidecar (its checksum made to fit): the archive's own header gives it away.
    Path(str(disguised) + ".json").write_text(json.dumps(
        dict(json.loads(Path(ours["sidecar"]).read_text()), sha256=theirs["sha256"])))
    refused = restore(db, str(disguised))
    assert refused["failed"]
    assert f"dumped from database {PEER_DB}, but its sidecar records {SCRATCH_DB}" in refused["msg"]
    assert snapshot(db) == before

    # Our own archive, from the same directory, restores.
    restored = restore(db, ours["path"], expected_column_type="text[]")
    assert not restored.get("failed"), restored.get("msg")
    assert snapshot(db)["type"] == "_text"
    assert psql(db, "SELECT count(*) FROM ml_features") == "20000"


def test_retention_spares_other_databases_and_the_last_text_array_archive(db, peer, tmp_path):
    dest = tmp_path / "shared"
    peers = [backup(peer, dest, prefix="tokens", keep=0)["path"] for _round in range(2)]
    text_array = backup(db, dest, prefix="tokens", keep=1)
    # keep=1 deleted neither of the other database's (newer) archives, nor counted them.
    assert text_array["deleted"] == []
    assert sorted(s["path"] for s in text_array["retention_skipped"]) == sorted(peers)
    assert all(f"database {PEER_DB} (recorded) vs {SCRATCH_DB} (target)" in s["reason"]
               for s in text_array["retention_skipped"])

    psql(db, TO_JSONB_SQL)
    first_jsonb = backup(db, dest, prefix="tokens", keep=1)
    assert first_jsonb["identity"]["column_type"] == "jsonb"
    assert first_jsonb["deleted"] == []
    assert first_jsonb["kept_last_of_type"] == [text_array["path"]]
    second_jsonb = backup(db, dest, prefix="tokens", keep=1)
    third_jsonb = backup(db, dest, prefix="tokens", keep=1)
    assert second_jsonb["deleted"] == [first_jsonb["path"], first_jsonb["sidecar"]]
    assert third_jsonb["deleted"] == [second_jsonb["path"], second_jsonb["sidecar"]]
    assert third_jsonb["kept_last_of_type"] == [text_array["path"]]

    kept = [*peers, text_array["path"], third_jsonb["path"]]
    assert names(dest) == sorted([Path(p).name for p in kept] + [Path(p).name + ".json" for p in kept])
    # The last text[] archive is still what a rollback can restore.
    restored = restore(db, text_array["path"], expected_column_type="text[]")
    assert not restored.get("failed"), restored.get("msg")
    assert snapshot(db)["type"] == "_text"


def test_retention_leaves_archives_without_a_provable_identity_alone(db, tmp_path):
    dest = tmp_path / "backups"
    first = backup(db, dest, prefix="tokens", keep=0)
    second = backup(db, dest, prefix="tokens", keep=0)
    Path(first["sidecar"]).write_text('{"sha256": "')  # truncated JSON
    legacy = json.loads(Path(second["sidecar"]).read_text())
    del legacy["identity"]  # as written before identities were recorded
    Path(second["sidecar"]).write_text(json.dumps(legacy))

    third = backup(db, dest, prefix="tokens", keep=1)
    assert third["deleted"] == []
    reasons = {s["path"]: s["reason"] for s in third["retention_skipped"]}
    assert reasons[first["path"]].startswith(f"cannot read sidecar {first['sidecar']}: ")
    assert "no database identity" in reasons[second["path"]]
    assert Path(first["path"]).exists() and Path(second["path"]).exists()
    # In check mode, the same plan.
    planned = run_module("pg_backup_archive", {"database_url": db, "dest_dir": str(dest), "table": "ml_features",
                                               "column": "tokens", "prefix": "tokens", "keep": 1}, check=True)
    assert planned["deleted"] == [third["path"]]
    assert {s["path"] for s in planned["retention_skipped"]} == {first["path"], second["path"]}


def test_corrupt_or_foreign_shaped_sidecar_is_refused_by_name(db, tmp_path):
    result = backup(db, tmp_path)
    sidecar = Path(result["sidecar"])
    before = snapshot(db)
    for content, says in [
        ('{"sha256": "', f"cannot read sidecar {sidecar}: "),
        (b"\xff\xfe\x00garbage", f"cannot read sidecar {sidecar}: "),
        ('["not", "an", "object"]', f"sidecar {sidecar} is not one pg_backup_archive writes: it holds a JSON list"),
        (json.dumps({"sha256": 12, "identity": "ledgermind", "table": "ml_features"}),
         f"sidecar {sidecar} is not one pg_backup_archive writes: fields of the wrong type: sha256 is int, "
         "identity is str"),
    ]:
        if isinstance(content, bytes):
            sidecar.write_bytes(content)
        else:
            sidecar.write_text(content)
        refused = restore(db, result["path"])
        assert refused["failed"], refused
        assert refused["msg"].startswith(f"refusing to restore {result['path']}: {says}"), refused["msg"]
        assert "Traceback" not in json.dumps(refused) and "MODULE FAILURE" not in refused["msg"]
    assert snapshot(db) == before


def test_restore_checks_the_column_type_and_the_run(db, tmp_path):
    dest = tmp_path / "backups"
    result = backup(db, dest, metadata={"run_id": "run-1"})
    psql(db, TO_JSONB_SQL)
    before = snapshot(db)

    refused = restore(db, result["path"], expected_column_type="jsonb", check=True)
    assert refused["failed"]
    assert "the archive holds public.ml_features.tokens as text[], the restore expects jsonb" in refused["msg"]
    refused = restore(db, result["path"], expected_run_id="run-2")
    assert refused["failed"]
    assert "it is the backup of run run-1, expected run run-2" in refused["msg"]
    assert snapshot(db) == before

    # An archive written before identities were recorded: refused, saying why and what to do.
    legacy = json.loads(Path(result["sidecar"]).read_text())
    Path(result["sidecar"]).write_text(json.dumps({k: v for k, v in legacy.items() if k != "identity"}))
    refused = restore(db, result["path"])
    assert refused["failed"]
    assert "records no database identity (it says it was taken from postgresql://" in refused["msg"]
    assert "Take a new backup" in refused["msg"] and urlsplit(db).password not in refused["msg"]
    assert snapshot(db) == before
    Path(result["sidecar"]).write_text(json.dumps(legacy))

    # Through the role, with both expectations met (_text is text[]).
    out = run_playbook(tmp_path, [
        {"ansible.builtin.include_role": {"name": "ledgermind.migrations.pg_backup", "tasks_from": "restore"},
         "vars": {"pg_backup_connection": {"url": db}, "pg_backup_restore_src": result["path"],
                  "pg_backup_restore_expected_column_type": "_text",
                  "pg_backup_restore_expected_run_id": "run-1"}},
    ])
    assert out.returncode == 0, out.stdout + out.stderr
    assert snapshot(db)["type"] == "_text"
    # And refused through the role when the run differs.
    out = run_playbook(tmp_path, [
        {"ansible.builtin.include_role": {"name": "ledgermind.migrations.pg_backup", "tasks_from": "restore"},
         "vars": {"pg_backup_connection": {"url": db}, "pg_backup_restore_src": result["path"],
                  "pg_backup_restore_expected_run_id": "run-2"}},
    ])
    assert out.returncode != 0 and "expected run run-2" in out.stdout


def test_role_reports_a_failed_backup_then_fails_with_its_message(db, tmp_path):
    full_disk = tmp_path / "pg_dump"
    full_disk.write_text(
        "#!/bin/sh\n"
        'case "$1" in --version) exec {} --version;; esac\n'
        'echo "pg_dump: error: could not write to output file: No space left on device" >&2\n'
        "exit 1\n".format(pc.find_client("pg_dump"))
    )
    full_disk.chmod(0o755)
    out = run_playbook(tmp_path, [{
        "block": [{"ansible.builtin.include_role": {"name": "ledgermind.migrations.pg_backup"},
                   "vars": {"pg_backup_connection": {"url": db}, "pg_backup_dir": str(tmp_path / "b"),
                            "pg_backup_pg_dump_path": str(full_disk),
                            "pg_backup_pg_restore_path": pc.find_client("pg_restore")}}],
        "rescue": [{"ansible.builtin.copy": {
            "content": "{{ {'report': pg_backup_report, 'msg': ansible_failed_result.msg} | to_json }}",
            "dest": str(tmp_path / "report.json"), "mode": "0600"}}],
    }])
    assert out.returncode == 0, out.stdout + out.stderr
    seen = json.loads((tmp_path / "report.json").read_text())
    report = seen["report"]
    assert report["failed"] is True and report["verified"] is False and report["path"] == ""
    assert report["reason"].startswith("pg_dump failed (exit code 1): ")
    assert "No space left on device" in report["reason"]
    assert seen["msg"] == report["reason"]  # the role failed with the module's own message
    assert report["identity"]["database"] == SCRATCH_DB


# ---------------------------------------------------------------------------------------------
# Issue 11 section 3: one snapshot for the backup and its fingerprint (sidecar ``content``)
# ---------------------------------------------------------------------------------------------

def integrity(url: str, **args) -> dict:
    result = run_module("pg_jsonb_integrity", {"database_url": url, "table": "ml_features", "column": "tokens",
                                               "sample_rows": 0, **args})
    assert not result.get("failed"), result.get("msg")
    return result


def assert_content_of(result: dict, checked: dict) -> None:
    """The backup's content is what pg_jsonb_integrity returned for the same rows (``checked``)."""
    content = result["content"]
    assert content == json.loads(Path(result["sidecar"]).read_text())["content"]
    assert content["fingerprint"] == checked["fingerprint"]
    assert content["fingerprint_sums"] == checked["fingerprint_sums"]
    assert (content["column"], content["key"]) == ("tokens", checked["key_column"]) == ("tokens", "txn_id")


def test_content_is_pg_jsonb_integritys_fingerprint_in_the_dumps_own_snapshot(db, tmp_path):
    checked = integrity(db)
    result = backup(db, tmp_path / "b")
    assert_content_of(result, checked)
    assert result["content"]["fingerprint_sums"]["total"] == 20000
    # The dump read the exported snapshot, the one whose pg_current_snapshot() the content records.
    snapshots = [arg for arg in result["command"] if arg.startswith("--snapshot=")]
    assert len(snapshots) == 1 and snapshots[0] != "--snapshot="
    assert re.fullmatch(r"\d+:\d+:(\d+(,\d+)*)?", result["content"]["snapshot"])
    assert not result.get("warnings")

    # The directory format, and the converted table: the same content, the same fingerprint as the scan's.
    directory = backup(db, tmp_path / "d", format="directory")
    assert_content_of(directory, checked)
    psql(db, TO_JSONB_SQL)
    converted = backup(db, tmp_path / "j")
    assert converted["identity"]["column_type"] == "jsonb"
    assert_content_of(converted, integrity(db))
    assert converted["content"]["fingerprint"] == checked["fingerprint"]

    # No column, or the whole database: no content, no exported snapshot; the sidecar says null.
    for args in ({"column": None}, {"scope": "full"}):
        plain = backup(db, tmp_path / "plain", **args)
        assert plain["content"] is None and json.loads(Path(plain["sidecar"]).read_text())["content"] is None
        assert not any(arg.startswith("--snapshot") for arg in plain["command"])


def test_a_table_without_a_single_column_key_is_backed_up_without_content(db, tmp_path):
    psql(db, "CREATE TABLE pairs (a int, b int, tokens text[], PRIMARY KEY (a, b));"
             " INSERT INTO pairs VALUES (1, 1, '{x}');"
             " CREATE TABLE keyless (tokens text[]); INSERT INTO keyless VALUES ('{y}')")
    for table, why in [("pairs", "a multi-column primary key (a, b)"), ("keyless", "no primary key")]:
        result = backup(db, tmp_path / table, table=table)
        assert result["verified"] and result["content"] is None
        assert not any(arg.startswith("--snapshot") for arg in result["command"])
        assert result["warnings"] == [f"no content fingerprint recorded for the archive of public.{table}: the table "
                                      f"has {why}; the fingerprint needs a single-column primary key"]
    merchant = backup(db, tmp_path / "m", column="merchant")
    assert merchant["content"] is None and "column merchant is text; the fingerprint reads" in merchant["warnings"][0]


class RowWriter(threading.Thread):
    """The application updating rows one by one (autocommit) on its own connection until stopped."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.commits = 0
        self.error: str | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            conn = psycopg2.connect(self.url, application_name="lm_test_backup_writer")
            conn.autocommit = True  # each UPDATE commits (``with conn`` would open one transaction for all)
            try:
                with conn.cursor() as cur:
                    while not self.stop.is_set():
                        key = self.commits % 20000 + 1
                        cur.execute("UPDATE ml_features SET tokens = ARRAY['live', %s] WHERE txn_id = %s",
                                    (str(self.commits), key))
                        self.commits += 1
            finally:
                conn.close()
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = repr(exc)

    def wait_for_commits(self, more: int) -> None:
        target = self.commits + more
        deadline = time.monotonic() + 60
        while self.commits < target:
            assert self.error is None and time.monotonic() < deadline, self.error or "the writer stalled"
            time.sleep(0.01)


def test_under_live_writes_the_content_is_exactly_the_archives(db, tmp_path):
    writer = RowWriter(db)
    writer.start()
    try:
        writer.wait_for_commits(50)
        preflight = integrity(db)  # what a pre-flight records, before the backup
        writer.wait_for_commits(50)  # committed after it, before the backup
        commits_before = writer.commits
        result = backup(db, tmp_path, metadata={"fingerprint": preflight["fingerprint"]})
        assert writer.commits > commits_before, "no write committed while the backup ran"
        writer.wait_for_commits(50)
    finally:
        writer.stop.set()
        writer.join(30)
    assert writer.error is None, writer.error
    content = result["content"]
    assert content["fingerprint"] != preflight["fingerprint"]  # the pre-flight does not describe the archive...
    live = integrity(db)
    assert live["fingerprint"] != content["fingerprint"]  # ...nor does the table now

    # The archive restored (into the same database, as a rollback does): exactly the content recorded.
    restored = restore(db, result["path"])
    assert not restored.get("failed"), restored.get("msg")
    assert restored["archive_content"] == content
    assert restored["archive_metadata"] == {"fingerprint": preflight["fingerprint"]}
    after = integrity(db)
    assert after["fingerprint"] == content["fingerprint"] and after["fingerprint_sums"] == content["fingerprint_sums"]
    # As the rollback's proof reads it: the content as the baseline proves it; the pre-flight's would not.
    proven = integrity(db, baseline=dict(content["fingerprint_sums"], snapshot=content["snapshot"]))
    assert proven["proof"]["matches"] is True and proven["proof"]["method"] == "full"
    refuted = integrity(db, baseline=preflight["fingerprint_sums"])
    assert refuted["proof"]["matches"] is False

    # Into a scratch copy too, with plain pg_restore: the archive's rows are the content's, nothing else.
    copy = with_db(server_url(), "lm_test_backup_copy")
    drop_database(server_url(), "lm_test_backup_copy")
    psql(server_url(), "CREATE DATABASE lm_test_backup_copy")
    try:
        out = subprocess.run([pc.find_client("pg_restore"), "--no-owner", "-d", copy, result["path"]],
                             capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stderr
        assert integrity(copy)["fingerprint"] == content["fingerprint"]
    finally:
        drop_database(server_url(), "lm_test_backup_copy")


def our_sessions(url: str) -> list[str]:
    """The module's sessions still on the server (its exporting transaction, pg_dump's), waiting briefly for
    backends whose client just exited."""
    sessions: list[str] = []
    for _try in range(50):
        sessions = [s for s in psql(url, "SELECT string_agg(pid || ' ' || state, ',') FROM pg_stat_activity"
                                         " WHERE application_name = 'ledgermind.migrations.pg_backup_archive'"
                                    ).split(",") if s]
        if not sessions:
            break
        time.sleep(0.1)
    return sessions


@contextlib.contextmanager
def holding(url: str, statement: str) -> Iterator[int]:
    """Another session that ran ``statement`` in a transaction it keeps open; yields its pid."""
    conn = psycopg2.connect(url, application_name="lm_test_backup_holder")
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
            cur.execute("SELECT pg_backend_pid()")
            yield cur.fetchone()[0]
    finally:
        conn.rollback()
        conn.close()


def test_a_table_locked_by_a_ddl_fails_the_backup_before_anything_is_written(db, tmp_path):
    dest = tmp_path / "b"
    with holding(db, "LOCK TABLE ml_features IN ACCESS EXCLUSIVE MODE") as holder:
        failed = run_module("pg_backup_archive", {"database_url": db, "dest_dir": str(dest), "table": "ml_features",
                                                  "column": "tokens", "lock_timeout": 1})
    assert failed["failed"]
    assert failed["msg"].startswith(f"public.ml_features is locked by another session: pid {holder} ")
    assert "Gave up after lock_timeout=1s" in failed["msg"]
    assert not dest.exists()
    assert our_sessions(db) == []


def test_a_failed_content_scan_fails_the_backup_and_leaves_nothing(db, tmp_path):
    dest = tmp_path / "b"
    dest.mkdir()
    # REINDEX holds the key's index: the scan (whose planning opens the table's indexes) waits for it and gives
    # up after lock_timeout; pg_dump (COPY reads the table alone) and the table lock are not held up.
    with holding(db, "REINDEX INDEX ml_features_pkey"):
        failed = run_module("pg_backup_archive", {"database_url": db, "dest_dir": str(dest), "table": "ml_features",
                                                  "column": "tokens", "lock_timeout": 1})
    assert failed["failed"]
    assert failed["msg"].startswith("the archive's content fingerprint could not be computed in the dump's snapshot: "
                                    "public.ml_features is locked by another session"), failed["msg"]
    assert names(dest) == []  # neither the archive, its .partial nor a sidecar
    assert our_sessions(db) == []
    assert backup(db, dest)["content"]["fingerprint"] == integrity(db)["fingerprint"]  # and once released, it works
