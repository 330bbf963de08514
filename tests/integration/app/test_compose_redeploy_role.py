"""compose_redeploy and smoke_tests against the real Docker engine and the real HTTP service."""
from __future__ import annotations

import json
import os
import subprocess

from appsupport import BACKEND_PORT, LLM_PORT, REPO, facts, failure, needs_docker, task_results

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


def running_image(project: str) -> str:
    out = subprocess.run(["docker", "ps", "--quiet", "--filter", f"label=com.docker.compose.project={project}",
                          "--filter", "label=com.docker.compose.service=backend"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert len(out) == 1, out
    return json.loads(subprocess.run(["docker", "inspect", out[0]], capture_output=True, text=True,
                                     check=True).stdout)[0]["Image"]


def changed_tasks(doc) -> list[str]:
    return [name for name, host in task_results(doc) if host.get("changed")]


@needs_docker
def test_deploy_is_idempotent_records_the_previous_image_and_restores_it(run_playbook, compose_project):
    rc, doc = run_playbook(DEPLOY, compose_project)
    assert rc == 0, failure(doc)
    first = facts(doc)["compose_redeploy_report"]
    assert first["ok"] and "ready: yes" in first["evidence"], first
    previous = running_image(compose_project["compose_redeploy_project_name"])

    rc, doc = run_playbook(DEPLOY, compose_project)
    assert rc == 0 and changed_tasks(doc) == [], changed_tasks(doc)
    assert "nothing recreated" in facts(doc)["compose_redeploy_report"]["evidence"]

    # The new model cannot be ready on a text[] column: the deploy fails and says why.
    new = {**compose_project, "compose_redeploy_ready_timeout": 3, "compose_redeploy_env": {
        **compose_project["compose_redeploy_env"], "LEDGERMIND_TOKENS_MODEL": "json",
        "LEDGERMIND_BACKEND_IMAGE": "ledgermind-backend:json"}}
    rc, doc = run_playbook(DEPLOY, new)
    assert rc != 0
    assert "Deploy of backend failed" in failure(doc) and "expects _text" not in failure(doc)
    assert "ml_features.tokens is _text, model 'json' expects jsonb" in failure(doc), failure(doc)
    assert running_image(compose_project["compose_redeploy_project_name"]) != previous

    rc, doc = run_playbook(RESTORE, compose_project)
    assert rc == 0, failure(doc)
    assert facts(doc)["compose_redeploy_restore_report"]["ok"]
    assert running_image(compose_project["compose_redeploy_project_name"]) == previous
    rc, doc = run_playbook(RESTORE, compose_project)
    assert rc == 0 and changed_tasks(doc) == [], changed_tasks(doc)

    smoke = {"smoke_tests_base_url": f"http://127.0.0.1:{BACKEND_PORT}",
             "smoke_tests_llm_health_script": str(REPO / "examples/backend/scripts/llm-health.sh"),
             "smoke_tests_llm_health_env": {"LLM_HEALTH_URL": f"http://127.0.0.1:{LLM_PORT}/health"}}
    rc, doc = run_playbook(SMOKE, smoke)
    assert rc == 0, failure(doc)
    report = facts(doc)["smoke_tests_report"]
    assert report["ok"] and "LLM: healthy" in report["evidence"], report

    rc, doc = run_playbook(SMOKE, {**smoke, "smoke_tests_retries": 2, "smoke_tests_delay": 0.1,
                                   "smoke_tests_chat_path": "/agent/nope"})
    assert rc != 0
    assert "Smoke tests failed: chat (stub mode): POST" in failure(doc) and "404" in failure(doc), failure(doc)
    assert "ready:" not in failure(doc).split("Smoke tests failed:")[1].split(";")[0]


@needs_docker
def test_check_mode_says_what_would_run_and_changes_nothing(run_playbook, compose_project):
    # An image tag nothing has built: compose's dry run (docker_compose_v2 in check mode) must not build it either.
    tag = f"lm-itest-check-{os.getpid()}:never-built"
    settings = {**compose_project, "compose_redeploy_env": {**compose_project["compose_redeploy_env"],
                                                            "LEDGERMIND_BACKEND_IMAGE": tag}}
    rc, doc = run_playbook(DEPLOY, settings, check=True)
    assert rc == 0, failure(doc)
    said = [h.get("msg", "") for n, h in task_results(doc) if "would do" in n]
    assert said and "Would run" in said[0] and "up -d --build --wait backend" in said[0], said
    assert "community.docker.docker_compose_v2" in said[0], said
    # It says it would create the container (it predicts the change) and creates nothing.
    assert changed_tasks(doc) == ["ledgermind.migrations.compose_redeploy : Bring the service up (Compose v2)"]
    assert subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=False).returncode != 0
    assert subprocess.run(["docker", "ps", "--quiet", "--filter", "label=com.docker.compose.project=lm_itest"],
                          capture_output=True, text=True, check=True).stdout.strip() == ""


def test_no_engine_fails_clearly(run_playbook, compose_project):
    rc, doc = run_playbook(DEPLOY, compose_project, env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert rc != 0 and "No Docker engine answers" in failure(doc), failure(doc)


@needs_docker
def test_no_compose_fails_clearly(run_playbook, compose_project):
    rc, doc = run_playbook(DEPLOY, {**compose_project, "compose_redeploy_compose": "v1",
                                    "compose_redeploy_v1_command": "/nonexistent/docker-compose"})
    assert rc != 0 and "Neither Compose v2" in failure(doc), failure(doc)


@needs_docker
def test_compose_v1_deploys_too(run_playbook, compose_project):
    v1 = {**compose_project, "compose_redeploy_compose": "v1", "compose_redeploy_v1_command": "/usr/bin/docker-compose"}
    assert subprocess.run(["/usr/bin/docker-compose", "version"], capture_output=True, check=False).returncode == 0, \
        "Debian's docker-compose (v1) is missing: scripts/docker_engine up installs it"
    rc, doc = run_playbook(DEPLOY, v1)
    assert rc == 0, failure(doc)
    assert facts(doc)["compose_redeploy_result"]["compose"].startswith("v1")
    rc, doc = run_playbook(DEPLOY, v1)
    assert rc == 0 and changed_tasks(doc) == [], changed_tasks(doc)
