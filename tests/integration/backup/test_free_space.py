"""Free space before the backup (pg_backup_archive, the pg_backup role) and before the in-place rewrite
(pg_rewrite_space, db_migration's in_place.yml), on the real stack (issue 11, section 4).

The backup directory's file system is made too small by a huge free_space_margin (any disk is then too small) and,
when this runs as root, by a real 64 KiB tmpfs. The rewrite's room is unknown for the stack's own role (it may not
read data_directory) and is refused with the numbers for a role of pg_read_all_settings, created over the stack's
superuser socket when it is within reach.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg2
import pytest
from stackdb import drop_database, query, reachable_server_url, scalar, with_db

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
SPACE_DB = "lm_test_space"
DEMO_DB = "lm_test_space_demo"
READER = "lm_test_space_reader"
READER_PASSWORD = "rd-Space-pw-5531"
HUGE = 1e9  # any file system is too small for the estimate times this
SEED_SQL = """
CREATE TABLE ml_features (txn_id bigint primary key, tokens text[], merchant text);
INSERT INTO ml_features SELECT g, ARRAY['tok' || g, 'm' || (g % 97), md5(g::text)], 'merchant ' || (g % 101)
  FROM generate_series(1, 20000) g;
"""


def ansible_env() -> dict[str, str]:
    return {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
            "PATH": "{}:{}".format(BIN, os.environ.get("PATH", ""))}


def run_module(module: str, args: dict, check: bool = False) -> dict:
    """One ad-hoc module run; the host's result (``failed`` set on failure, ``warnings`` as the module gave them)."""
    env = {**ansible_env(), "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"}
    argv = [str(BIN / "ansible"), "localhost", "-i", "inventories/local", "-m", "ledgermind.migrations." + module,
            "-a", json.dumps(args)] + (["--check"] if check else [])
    out = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    try:
        return json.loads(out.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError):
        raise AssertionError(f"no result from ansible:\n{out.stdout}\n{out.stderr}") from None


def run_play(tmp_path: Path, tasks: list[dict], extra: list[str] = ()) -> subprocess.CompletedProcess[str]:
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps([{"name": "Free space", "hosts": "database", "gather_facts": False,
                                     "tasks": tasks}]))
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", "inventories/local", str(playbook), *extra],
                          cwd=REPO, env=ansible_env(), capture_output=True, text=True, check=False)


def table_state(url: str) -> tuple:
    return (scalar(url, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                        " WHERE attrelid = 'ml_features'::regclass AND attname = 'tokens'"),
            scalar(url, "SELECT md5(string_agg(txn_id || ':' || coalesce(tokens::text, '-'), ',' ORDER BY txn_id))"
                        " FROM ml_features"))


@pytest.fixture
def db() -> Iterator[str]:
    admin = reachable_server_url()
    drop_database(admin, SPACE_DB)
    query(with_db(admin, "postgres"), f"CREATE DATABASE {SPACE_DB}")
    url = with_db(admin, SPACE_DB)
    query(url, SEED_SQL)
    query(url, "VACUUM ANALYZE ml_features")
    try:
        yield url
    finally:
        drop_database(admin, SPACE_DB)


@pytest.fixture
def demo_db() -> Iterator[str]:
    """A demo database at the pre-migration revision (scripts/reset_demo_db.py), for db_migration's in_place.yml."""
    admin = reachable_server_url()
    subprocess.run([sys.executable, str(REPO / "scripts" / "reset_demo_db.py"), "--rows", "500", "--db", DEMO_DB],
                   cwd=REPO, env={**os.environ, "DATABASE_URL": admin}, capture_output=True, text=True, check=True)
    try:
        yield with_db(admin, DEMO_DB)
    finally:
        drop_database(admin, DEMO_DB)


# ------------------------------------------------------------------------------------------------ backup


def backup_args(url: str, dest: Path, **args) -> dict:
    return {"database_url": url, "dest_dir": str(dest), "table": "ml_features", "column": "tokens", **args}


