"""SSH to the backend hosts is AWX's built-in Machine credential, its secrets only in the vault (issue 12 §2).

The one custom credential type is the database's. The inventory leaves user, key and sudo password to the Machine
credential and checks the hosts' keys strictly against inventories/awx/known_hosts, also under AWX's default
ANSIBLE_HOST_KEY_CHECKING=False (checked with Ansible's own ssh connection, against a port nothing listens on). The
custom SSH type earlier data created, and its credential, are removed after the templates stop naming them.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from awx_model import REPO

BIN = Path(sys.executable).parent
PLAYBOOK = REPO / "playbooks" / "awx_configure.yml"
KNOWN_HOSTS = REPO / "inventories" / "awx" / "known_hosts"
VAULT = REPO / "inventories" / "awx" / "group_vars" / "all" / "vault.yml"
# AWX's Machine credential type (awx.main.models.credential: ManagedCredentialType 'ssh'): its input ids, and the
# secret ones.
MACHINE_INPUTS = {"username", "password", "ssh_key_data", "ssh_public_key_data", "ssh_key_unlock", "become_method",
                  "become_username", "become_password"}
MACHINE_SECRETS = {"password", "ssh_key_data", "ssh_key_unlock", "become_password"}
# What a custom type would carry if it did the Machine credential's job.
SSH_FIELDS = {"username", "ssh_key_data", "ssh_key", "known_hosts", "become_password", "private_key"}
SSH_VARIABLES = {"ansible_user", "ansible_ssh_user", "ansible_ssh_private_key_file", "ansible_private_key_file",
                 "ansible_password", "ansible_ssh_pass", "ansible_become_password", "ansible_become_pass"}


def machine_credentials(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in data["controller_credentials"] if c["credential_type"] == "Machine"]


def test_ssh_is_the_machine_credential(awx_data):
    [machine] = machine_credentials(awx_data)
    assert set(machine["inputs"]) <= MACHINE_INPUTS, sorted(set(machine["inputs"]) - MACHINE_INPUTS)
    assert machine["inputs"]["username"] and machine["inputs"]["ssh_key_data"]
    # Every job template that reaches the hosts with the database credential has it too.
    for template in awx_data["controller_templates"]:
        if "LedgerMind prod database" in template.get("credentials", []):
            assert machine["name"] in template["credentials"], template["name"]


def test_no_custom_credential_type_does_the_machine_credentials_job(awx_data):
    for kind in awx_data["controller_credential_types"]:
        fields = {f["id"] for f in kind["inputs"]["fields"]}
        assert not fields & SSH_FIELDS, (kind["name"], sorted(fields & SSH_FIELDS))
        injected = set(kind.get("injectors", {}).get("extra_vars", {}))
        assert not injected & SSH_VARIABLES and not any("ssh" in name for name in injected), kind["name"]
    assert [k["name"] for k in awx_data["controller_credential_types"]] == ["LedgerMind PostgreSQL"]


def test_the_machine_credentials_secrets_come_from_the_vault(awx_data_as_written):
    [machine] = machine_credentials(awx_data_as_written)
    for name in MACHINE_SECRETS & set(machine["inputs"]):
        assert machine["inputs"][name].replace(" ", "").startswith("{{vault_"), name
    assert machine["update_secrets"] is True


def test_the_repository_holds_no_secret(awx_data_as_written):
    """vault.yml holds placeholders only (an operator fills and encrypts it); no other file names a secret value."""
    text = VAULT.read_text()
    assert text.startswith("$ANSIBLE_VAULT") or all(
        value in ("", None) or "CHANGE-ME" in str(value)
        for name, value in awx_data_as_written.items() if name.startswith("vault_")), "a real secret in vault.yml"
    for credential in awx_data_as_written["controller_credentials"]:
        for name, value in credential.get("inputs", {}).items():
            if name in MACHINE_SECRETS | {"password"}:
                assert "{{" in str(value), (credential["name"], name)


def test_the_inventory_leaves_ssh_to_the_credential_and_checks_host_keys(awx_data_as_written):
    groups = [g for g in awx_data_as_written["controller_groups"] if g["name"] in ("database", "backend")]
    assert len(groups) == 2
    for group in groups:
        variables = group["variables"]
        assert not set(variables) & SSH_VARIABLES, (group["name"], sorted(set(variables) & SSH_VARIABLES))
        assert variables["ansible_host_key_checking"] is True
        args = variables["ansible_ssh_common_args"]
        assert "StrictHostKeyChecking=yes" in args and "StrictHostKeyChecking=no" not in args
        known = args.split("UserKnownHostsFile=", 1)[1].split(" -o ")[0].strip()
        # Every job template's playbook is in playbooks/, the project's checkout beside inventories/.
        for template in awx_data_as_written["controller_templates"]:
            playbook_dir = (REPO / template["playbook"]).parent
            assert Path(known.replace("{{ playbook_dir }}", str(playbook_dir))).resolve() == KNOWN_HOSTS
    lines = [line for line in KNOWN_HOSTS.read_text().splitlines() if line and not line.startswith("#")]
    hosts = {h["name"] for h in awx_data_as_written["controller_hosts"]}
    assert {line.split()[0] for line in lines} == hosts


def test_ansible_checks_host_keys_strictly_even_when_awx_turns_checking_off(awx_data_as_written, tmp_path):
    """AWX runs jobs with ANSIBLE_HOST_KEY_CHECKING=False, which makes the ssh connection put
    -o StrictHostKeyChecking=no first (ssh keeps an option's first value); the group's ansible_host_key_checking
    must win. The connection is refused (nothing listens on port 9): only the ssh command line matters."""
    [group] = [g for g in awx_data_as_written["controller_groups"] if g["name"] == "backend"]
    inventory = {"all": {"children": ["backend"]},
                 "backend": {"hosts": ["backend-1.prod.example.internal"], "vars": group["variables"]},
                 "_meta": {"hostvars": {"backend-1.prod.example.internal": {
                     "ansible_host": "127.0.0.1", "ansible_port": 9, "ansible_connection": "ssh",
                     "ansible_ssh_timeout": 5}}}}
    script = tmp_path / "inventory.sh"
    script.write_text("#!/bin/sh\ncat <<'EOF'\n" + json.dumps(inventory) + "\nEOF\n")
    script.chmod(0o700)
    env = {**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    out = subprocess.run([str(BIN / "ansible"), "-i", str(script), "backend", "-m", "ansible.builtin.ping", "-vvv",
                          "-u", "ledgermind-deploy", "--playbook-dir", str(REPO / "playbooks")],
                         capture_output=True, text=True, check=False, timeout=120, env=env, cwd=tmp_path)
    command = next((line for line in out.stdout.splitlines() if "SSH: EXEC" in line), "")
    assert command, out.stdout[-3000:] + out.stderr[-3000:]
    assert "StrictHostKeyChecking=no" not in command, command
    assert "StrictHostKeyChecking=yes" in command, command
    assert f"UserKnownHostsFile={REPO}/playbooks/../inventories/awx/known_hosts" in command, command
    assert "User=\"ledgermind-deploy\"" in command or "User=ledgermind-deploy" in command, command


def test_the_retired_ssh_type_and_credential_go_after_the_templates_stop_naming_them(awx_data, yaml_loader):
    retired_credentials = {c["name"] for c in awx_data["controller_credentials_retired"]}
    retired_types = {t["name"] for t in awx_data["controller_credential_types_retired"]}
    assert retired_types == {"LedgerMind deploy host"} and retired_credentials == {"LedgerMind prod deploy host"}
    for template in awx_data["controller_templates"]:
        assert not set(template.get("credentials", [])) & retired_credentials, template["name"]
    assert not {c["name"] for c in awx_data["controller_credentials"]} & retired_credentials
    assert not {c["credential_type"] for c in awx_data["controller_credentials"]} & retired_types
    assert not {t["name"] for t in awx_data["controller_credential_types"]} & retired_types
    names = [task["name"] for task in yaml_loader(PLAYBOOK)[0]["tasks"]]
    for task in ("Retired credentials", "Retired credential types"):
        assert names.index(task) > max(names.index("Job templates"), names.index("Workflows"))
    assert names.index("Retired credential types") > names.index("Retired credentials")
    tasks = {task["name"]: task for task in yaml_loader(PLAYBOOK)[0]["tasks"]}
    assert tasks["Retired credentials"]["awx.awx.credential"]["state"] == "absent"
    assert tasks["Retired credential types"]["awx.awx.credential_type"]["state"] == "absent"
