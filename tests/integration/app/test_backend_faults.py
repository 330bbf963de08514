"""The backend half under faults (issue 14), on the real engine: put back exactly what ran before, check before
putting back, count a crash as a failure, say what is wrong with an LLM health script, and the smaller items."""
from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from appsupport import BACKEND_PORT, LLM_PORT, PROJECT, REPO, facts, failure, free_port, needs_docker

DEPLOY = """
- name: Deploy
  ansible.builtin.include_role:
    name: ledgermind.migrations.compose_redeploy
"""
RESTORE = """
- name: Restore
  ansible.builtin.include_role:
    name: ledgermind.migrations.compose_redeploy
    tasks_from: restore
"""
SMOKE = """
- name: Smoke
  ansible.builtin.include_role:
    name: ledgermind.migrations.smoke_tests
"""


def container(project: str = PROJECT) -> dict:
    ids = subprocess.run(["docker", "ps", "--all", "--quiet", "--filter", f"label=com.docker.compose.project={project}",
                          "--filter", "label=com.docker.compose.service=backend"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert len(ids) == 1, ids
    return json.loads(subprocess.run(["docker", "inspect", ids[0]], capture_output=True, text=True,
                                     check=True).stdout)[0]


def keepers(project: str = PROJECT) -> list[str]:
    return subprocess.run(["docker", "ps", "--all", "--quiet", "--no-trunc",
                           "--filter", f"label=org.ledgermind.keeper.project={project}"],
                          capture_output=True, text=True, check=True).stdout.split()


def ready(port: int = BACKEND_PORT, tries: int = 20) -> tuple[int, dict]:
    status, body = -1, {}
    for _ in range(tries):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            status, body = exc.code, json.loads(exc.read() or b"null")
        except OSError:
            pass
        time.sleep(0.5)
    return status, body


def image_id(ref: str) -> str:
    return subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", ref], capture_output=True, text=True,
                          check=True).stdout.strip()


def with_env(settings: dict, **env: str) -> dict:
    return {**settings, "compose_redeploy_env": {**settings["compose_redeploy_env"], **env}}


@needs_docker
def test_put_back_restores_exactly_what_ran_not_the_failed_deploys_settings(run_playbook, compose_project, db_url):
    """Issue 14 §2: a deploy with a broken DATABASE_URL fails; the put-back brings back the previous container with
    its own environment, command and labels (not the broken ones), and no secret reaches a file or the output."""
    password = db_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    rc, doc = run_playbook(DEPLOY, compose_project)
    assert rc == 0, failure(doc)
    before = container()
    assert ready()[0] == 200

    broken = {**with_env(compose_project, DATABASE_URL=db_url.rsplit("@", 1)[0] + "@127.0.0.1:1/none",
                         LEDGERMIND_GIT_REVISION="broken-deploy"), "compose_redeploy_ready_timeout": 3}
    rc, doc = run_playbook(DEPLOY, broken)
    assert rc != 0
    report = facts(doc)["compose_redeploy_report"]
    # Issue 14 §4: a deploy that ran and failed reports ok false with its whole message, for the sign-off.
    assert report["ok"] is False and report["evidence"].startswith("Deploy of backend failed"), report
    assert "ready: NO" in report["evidence"] and "Now the backend container runs" in report["evidence"], report
    assert report["evidence"].strip() in failure(doc), (report, failure(doc))
    assert container()["Id"] != before["Id"]
    recorded = facts(doc)["compose_redeploy_before"]
    assert recorded["env"]["DATABASE_URL"] == "(secret)" and "DATABASE_URL" in recorded["secret_env"], recorded
    assert recorded["keeper"]["id"] in keepers(), (recorded, keepers())

    # The automatic put-back (tasks/rescue_run.yml) passes compose_redeploy_before, with the failed run's settings.
    rc, doc = run_playbook(RESTORE, {**broken, "compose_redeploy_restore": recorded})
    assert rc == 0, failure(doc)
    after = container()
    assert after["Image"] == before["Image"]
    assert sorted(after["Config"]["Env"]) == sorted(before["Config"]["Env"])
    assert after["Config"]["Cmd"] == before["Config"]["Cmd"]
    assert after["Config"]["Labels"] == before["Config"]["Labels"]
    assert after["HostConfig"]["NetworkMode"] == "host"
    assert after["HostConfig"]["RestartPolicy"] == before["HostConfig"]["RestartPolicy"]
    assert after["Name"] == before["Name"]
    status, body = ready()
    assert status == 200 and body["db_ok"], body
    assert "exactly as it ran before" in facts(doc)["compose_redeploy_restore_report"]["evidence"]
    # The same put-back again changes nothing.
    rc, doc2 = run_playbook(RESTORE, {**broken, "compose_redeploy_restore": recorded})
    assert rc == 0 and container()["Id"] == after["Id"], failure(doc2)

    # Secrets never reach the state file or the run's output.
    state = Path(compose_project["compose_redeploy_state_file"]).read_text()
    assert "DATABASE_URL" in state and password not in state
    assert password not in json.dumps(doc)


@needs_docker
def test_rollback_refuses_when_the_previous_image_is_gone_then_rebuilds_as_configured(run_playbook, compose_project):
    """Issue 14 §1: the image to put back is gone: the put-back refuses before changing anything, says why and the
    way out; with a rebuild configured it rebuilds and brings it up. Tags are per project."""
    tag = f"lm-itest-gone-{os.getpid()}"
    first = with_env(compose_project, LEDGERMIND_BACKEND_IMAGE=f"{tag}:prev",
                     LEDGERMIND_GIT_REVISION=f"prev-{os.getpid()}")
    second = with_env(compose_project, LEDGERMIND_BACKEND_IMAGE=f"{tag}:new",
                      LEDGERMIND_GIT_REVISION=f"new-{os.getpid()}")
    try:
        rc, doc = run_playbook(DEPLOY, first)
        assert rc == 0, failure(doc)
        previous = image_id(f"{tag}:prev")
        rc, doc = run_playbook(DEPLOY, second)
        assert rc == 0, failure(doc)
        state = json.loads(Path(compose_project["compose_redeploy_state_file"]).read_text())
        assert state["previous"]["image_id"] == previous and state["previous"]["keeper"]["id"]
        # The keeper holds the image: removing its tag does not remove it ...
        subprocess.run(["docker", "rmi", f"{tag}:prev"], capture_output=True, check=False)
        assert subprocess.run(["docker", "image", "inspect", previous], capture_output=True).returncode == 0
        # ... but an operator removing the keeper and the image does.
        subprocess.run(["docker", "rm", "--force", *keepers()], capture_output=True, check=True)
        subprocess.run(["docker", "rmi", "--force", previous], capture_output=True, check=True)
        running = container()["Id"]

        rc, doc = run_playbook(RESTORE, second)
        assert rc != 0
        said = failure(doc)
        assert "Refusing to put back the previous backend" in said and "is gone" in said, said
        assert "Way out" in said and "compose_redeploy_rebuild_env" in said, said
        assert "rollback_tokens.yml" in said, said
        assert "non-zero return code" not in said
        assert container()["Id"] == running and container()["State"]["Running"], "the refusal changed what runs"
        report = facts(doc)["compose_redeploy_restore_report"]
        assert report["ok"] is False and report["refused"] is True

        rebuild = {**second, "compose_redeploy_rebuild_env": {"LEDGERMIND_BACKEND_IMAGE": f"{tag}:rebuilt",
                                                               "LEDGERMIND_GIT_REVISION": f"prev-{os.getpid()}"}}
        rc, doc = run_playbook(RESTORE, rebuild)
        assert rc == 0, failure(doc)
        assert container()["Image"] == image_id(f"{tag}:rebuilt")
        assert container()["Config"]["Labels"]["org.opencontainers.image.revision"] == f"prev-{os.getpid()}"
        assert facts(doc)["compose_redeploy_restore_report"]["mode"] == "rebuild"
        # The tag compose ran it under is this project's own, never a global one another project could move.
        assert image_id(f"ledgermind-backend:rollback-{PROJECT}-backend") == image_id(f"{tag}:rebuilt")
        assert ready()[0] == 200
    finally:
        subprocess.run(["docker", "compose", "--project-name", PROJECT, "--file",
                        str(REPO / "examples" / "backend" / "docker-compose.prod.yml"), "down"],
                       env={**os.environ, "DATABASE_URL": "unused"}, capture_output=True, check=False)
        for ref in (f"{tag}:prev", f"{tag}:new", f"{tag}:rebuilt", f"ledgermind-backend:rollback-{PROJECT}-backend"):
            subprocess.run(["docker", "rmi", "--force", ref], capture_output=True, check=False)


@needs_docker
def test_a_crash_hidden_by_the_restart_policy_and_a_retry_fails_the_smoke_tests(run_playbook, compose_project):
    """Issue 14 §3: the backend dies on its first chat request, Docker restarts it, the retry passes: the evidence
    names the failed try and the smoke tests fail because the container restarted after it became ready."""
    crashing = with_env(compose_project, LEDGERMIND_FAULT="crash-once")
    rc, doc = run_playbook(DEPLOY + SMOKE, {**crashing, "smoke_tests_base_url": f"http://127.0.0.1:{BACKEND_PORT}",
                                            "smoke_tests_retries": 6, "smoke_tests_delay": 0.5})
    assert rc != 0
    report = facts(doc)["smoke_tests_report"]
    assert report["ok"] is False, report
    assert "chat (stub mode) | pass" in report["evidence"] and "failed tries: try 1 of" in report["evidence"], report
    assert "container stayed up | FAIL | restarted after it became ready" in report["evidence"], report
    assert "RestartCount 0 -> 1" in report["evidence"], report
    assert "Smoke tests failed: container stayed up" in failure(doc), failure(doc)


def test_a_missing_or_non_executable_llm_health_script_says_so(run_playbook, tmp_path):
    """Issue 14 §4: not `exit 2:` with no reason."""
    script = tmp_path / "llm-health.sh"
    script.write_text("#!/bin/sh\necho 'LLM: healthy'\n")
    script.chmod(0o644)
    common = {"smoke_tests_base_url": f"http://127.0.0.1:{free_port()}", "smoke_tests_retries": 1,
              "smoke_tests_delay": 0.1, "smoke_tests_container": {}}
    rc, doc = run_playbook(SMOKE, {**common, "smoke_tests_llm_health_script": str(tmp_path / "missing.sh")})
    assert rc != 0
    assert f"LLM health script: the script {tmp_path / 'missing.sh'} is missing" in failure(doc), failure(doc)
    rc, doc = run_playbook(SMOKE, {**common, "smoke_tests_llm_health_script": str(script)})
    assert rc != 0
    assert f"LLM health script: the script {script} is not executable (mode 0644)" in failure(doc), failure(doc)


@needs_docker
def test_backend_image_previous_honours_the_inventory_port_variables(db_url):
    """Issue 14 §4: LEDGERMIND_BACKEND_PORT/LEDGERMIND_LLM_PORT (what the inventory reads) place a second project."""
    project, backend, llm = f"lm_itest_ports_{os.getpid()}", free_port(), free_port()
    env = {**os.environ, "DATABASE_URL": db_url, "LEDGERMIND_BACKEND_PORT": str(backend),
           "LEDGERMIND_LLM_PORT": str(llm)}
    env.pop("BACKEND_PORT", None)
    env.pop("LLM_PORT", None)
    try:
        out = subprocess.run([str(REPO / "scripts" / "backend_image"), "previous", project], env=env,
                             capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stdout + out.stderr
        status, body = ready(backend, tries=40)
        assert status == 200 and body["model"] == "text-array" and body["llm_ok"], body
        assert ready(BACKEND_PORT, tries=1)[0] != 200 or backend == BACKEND_PORT
        with urllib.request.urlopen(f"http://127.0.0.1:{llm}/health", timeout=5) as response:
            assert response.status == 200
    finally:
        subprocess.run(["docker", "compose", "--project-name", project, "--file",
                        str(REPO / "examples" / "backend" / "docker-compose.prod.yml"), "down"],
                       env={**os.environ, "DATABASE_URL": "unused"}, capture_output=True, check=False)


def test_ansible_lint_finds_no_bool_coercion_in_the_backend_roles():
    """Issue 14 §4: `bool filter coerced invalid value` becomes an error in ansible-core 2.23."""
    out = subprocess.run([str(REPO / ".venv" / "bin" / "ansible-lint"), "--offline", "roles/compose_redeploy",
                          "roles/smoke_tests"], cwd=REPO, capture_output=True, text=True, check=False)
    assert "coerced invalid value" not in out.stdout + out.stderr, (out.stdout + out.stderr)[-3000:]
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]



@needs_docker
def test_rollback_tokens_refuses_before_the_database_moves_when_the_previous_image_is_gone(
        run_playbook, compose_project, db_url, tmp_path):
    """Issue 14 §1 through the playbooks: migrate (the JSON backend deployed), the previous image and its keeper
    removed, then rollback_tokens.yml must refuse before downgrading, saying why, the way out and the table's state."""
    import psycopg2

    tag = f"lm-itest-prev-{os.getpid()}"
    rc, doc = run_playbook(DEPLOY, with_env(compose_project, LEDGERMIND_BACKEND_IMAGE=f"{tag}:text-array",
                                            LEDGERMIND_GIT_REVISION=f"prev-{os.getpid()}"))
    assert rc == 0, failure(doc)
    previous = image_id(f"{tag}:text-array")
    env = {**os.environ, "DATABASE_URL": db_url, "LEDGERMIND_DEPLOY": "1", "LEDGERMIND_COMPOSE_PROJECT": PROJECT,
           "LEDGERMIND_BACKEND_PORT": str(BACKEND_PORT), "LEDGERMIND_LLM_PORT": str(LLM_PORT),
           "LEDGERMIND_FAULT": "", "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    extra = [f"--extra-vars=ledgermind_{key}_dir={tmp_path / key}" for key in ("backup", "report", "compose_state")]

    def play(name: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(REPO / ".venv" / "bin" / "ansible-playbook"), str(REPO / "playbooks" / name),
                               f"--inventory={REPO / 'inventories' / 'local'}", *extra], cwd=REPO, env=env,
                              capture_output=True, text=True, check=False, timeout=600)

    def column_type() -> str:
        with psycopg2.connect(db_url) as conn, conn.cursor() as cur:
            cur.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid ="
                        " 'public.ml_features'::regclass AND attname = 'tokens' AND NOT attisdropped")
            return cur.fetchone()[0]

    try:
        out = play("migrate_tokens.yml")
        assert out.returncode == 0, out.stdout[-4000:]
        assert column_type() == "jsonb" and container()["Image"] == image_id("ledgermind-backend:json")
        subprocess.run(["docker", "rm", "--force", *keepers()], capture_output=True, check=True)
        subprocess.run(["docker", "rmi", "--force", previous], capture_output=True, check=True)

        out = play("rollback_tokens.yml")
        assert out.returncode != 0
        said = out.stdout.replace("\n", " ")
        assert "Rollback failed at 'Refuse, before anything changes" in said, out.stdout[-4000:]
        assert f"its image {previous} is gone" in said and "Way out" in said, out.stdout[-4000:]
        assert "Nothing was changed by this run" in said, out.stdout[-4000:]
        assert column_type() == "jsonb", "the rollback downgraded although the backend could not be put back"
        assert container()["Image"] == image_id("ledgermind-backend:json") and ready()[0] == 200
    finally:
        subprocess.run(["docker", "rmi", "--force", f"{tag}:text-array"], capture_output=True, check=False)