@pytest.mark.parametrize("check", [False, True], ids=["run", "check_mode"])
def test_backup_is_refused_before_pg_dump_with_the_numbers(db, tmp_path, check):
    dest = tmp_path / "backups"
    before = table_state(db)
    result = run_module("pg_backup_archive", backup_args(db, dest, free_space_margin=HUGE), check=check)

    assert result.get("failed"), result
    space = result["space"]
    assert (space["checked"], space["enough"]) == (True, False)
    assert space["free_bytes"] < space["needed_bytes"]
    assert space["basis"] == "pg_total_relation_size(public.ml_features)"
    assert space["basis_bytes"] == scalar(db, "SELECT pg_total_relation_size('ml_features')")
    assert space["estimated_bytes"] == -(-space["basis_bytes"] * 2 // 10)  # x0.2 at compress level 1, rounded up
    assert space["directory"] == str(tmp_path)  # dest does not exist yet: its parent's file system
    msg = result["msg"]
    assert msg.startswith(f"Not enough free space for the backup in {dest} (measured at {tmp_path}, it does not "
                          "exist yet): the archive is expected to take about ")
    assert "MiB needed, and its file system has " in msg
    assert f"in {dest} or set ledgermind_backup_dir (dest_dir) to a directory with room" in msg
    assert msg.endswith("Nothing was changed.")
    assert "command" not in result  # refused before pg_dump's command line was even made
    assert not dest.exists() and list(tmp_path.iterdir()) == []
    assert table_state(db) == before


@pytest.mark.parametrize("compress_level", [1, 0])
def test_backup_records_the_check_and_the_estimate_covers_the_archive(db, tmp_path, compress_level):
    result = run_module("pg_backup_archive", backup_args(db, tmp_path, compress_level=compress_level))
    assert not result.get("failed"), result.get("msg")
    space = result["space"]
    assert (space["checked"], space["enough"], space["margin"]) == (True, True, 2.0)
    assert space["factor"] == (0.2 if compress_level else 0.7)
    # The factors measured on the demo table hold for this table's data too (md5 tokens compress worse).
    assert result["size_bytes"] <= space["estimated_bytes"]
    assert space["summary"].startswith(f"free space in {tmp_path}: ")


def test_check_mode_reports_the_space_and_writes_nothing(db, tmp_path):
    result = run_module("pg_backup_archive", backup_args(db, tmp_path / "b"), check=True)
    assert not result.get("failed"), result.get("msg")
    assert result["space"]["enough"] is True and not (tmp_path / "b").exists()


def test_margin_zero_checks_nothing(db, tmp_path):
    result = run_module("pg_backup_archive", backup_args(db, tmp_path, free_space_margin=0), check=True)
    assert not result.get("failed"), result.get("msg")
    assert (result["space"]["checked"], result["space"]["enough"]) == (False, None)
    assert result["space"]["summary"] == "free space not checked (free_space_margin 0)"


@contextlib.contextmanager
def tiny_file_system(path: Path, size: str = "64k") -> Iterator[Path]:
    """A real tmpfs of ``size`` at ``path`` (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root; the huge-margin tests cover the refusal")
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


def test_role_refuses_a_backup_directory_too_small_with_the_default_margin(db, tmp_path):
    report = tmp_path / "report.json"
    before = table_state(db)
    with tiny_file_system(tmp_path / "tiny") as tiny:
        dest = tiny / "ledgermind"
        run = run_play(tmp_path, [{
            "name": "Back up, keeping the report",
            "block": [{"name": "Back up", "ansible.builtin.import_role": {"name": "ledgermind.migrations.pg_backup"},
                       "vars": {"pg_backup_connection": db, "pg_backup_dir": str(dest)}}],
            "rescue": [{"name": "Keep the report", "ansible.builtin.copy": {
                "content": "{{ pg_backup_report | to_json }}", "dest": str(report), "mode": "0600"}}],
        }])
        assert run.returncode == 0, run.stdout + run.stderr
        assert list(tiny.iterdir()) == []  # not even the directory was created
    recorded = json.loads(report.read_text())
    assert recorded["failed"] is True and recorded["path"] == "" and recorded["verified"] is False
    assert recorded["reason"].startswith(f"Not enough free space for the backup in {dest} (measured at {tiny}")
    assert "Free " in recorded["reason"] and "ledgermind_backup_dir" in recorded["reason"]
    assert "x2 margin" in recorded["reason"]
    space = recorded["space"]
    assert space["margin"] == 2.0 and space["free_bytes"] <= 64 * 1024 < space["needed_bytes"]
    assert table_state(db) == before


def test_role_check_mode_prints_the_room(db, tmp_path):
    run = run_play(tmp_path, [{"name": "Back up", "ansible.builtin.import_role": {
        "name": "ledgermind.migrations.pg_backup"}, "vars": {"pg_backup_connection": db,
                                                              "pg_backup_dir": str(tmp_path / "b")}}], ["--check"])
    assert run.returncode == 0, run.stdout + run.stderr
    out = " ".join(run.stdout.split())
    assert f"Backup free space in {tmp_path}: " in out and "MiB needed (archive ~" in out


# ------------------------------------------------------------------------------------------------ rewrite


def rewrite_args(url: str, **args) -> dict:
    return {"database_url": url, "table": "ml_features", "column": "tokens", "target_type": "jsonb", **args}


def test_rewrite_room_is_unknown_for_the_stack_role_and_never_refused(db):
    """The stack's role may not read data_directory: a warning and a value in the result, whatever the margin."""
    assert scalar(db, "SELECT pg_has_role('pg_read_all_settings', 'USAGE')") is False
    result = run_module("pg_rewrite_space", rewrite_args(db, free_space_margin=HUGE))
    assert not result.get("failed"), result.get("msg")
    assert (result["pending"], result["checked"], result["enough"], result["free_bytes"]) == (True, False, None, None)
    assert result["free_space_source"] == "the role may not read data_directory (pg_read_all_settings)"
    assert result["table_bytes"] == scalar(db, "SELECT pg_total_relation_size('ml_features')")
    assert any("could not be checked: the role may not read data_directory" in w for w in result["warnings"])


def test_a_table_locked_by_a_ddl_is_sized_from_the_page_counts_without_waiting(db):
    """pg_total_relation_size would queue behind the ALTER's lock: the planner's page counts stand in at once."""
    conn = psycopg2.connect(db, application_name="lm_test_space_holder")
    try:
        with conn.cursor() as cur:
            cur.execute("LOCK TABLE ml_features IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            result = run_module("pg_rewrite_space", rewrite_args(db, lock_timeout=30))
            seconds = time.monotonic() - started
    finally:
        conn.rollback()
        conn.close()
    assert not result.get("failed"), result.get("msg")
    assert result["table_size_source"] == "pg_class.relpages" and seconds < 20
    pages = scalar(db, "SELECT (sum(relpages) * current_setting('block_size')::bigint)::bigint FROM pg_class"
                       " WHERE oid = 'ml_features'::regclass OR oid = (SELECT reltoastrelid FROM pg_class"
                       " WHERE oid = 'ml_features'::regclass) OR oid IN (SELECT indexrelid FROM pg_index"
                       " WHERE indrelid = 'ml_features'::regclass)")
    assert result["table_bytes"] == pages > 0


def test_a_converted_column_needs_no_room(db):
    query(db, "ALTER TABLE ml_features ALTER COLUMN tokens TYPE jsonb USING to_jsonb(tokens)")
    result = run_module("pg_rewrite_space", rewrite_args(db, free_space_margin=HUGE))
    assert not result.get("failed") and (result["pending"], result["checked"]) == (False, False)
    assert not result.get("warnings")


def _stack_run_dirs() -> list[Path]:
    dirs = [Path(os.environ["LEDGERMIND_STACK_DIR"])] if os.environ.get("LEDGERMIND_STACK_DIR") else []
    dirs.append(REPO / ".stack")
    dirs.extend(Path(p) for p in sorted(glob.glob("/var/tmp/ledgermind-stack-*")))
    return [d / "run" for d in dirs]


def admin_psql(statement: str) -> bool:
    """Runs SQL as the stack's superuser over its Unix socket; False when that is out of reach."""
    port = str(urlsplit(reachable_server_url()).port or 5432)
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"))
    for run_dir in _stack_run_dirs():
        if not bins or not (run_dir / f".s.PGSQL.{port}").exists():
            continue
        argv = [bins[-1], "-X", "-qAt", "-v", "ON_ERROR_STOP=1", "-h", str(run_dir), "-p", port, "-U", "postgres",
                "-d", "postgres", "-c", statement]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        if subprocess.run(argv, capture_output=True, text=True, check=False).returncode == 0:
            return True
    return False


@pytest.fixture
def reader_url(db) -> Iterator[str]:
    """``db`` as a role that may read data_directory (pg_read_all_settings) and the stack role's tables."""
    owner = urlsplit(db).username
    if not admin_psql(f"DROP ROLE IF EXISTS {READER}; CREATE ROLE {READER} LOGIN PASSWORD '{READER_PASSWORD}' "
                      f"IN ROLE {owner}, pg_read_all_settings"):
        pytest.skip("no superuser access to the stack to make a role of pg_read_all_settings")
    try:
        yield with_db(db, SPACE_DB, user=READER, password=READER_PASSWORD)
    finally:
        admin_psql(f"DROP ROLE IF EXISTS {READER}")


def test_rewrite_room_is_measured_and_refused_with_the_numbers(reader_url):
    data_directory = scalar(reader_url, "SELECT current_setting('data_directory')")
    if not os.path.isdir(data_directory):
        pytest.skip(f"the server's data directory {data_directory} is not on this host")
    enough = run_module("pg_rewrite_space", rewrite_args(reader_url))
    assert not enough.get("failed"), enough.get("msg")
    assert (enough["checked"], enough["enough"]) == (True, True)
    assert enough["free_space_source"] == f"free on the file system of {data_directory}"
    assert enough["needed_bytes"] == -(-enough["table_bytes"] * 3 // 2)

    refused = run_module("pg_rewrite_space", rewrite_args(reader_url, free_space_margin=HUGE), check=True)
    assert refused.get("failed") and (refused["checked"], refused["enough"]) == (True, False)
    assert refused["msg"].startswith("Not enough free space for the in-place rewrite of public.ml_features: ALTER "
                                     "TABLE ... TYPE writes a new copy of the table and its indexes "
                                     "(pg_total_relation_size ")
    assert f"MiB free on the file system of {data_directory}. Free " in refused["msg"]
    assert refused["msg"].endswith("Nothing was changed.")
    assert READER_PASSWORD not in json.dumps(refused)


# ------------------------------------------------------------------------------ db_migration's in_place.yml


def in_place_task(url: str, **variables) -> dict:
    return {"name": "Migrate in place", "ansible.builtin.include_role": {
        "name": "ledgermind.migrations.db_migration", "tasks_from": "in_place"},
        "vars": {"db_migration_connection": url, "db_migration_project_dir": str(REPO / "examples" / "backend"),
                 "db_migration_venv": str(REPO / ".venv"), **variables}}


def revision(url: str) -> str:
    return scalar(url, "SELECT version_num FROM alembic_version")


def test_in_place_warns_when_the_room_is_unknown_and_goes_on(demo_db, tmp_path):
    run = run_play(tmp_path, [in_place_task(demo_db, db_migration_free_space_margin=HUGE)], ["--check"])
    assert run.returncode == 0, run.stdout + run.stderr
    out = " ".join((run.stdout + run.stderr).split())
    assert ("The free space for the in-place rewrite of public.ml_features could not be checked: the role may not "
            "read data_directory (pg_read_all_settings).") in out
    assert "Free space for the in-place rewrite of public.ml_features: could not be checked" in out
    assert "Move the schema under the lock budget" in out and "Refuse the in-place rewrite" in out
    assert revision(demo_db) == "20251109_add_user_name_picture"


def test_in_place_refuses_before_alembic_without_room(demo_db, tmp_path):
    owner = urlsplit(demo_db).username
    if not admin_psql(f"DROP ROLE IF EXISTS {READER}; CREATE ROLE {READER} LOGIN PASSWORD '{READER_PASSWORD}' "
                      f"IN ROLE {owner}, pg_read_all_settings"):
        pytest.skip("no superuser access to the stack to make a role of pg_read_all_settings")
    try:
        url = with_db(demo_db, DEMO_DB, user=READER, password=READER_PASSWORD)
        if not os.path.isdir(scalar(url, "SELECT current_setting('data_directory')")):
            pytest.skip("the server's data directory is not on this host")
        before = table_state(demo_db)
        run = run_play(tmp_path, [in_place_task(url, db_migration_free_space_margin=HUGE)])
    finally:
        admin_psql(f"DROP ROLE IF EXISTS {READER}")
    out = " ".join((run.stdout + run.stderr).split())
    assert run.returncode != 0
    assert "Not enough free space for the in-place rewrite of public.ml_features" in out
    assert ("convert online instead (-e ledgermind_conversion=online, which does not rewrite the table), or lower "
            "db_migration_free_space_margin (1000000000.0)") in out
    assert "Move the schema under the lock budget" not in out  # Alembic never started
    assert revision(demo_db) == "20251109_add_user_name_picture" and table_state(demo_db) == before
