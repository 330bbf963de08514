"""The staging and prod inventories configure the deploy and smoke phases with CHANGE-ME placeholders, and a run
refuses at its start while any is left, naming each (issue 11, section 4).

The check is the task below, meant for playbooks/tasks/start_run.yml; it is run here against the real inventories
(it needs no connection to their hosts).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CHECK_TASK = yaml.safe_load("""
name: Check that the inventory's placeholders are filled
vars:
  _names: "{{ ledgermind_settings_to_fill | default([]) }}"
  _unfilled: >-
    {{ dict(_names | zip(query('ansible.builtin.vars', *_names))) | ledgermind.migrations.unfilled_placeholders }}
ansible.builtin.assert:
  that: _unfilled | length == 0
  fail_msg: >-
    The inventory still has placeholders (CHANGE-ME): fill {{ _unfilled | join(', ') }} in its group_vars (secrets
    in its vault.yml), or pass them with -e ("" skips what a setting configures, on purpose). Nothing was changed.
  quiet: true
""")
UNFILLED = ["ledgermind_db.password", "ledgermind_compose_project_dir", "ledgermind_compose_project_name",
            "ledgermind_backend_url", "ledgermind_llm_health_script"]
FILLED = ["-e", "vault_ledgermind_db_password=s3cret-pw", "-e", "ledgermind_compose_project_dir=/srv/ops",
          "-e", "ledgermind_compose_project_name=ops", "-e", "ledgermind_backend_url=https://app.ledger-mind.org",
          "-e", "ledgermind_llm_health_script="]


def run_check(tmp_path: Path, inventory: str, extra: list[str] = ()) -> subprocess.CompletedProcess[str]:
    playbook = tmp_path / "check.yml"
    playbook.write_text(json.dumps([{"name": "Start", "hosts": "database", "gather_facts": False,
                                     "tasks": [CHECK_TASK]}]))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "PATH": "{}:{}".format(BIN, os.environ.get("PATH", ""))}
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", f"inventories/{inventory}", str(playbook), *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, check=False)


def group_vars(inventory: str) -> dict:
    return yaml.safe_load((REPO / "inventories" / inventory / "group_vars" / "all" / "main.yml").read_text())


@pytest.mark.parametrize("inventory", ["staging", "prod"])
def test_unfilled_placeholders_refuse_the_run_naming_each(tmp_path, inventory):
    run = run_check(tmp_path, inventory)
    out = " ".join(run.stdout.split())
    assert run.returncode != 0
    assert (f"The inventory still has placeholders (CHANGE-ME): fill {', '.join(UNFILLED)} in its group_vars "
            "(secrets in its vault.yml)") in out
    assert "Nothing was changed." in out


@pytest.mark.parametrize("inventory", ["staging", "prod"])
def test_filled_placeholders_pass_and_secrets_are_never_shown(tmp_path, inventory):
    run = run_check(tmp_path, inventory, FILLED)
    assert run.returncode == 0, run.stdout + run.stderr
    refused = run_check(tmp_path, inventory, FILLED[:-2] + ["-e", "ledgermind_llm_health_script=CHANGE-ME"])
    assert refused.returncode != 0 and "fill ledgermind_llm_health_script in" in " ".join(refused.stdout.split())
    assert "s3cret-pw" not in refused.stdout + refused.stderr


def test_the_local_inventory_has_nothing_to_fill(tmp_path):
    run = run_check(tmp_path, "local")
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("inventory", ["staging", "prod"])
def test_the_inventories_configure_the_deploy_and_smoke_phases(inventory):
    """What compose_redeploy and smoke_tests read from the inventory is set, and each placeholder is checked."""
    found = group_vars(inventory)
    for name in ("ledgermind_compose_project_dir", "ledgermind_compose_project_name", "ledgermind_compose_env",
                 "ledgermind_compose_state_dir", "ledgermind_backend_url", "ledgermind_backend_expect_labels",
                 "ledgermind_llm_health_script", "ledgermind_llm_health_env"):
        assert name in found, name
    placeholders = {name for name, value in found.items() if value == "CHANGE-ME"}
    assert placeholders <= set(found["ledgermind_settings_to_fill"])
    assert all(name in found for name in found["ledgermind_settings_to_fill"])
    # Deployed-by stays required on both.
    assert found["ledgermind_require_operator"] is True
