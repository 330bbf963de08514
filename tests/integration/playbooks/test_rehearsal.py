"""Issue 11, section 1: the rehearsal ("Rollback plan tested"), on real PostgreSQL through real ansible-playbook runs.

``rehearse.yml`` (next to this file) runs what the role needs from ``playbooks/migrate_tokens.yml`` - the run
record, the write log (so the archive holds its trigger), this run's verified backup - then the
``migration_rehearsal`` role. Each test checks the role's report, that no scratch database is left on the server,
and that the real table is exactly as before (type, revision, index, content). Then the refusals of
``pg_backup_restore restore_into=scratch`` that keep a scratch restore away from real tables.
Fixtures (pgdb, playbook, ...) are in conftest.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

REPO = Path(__file__).resolve().parents[3]
VENV = Path(sys.executable).parent.parent
REHEARSE = "../tests/integration/playbooks/rehearse.yml"
# rehearse.yml lives outside playbooks/, where the local inventory looks for the backend by default.
BACKEND = ["-e", f"ledgermind_backend_dir={REPO / 'examples' / 'backend'}", "-e", f"ledgermind_backend_venv={VENV}"]
# The local inventory skips the rehearsal unless LEDGERMIND_REHEARSAL=1; these tests are about it.
REHEARSAL_ON = ["-e", "ledgermind_rehearsal=true"]
STEPS = ["restore", "migrate", "validate", "rollback", "verify_rollback", "remigrate", "drop"]
SUFFIX = "_lm_rehearsal_"


# --------------------------------------------------------------------------------------------- helpers


def rehearse(playbook, *extra: str, **options):
    return playbook.run(REHEARSE, *BACKEND, *REHEARSAL_ON, *extra, **options)


def report_of(run) -> dict[str, Any]:
    """migration_rehearsal_report, as rehearse.yml writes it into the report directory."""
    assert run.report is not None and run.report_path.name.startswith("rehearsal_"), run.describe()
    return run.report


def flat(text: str) -> str:
    """Output with its line breaks and indentation folded, for phrases the callback may wrap."""
    return " ".join(text.split())


def scratch_databases(db) -> list[str]:
    """Rehearsal databases of this test's database left on the server."""
    rows = db.query("SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (db.name + SUFFIX,))
    return [r[0] for r in rows]


def assert_untouched(db, before: dict[str, Any]) -> None:
    after = db.state()
    assert after == before, (after, before)
    assert after["type"] == "text[]" and after["index"] is None
    assert not scratch_databases(db)
    # Nothing of an online conversion either (a shadow column would show among the columns).
    columns = [r[0] for r in db.query("SELECT attname FROM pg_attribute WHERE attrelid = 'public.ml_features'::regclass"
                                      " AND attnum > 0 AND NOT attisdropped ORDER BY attnum")]
    assert not [c for c in columns if c.startswith("tokens_")], columns


def assert_passed(run, report: dict[str, Any], mode: str) -> None:
    assert run.rc == 0, run.describe()
    assert report["ok"] is True and report["skipped"] is False, report
    assert [s["name"] for s in report["steps"]] == STEPS, report["steps"]
    assert all(s["passed"] for s in report["steps"]), report["steps"]
    assert report["mode"] == mode, report
    assert report["created"] is True and report["dropped"] is True, report
    assert report["restore_proven"] is True, report
    assert report["scratch_database"].startswith(report["scratch_database"].split(SUFFIX)[0] + SUFFIX)
    assert len(report["scratch_database"].encode()) <= 63
    assert report["rows"] == 2000, report
    for key in ("expected_migration_seconds", "expected_lock_seconds", "rollback_seconds"):
        assert isinstance(report[key], (int, float)) and report[key] > 0, (key, report[key])
    assert report["expected_lock_seconds"] <= report["expected_migration_seconds"] + 0.01, report
    assert report["suggested_statement_timeout_seconds"] >= 60, report
    assert report["suggested_statement_timeout_ms"] == report["suggested_statement_timeout_seconds"] * 1000
    for step in report["steps"]:
        assert isinstance(step["seconds"], (int, float)) and step["seconds"] >= 0, step
        assert step["evidence"], step
    # The write log's trigger was in the archive and left out of the copy; the copy's content is the archive's.
    restore = report["steps"][0]["evidence"]
    assert "left out: TRIGGER public ml_features ledgermind_write_log" in restore, restore
    assert "== the archive's" in restore, restore
    for name in ("validate", "verify_rollback", "remigrate"):
        evidence = next(s["evidence"] for s in report["steps"] if s["name"] == name)
        assert f"== {report['archive_fingerprint']}" in evidence, (name, evidence)
    assert report["summary"].startswith(f"Rehearsal passed on a copy of public.ml_features (2000 rows, {mode})"), report
    if run.data is not None:
        printed = run.result("Say what the rehearsal measured")["msg"][0]
        assert printed.startswith("Rehearsal: migration took "), printed
    else:
        printed = flat(run.text)
    took = round(report["expected_migration_seconds"], 1)
    assert f"Rehearsal: migration took {took} s (lock held" in printed, printed
    assert "expected for this table (2000 rows, " + mode + ")" in printed, printed
    assert f"suggested statement_timeout for the real run: {report['suggested_statement_timeout_seconds']} s" in printed


# --------------------------------------------------------------------------------------------- the role


def test_rehearsal_passes_in_place_and_leaves_the_real_table_as_it_was(pgdb, playbook):
    """At -vvv, where every module's arguments show (no_log's censoring aside): the password never appears."""
    before = pgdb.state()
    password = urlsplit(pgdb.url).password
    run = rehearse(playbook, json_output=False, verbosity=3)
    report = report_of(run)
    assert_passed(run, report, "in_place")
    if password and password not in (urlsplit(pgdb.url).username or "") and password not in pgdb.name:
        assert password not in run.text and quote(password) not in run.text
    # The scratch database was made and dropped by pg_scratch_database, over the connection, with no client program.
    assert "AnsiballZ_pg_scratch_database.py" in run.text
    assert not pgdb.scalar("SELECT count(*) FROM pg_database WHERE datname = %s", (report["scratch_database"],))
    assert "successful try" in report["lock_basis"], report
    assert_untouched(pgdb, before)
    # The run's backup is the one restored, and the run record closes normally.
    assert [str(p) for p in run.new_backups] == [report["archive"]]
    assert pgdb.scalar("SELECT status FROM ledgermind_migrations.run_history ORDER BY id DESC LIMIT 1") == "passed"


def test_rehearsal_passes_online_as_the_real_run_would_convert(pgdb, playbook):
    before = pgdb.state()
    run = rehearse(playbook, "-e", "ledgermind_conversion=online", "-e", "ledgermind_online_batch_size=500")
    report = report_of(run)
    assert_passed(run, report, "online")
    assert "swap" in report["lock_basis"], report
    migrate = next(s["evidence"] for s in report["steps"] if s["name"] == "migrate")
    assert "online to jsonb" in migrate, migrate
    assert_untouched(pgdb, before)


def test_rehearsal_that_fails_refuses_with_what_failed_and_drops_its_copy(pgdb, playbook):
    # A two-dimensional array: to_jsonb nests it, so the migrated copy holds arrays that are not flat arrays of
    # strings and the application's downgrade refuses to convert it back. (The real run's pre-flight refuses this
    # value too; the rehearsal is run here without it.)
    key = pgdb.scalar("SELECT min(txn_id) FROM ml_features")
    pgdb.execute("UPDATE ml_features SET tokens = '{{a,b},{c,d}}' WHERE txn_id = %s", (key,))
    before = pgdb.state()
    run = rehearse(playbook)
    assert run.rc != 0, run.describe()
    report = report_of(run)
    assert report["ok"] is False, report
    steps = {s["name"]: s for s in report["steps"]}
    assert list(steps) == ["restore", "migrate", "validate", "rollback", "drop"], report["steps"]
    assert steps["restore"]["passed"] and steps["migrate"]["passed"], report["steps"]
    assert report["failed_steps"] == ["validate", "rollback"], report
    assert "element_type_violations=2" in steps["validate"]["evidence"], steps["validate"]
    assert f'"element_type_violations": [{key}]' in steps["validate"]["evidence"], steps["validate"]
    assert "cannot become text[] without loss" in steps["rollback"]["evidence"], steps["rollback"]
    assert steps["drop"]["passed"] and report["dropped"] is True, report
    assert "not reached: verify_rollback, remigrate" in report["failure"], report
    message = run.failure_msg
    assert message.startswith("Rehearsal FAILED (in_place): validate: "), message
    assert "rollback: FAILED at " in message, message
    assert f"The real table public.ml_features of database {pgdb.name} is untouched" in message, message
    assert f"The scratch database {report['scratch_database']} was dropped" in message, message
    assert "-e ledgermind_rehearsal=false" in message, message
    assert_untouched(pgdb, before)


def test_rehearsal_without_createdb_refuses_before_anything_changes(pgdb, playbook, secret_role):
    """As a login role without CREATEDB (a member of the table owner's role, at -vvv) the rehearsal refuses, saying
    what to grant, and neither its password nor the scratch database shows up anywhere."""
    if secret_role is None:
        pytest.skip("no superuser access to make a role without CREATEDB")
    user, password = secret_role
    parts = urlsplit(pgdb.url)
    url = urlunsplit(parts._replace(netloc=f"{user}:{quote(password)}@{parts.netloc.rpartition('@')[2]}"))
    before = pgdb.state()
    run = rehearse(playbook, url=url, json_output=False, verbosity=3)
    assert run.rc != 0, run.describe()
    text = flat(run.text)
    assert f"role {user} may not create databases there (no CREATEDB)" in text, run.describe()
    assert f'ALTER ROLE "{user}" CREATEDB' in text and "-e ledgermind_rehearsal=false" in text, run.describe()
    assert "Rehearsal refused, nothing was changed" in text, run.describe()
    assert password not in run.text and quote(password) not in run.text
    report = report_of(run)
    assert report["ok"] is False and report["steps"] == [] and report["created"] is False, report
    assert "no CREATEDB" in report["failure"], report
    assert_untouched(pgdb, before)


def test_rehearsal_refuses_a_copy_the_servers_disk_would_not_hold(pgdb, playbook):
    """Judged before anything changes, so a dry run shows it too; room that cannot be read is never refused on."""
    before = pgdb.state()
    run = rehearse(playbook, "-e", "migration_rehearsal_free_space_margin=1000000000", check=True)
    report = report_of(run)
    space = report["space"]
    assert space["needed_bytes"] > 0 and space["margin"] == 1000000000, report
    if space["free_bytes"] is None:
        # The stack's role may not read data_directory (pg_read_all_settings): said, not refused.
        assert run.rc == 0 and space["enough"] is None and space["source"], run.describe()
    else:
        assert run.rc != 0 and space["enough"] is False, run.describe()
        message = flat(run.failure_msg)
        wanted = "The rehearsal's scratch copy of public.ml_features and its in_place conversion need about"
        assert wanted in message and "-e ledgermind_rehearsal=false" in message, message
        assert report["ok"] is False and report["created"] is False, report
    assert_untouched(pgdb, before)


def test_rehearsal_in_check_mode_says_what_it_would_do_and_creates_nothing(pgdb, playbook):
    before = pgdb.state()
    run = rehearse(playbook, check=True)
    assert run.rc == 0, run.describe()
    report = report_of(run)
    assert report["check_mode"] is True and report["steps"] == [] and report["mode"] == "in_place", report
    assert report["space"]["needed_bytes"] > 0, report
    assert report["summary"].startswith(f"check mode: would create the scratch database {report['scratch_database']}")
    assert "nothing was created" in report["summary"], report
    assert_untouched(pgdb, before)


def test_rehearsal_switched_off_is_reported_as_skipped(pgdb, playbook):
    before = pgdb.state()
    run = rehearse(playbook, "-e", "ledgermind_rehearsal=false")
    assert run.rc == 0, run.describe()
    report = report_of(run)
    assert report["skipped"] is True and report["ok"] is False and report["steps"] == [], report
    assert "ledgermind_rehearsal=false" in report["summary"], report
    assert_untouched(pgdb, before)


# --------------------------------------------------------------------------------------------- pg_backup_restore


def run_module(module: str, args: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
           "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_NOCOLOR": "1"}
    argv = [str(Path(sys.executable).parent / "ansible"), "localhost", "-i", "inventories/local", "-m",
            "ledgermind.migrations." + module, "-a", json.dumps(args)]
    out = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    try:
        return json.loads(out.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError):
        raise AssertionError(f"no JSON result from ansible:\n{out.stdout}\n{out.stderr}") from None


def test_scratch_restore_never_goes_into_the_archived_database_or_over_a_table(pgdb, pgdb_other, tmp_path):
    archived = run_module("pg_backup_archive", {"database_url": pgdb.url, "dest_dir": str(tmp_path),
                                                "table": "ml_features", "column": "tokens"})
    assert not archived.get("failed"), archived
    before, other_before = pgdb.state(), pgdb_other.state()

    itself = run_module("pg_backup_restore", {"database_url": pgdb.url, "src": archived["path"],
                                              "restore_into": "scratch"})
    assert itself.get("failed") and "that is the archived database itself" in itself["msg"], itself
    assert "restore_into=same_database" in itself["msg"] and "nothing was changed" in itself["msg"], itself

    over = run_module("pg_backup_restore", {"database_url": pgdb_other.url, "src": archived["path"],
                                            "restore_into": "scratch"})
    assert over.get("failed") and "the table already exists there" in over["msg"], over

    # Without restore_into=scratch another database's archive is refused as before.
    other = run_module("pg_backup_restore", {"database_url": pgdb_other.url, "src": archived["path"]})
    assert other.get("failed") and "the archive is of database " + pgdb.name in other["msg"], other
    assert pgdb.state() == before and pgdb_other.state() == other_before


# --------------------------------------------------------------------------------------------- restore helpers


def restore_helpers():
    sys.path.insert(0, str(REPO / ".build" / "collections"))
    from ansible_collections.ledgermind.migrations.plugins.module_utils import _pg_clients
    from ansible_collections.ledgermind.migrations.plugins.modules import pg_backup_restore

    return _pg_clients, pg_backup_restore


def test_scratch_restore_leaves_out_the_named_triggers_and_what_depends_on_them():
    pc, _module = restore_helpers()
    listing = "\n".join([
        "10; 1259 16390 TABLE public ml_features ledgermind",
        "11; 0 0 TABLE DATA public ml_features ledgermind",
        ";\tdepends on: 10",
        "12; 2606 16400 CONSTRAINT public ml_features ml_features_pkey ledgermind",
        ";\tdepends on: 10",
        "13; 2620 16410 TRIGGER public ml_features ledgermind_write_log ledgermind",
        ";\tdepends on: 10",
        "14; 0 0 COMMENT public TRIGGER ledgermind_write_log ledgermind",
        ";\tdepends on: 13",
        "15; 2620 16411 TRIGGER public ml_features audit ledgermind",
        ";\tdepends on: 10",
    ])
    entries = pc.table_entries(pc.parse_toc(listing), "public", "ml_features")
    kept, left_out = pc.without_triggers(entries, "ml_features", ["ledgermind_write_log"])
    assert [e.dump_id for e in kept] == [10, 11, 12, 15]
    assert [e.label for e in left_out] == ["TRIGGER public ml_features ledgermind_write_log",
                                           "COMMENT public TRIGGER ledgermind_write_log"]
    assert pc.without_triggers(entries, "ml_features", []) == (entries, [])


def test_scratch_refusal_and_command_line():
    _pc, module = restore_helpers()
    recorded = {"system_identifier": "7", "database": "ledger", "database_oid": 16384, "database_uuid": None,
                "schema": "public", "table": "ml_features", "table_oid": 16390}
    scratch = dict(recorded, database="ledger_lm_rehearsal_0123abcd", database_oid=20000, table_oid=None)
    assert module.scratch_refusal("/b/a.dump", recorded, scratch) is None
    assert "archived database itself" in module.scratch_refusal("/b/a.dump", recorded, dict(recorded, table_oid=None))
    assert "already exists there" in module.scratch_refusal("/b/a.dump", recorded, dict(scratch, table_oid=1))
    assert "a scratch copy keeps the archived table's name" in module.scratch_refusal(
        "/b/a.dump", recorded, dict(scratch, table="other"))
    argv = module.restore_argv("pg_restore", "/t/list", "/b/a.dump", "app", scratch=True)
    assert "--no-owner" in argv and "--no-privileges" in argv
    assert "--no-owner" not in module.restore_argv("pg_restore", "/t/list", "/b/a.dump", "app")
