"""A fleet rollout: one inventory host per database, the canary first, then the waves.

Two local databases in inventories/fleet_example's shape (a `canary` group, then `wave1`), run with
playbooks/vars/fleet_rollout.yml (play-level serial and max_fail_percentage). A canary that fails
stops the rollout before the next wave's database is touched; a healthy canary lets the wave follow.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
ROLLOUT = REPO / "playbooks" / "vars" / "fleet_rollout.yml"
REVISION_BEFORE = "20251109_add_user_name_picture"
REVISION_AFTER = "502d44cd70ab"


def fleet_inventory(tmp_path: Path, canary, wave) -> Path:
    example = yaml.safe_load((REPO / "inventories" / "fleet_example" / "hosts.yml").read_text())
    # The example's shape: database -> canary, wave1, ... (in that order).
    assert list(example["all"]["children"]["database"]["children"])[:2] == ["canary", "wave1"]
    host_vars = {
        "ansible_connection": "local",
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        "ledgermind_backend_dir": str(REPO / "examples" / "backend"),
        "ledgermind_backend_venv": str(BIN.parent),
        "ledgermind_backup_dir": str(tmp_path / "backups" / "{{ inventory_hostname }}"),
        "ledgermind_report_dir": str(tmp_path / "reports"),
    }
    inventory = {"all": {"vars": host_vars, "children": {"database": {"children": {
        "canary": {"hosts": {"tenant-a": {"ledgermind_db": {"url": canary.url}}}},
        "wave1": {"hosts": {"tenant-b": {"ledgermind_db": {"url": wave.url}}}},
    }}}}}
    path = tmp_path / "fleet.yml"
    path.write_text(yaml.safe_dump(inventory))
    return path


def run_rollout(inventory: Path) -> tuple[subprocess.CompletedProcess[str], dict]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
           "PATH": f"{BIN}:{os.environ.get('PATH', '')}", "ANSIBLE_NOCOLOR": "1"}
    env.pop("DATABASE_URL", None)
    out = subprocess.run(
        [str(BIN / "ansible-playbook"), "playbooks/migrate_tokens.yml", "-i", str(inventory), "-e", f"@{ROLLOUT}"],
        cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=600,
    )
    return out, json.loads(out.stdout)


def batches(data: dict) -> list[list[str]]:
    return [sorted({host for task in play["tasks"] for host in task["hosts"]}) for play in data["plays"]]


def test_a_failing_canary_stops_the_rollout_before_the_next_wave(make_db, tmp_path):
    canary, wave = make_db("lm_test_fleet_a"), make_db("lm_test_fleet_b")
    # A 2-D array would not survive text[] -> jsonb -> text[]: pre-flight refuses the canary.
    canary.query("UPDATE ml_features SET tokens = '{{a,b},{c,d}}' WHERE txn_id = (SELECT min(txn_id) FROM ml_features)")
    canary_before, wave_before = canary.state(), wave.state()

    out, data = run_rollout(fleet_inventory(tmp_path, canary, wave))

    assert out.returncode != 0, out.stderr
    assert batches(data) == [["tenant-a"]], "the play must stop after the canary's batch"
    assert set(data["stats"]) == {"tenant-a"} and data["stats"]["tenant-a"]["failures"] == 1
    refusal = [h for p in data["plays"] for t in p["tasks"] for h in t["hosts"].values()
               if h.get("failed") and "Pre-flight refused" in str(h.get("msg", ""))]
    assert refusal, "the canary fails at pre-flight"
    assert canary.state() == canary_before
    # The next wave's database was never touched.
    assert wave.state() == wave_before
    assert wave_before["type"] == "text[]" and wave_before["revision"] == REVISION_BEFORE
    assert not (tmp_path / "backups" / "tenant-b").exists()


def test_a_healthy_canary_lets_the_waves_follow_one_batch_each(make_db, tmp_path):
    canary, wave = make_db("lm_test_fleet_a"), make_db("lm_test_fleet_b")
    before = {"a": canary.state(), "b": wave.state()}

    out, data = run_rollout(fleet_inventory(tmp_path, canary, wave))

    assert out.returncode == 0, out.stderr
    assert batches(data) == [["tenant-a"], ["tenant-b"]]
    for key, db in (("a", canary), ("b", wave)):
        state = db.state()
        assert state["type"] == "jsonb" and state["revision"] == REVISION_AFTER
        assert state["fingerprint"] == before[key]["fingerprint"]
    # One report and one backup directory per tenant.
    reports = [json.loads(p.read_text()) for p in (tmp_path / "reports").glob("*.json")]
    assert sorted(r["host"] for r in reports) == ["tenant-a", "tenant-b"]
    assert all(r["verdict"] == "PASSED" for r in reports)
    assert all(list((tmp_path / "backups" / host).glob("*.dump")) for host in ("tenant-a", "tenant-b"))
