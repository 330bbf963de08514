"""Issue 11 section 4: the runbook tails the server log during the migration. What the server logged in the run's
window reaches the sign-off (summary, JSON and Markdown), and never changes the verdict. Fixtures in conftest.py."""
from __future__ import annotations

import threading

import psycopg2
from livewrites import assert_ok, wait_for


def test_an_error_logged_during_the_run_is_in_the_sign_off(pgdb, playbook):
    def application_error() -> None:
        # Once the run has started (its record exists), the application hits an error the server logs.
        def running() -> bool:
            if not pgdb.scalar("SELECT to_regclass('ledgermind_migrations.run_history') IS NOT NULL"):
                return False
            return bool(pgdb.scalar("SELECT count(*) FROM ledgermind_migrations.run_history WHERE status = 'running'"))
        wait_for("the run record", running, timeout=240)
        conn = psycopg2.connect(pgdb.url, application_name="lm_test_pb_app")
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 / 0 AS lm_server_log_probe")
        except psycopg2.errors.DivisionByZero:
            pass
        finally:
            conn.close()

    thread = threading.Thread(target=application_error, daemon=True)
    thread.start()
    run = playbook.run("migrate_tokens.yml")
    thread.join(timeout=60)
    assert_ok(run)
    log = run.report["server_log"]
    assert log["source"] in ("file", "sql"), log
    found = [e for e in log["entries"] if "division by zero" in e["message"]]
    assert found and found[0]["level"] == "ERROR", log["entries"]
    assert "lm_server_log_probe" in (found[0].get("statement") or ""), found[0]
    assert log["counts"]["ERROR"] >= 1
    markdown = run.report_path.with_suffix(".md").read_text()
    assert "## Server log during the run" in markdown and "division by zero" in markdown
    assert f"{log['counts']['ERROR']} ERROR" in run.stdout.replace("\\n", " ")
