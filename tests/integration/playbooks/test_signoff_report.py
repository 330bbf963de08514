"""The sign-off as an operator reads it, from real migrate_tokens.yml runs (fixtures in conftest.py).

The report must say what happened: a dry run says what would run and never PASSED, a failed backup is a
failure, and a report directory that cannot be written still leaves the summary on the screen.
"""
from __future__ import annotations

REVISION_BEFORE = "20251109_add_user_name_picture"
REVISION_AFTER = "502d44cd70ab"


def statuses(report) -> dict[str, str]:
    return {i["item"]: i["status"] for i in report["items"]}


def test_an_unwritable_report_directory_still_prints_the_summary(pgdb, playbook, tmp_path):
    # A file where the report directory's parent should be: mkdir fails, for root too.
    blocker = tmp_path / "in-the-way"
    blocker.write_text("not a directory\n")
    report_dir = blocker / "reports"

    run = playbook.run("migrate_tokens.yml", "-e", f"ledgermind_report_dir={report_dir}")

    # The migration itself went through; only the report could not be written.
    assert pgdb.state()["type"] == "jsonb" and pgdb.revision() == REVISION_AFTER
    assert len(run.new_backups) == 1
    summary = run.result("Show the sign-off summary")["msg"]
    assert summary[0] == "MIGRATE PASSED on localhost", summary
    assert summary[1].startswith(f"Report NOT written: cannot write 2 of 2 report files into {report_dir}: "), summary
    assert "Not a directory" in summary[1], summary
    assert "PASS  Migration applied successfully" in summary and "PASS  Backup created and verified" in summary
    written = run.result("Write the report files")
    assert written["written"] == [] and len(written["errors"]) == 2, written
    # ...and the run fails at the end, saying so.
    assert run.rc != 0, run.describe()
    assert "The sign-off report was not written: cannot write 2 of 2 report files" in run.failure_msg, run.failure_msg
    assert not report_dir.exists()


def test_check_mode_says_what_would_run(pgdb, playbook):
    original = pgdb.state()
    run = playbook.run(check=True)
    assert run.rc == 0, run.describe()
    assert pgdb.state() == original
    report = run.report
    assert report["verdict"] == "CHECK MODE", report["verdict"]
    items = statuses(report)
    assert items["Pre-flight checks completed (schema, row counts, samples)"] == "pass"
    assert items["Backup created and verified"] == "would run", report["items"]
    assert items["Migration applied successfully"] == "would run", report["items"]
    assert items["Post-migration validation passed (type, integrity, index)"] == "would run", report["items"]
    assert items["No performance degradation observed"] == "would run", report["items"]
    evidence = {i["item"]: i["evidence"] for i in report["items"]}
    assert evidence["Migration applied successfully"].startswith(
        f"check mode: would upgrade {REVISION_BEFORE} -> {REVISION_AFTER}"), evidence
    assert "None bytes" not in evidence["Backup created and verified"], evidence
    summary = run.result("Show the sign-off summary")["msg"]
    assert summary[0] == "MIGRATE CHECK MODE on localhost (check mode: nothing changed)", summary
    markdown = run.report_path.with_suffix(".md").read_text()
    assert "# ml_features.tokens migrate: CHECK MODE" in markdown and "| WOULD RUN |" in markdown


def test_a_failed_backup_is_a_failure_with_its_message(pgdb, playbook, tmp_path):
    original = pgdb.state()
    # A file where the backup directory should be: pg_backup_archive cannot write the archive.
    in_the_way = tmp_path / "backups-file"
    in_the_way.write_text("not a directory\n")

    run = playbook.run("migrate_tokens.yml", "-e", f"ledgermind_backup_dir={in_the_way}")
    assert run.rc != 0, run.describe()
    assert pgdb.state() == original
    report = run.report
    assert report["verdict"] == "FAILED"
    backup = next(i for i in report["items"] if i["item"] == "Backup created and verified")
    assert backup["status"] == "fail", report["items"]
    assert str(in_the_way) in backup["evidence"], backup
    assert statuses(report)["Migration applied successfully"] == "skipped"
