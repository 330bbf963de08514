"""The collection's playbooks, timed per phase from the ansible.posix.json callback.

Each task's duration is attributed to a phase by the role it belongs to (the json callback names
role tasks ``<role fqcn> : <task>``); what no task accounts for (interpreter start-up, playbook
parsing, the run record, gaps between tasks) is ``overhead``. The deploy and smoke phases
(issue 4) are skipped whether or not the playbooks have them yet: ``--skip-tags deploy,smoke``.
"""

from __future__ import annotations

import glob
import json
import subprocess
import time
from datetime import datetime
from pathlib import Path

from .env import REPO, VENV_BIN, BenchError, base_env
from .memory import ModuleMemory

SKIP_TAGS = "deploy,smoke"

MIGRATE_ROLES = {
    "migration_preflight": "preflight",
    "pg_backup": "backup",
    "db_migration": "migrate",
    "migration_validate": "validate",
    "signoff_report": "report",
}
ROLLBACK_ROLES = {
    "db_migration": "rollback_downgrade",
    "migration_rollback": "rollback_validate",
    "pg_backup": "rollback_validate",
    "signoff_report": "rollback_report",
}


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# Tasks running these modules belong to a phase whatever role runs them (the rollback role drives
# alembic_migrate itself since 8ac13d4).
ROLLBACK_ACTIONS = {"alembic_migrate": "rollback_downgrade"}


def _action(entry: dict) -> str:
    for result in entry.get("hosts", {}).values():
        if result.get("action"):
            return str(result["action"]).rsplit(".", 1)[-1]
    return ""


def task_phases(callback: dict, roles: dict[str, str],
                actions: dict[str, str] | None = None) -> tuple[dict[str, float], list[dict]]:
    """Seconds per phase (tasks of unknown roles go to ``overhead``) and the per-task list."""
    phases: dict[str, float] = {}
    tasks: list[dict] = []
    for play in callback.get("plays", []):
        for entry in play.get("tasks", []):
            task = entry["task"]
            seconds = _ts(task["duration"]["end"]) - _ts(task["duration"]["start"])
            role = task["name"].split(" : ", 1)[0].rsplit(".", 1)[-1] if " : " in task["name"] else ""
            phase = (actions or {}).get(_action(entry)) or roles.get(role, "overhead")
            phases[phase] = phases.get(phase, 0.0) + seconds
            tasks.append({"phase": phase, "task": task["name"], "seconds": round(seconds, 4)})
    return phases, tasks


def failures(callback: dict) -> int:
    return sum(int(h.get("failures", 0)) + int(h.get("unreachable", 0)) for h in callback.get("stats", {}).values())


def run_playbook(kind: str, url: str, workdir: Path, *, memory: bool = True) -> dict:
    """Run migrate_tokens.yml or rollback_tokens.yml; phases, wall time, the sign-off, module peaks."""
    playbook = REPO / "playbooks" / f"{kind}_tokens.yml"
    env = base_env(url)
    env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
    backups, reports = workdir / "backups", workdir / "reports"
    argv = [str(VENV_BIN / "ansible-playbook"), str(playbook), "-i", str(REPO / "inventories" / "local"),
            "--skip-tags", SKIP_TAGS,
            "-e", f"ledgermind_backup_dir={backups}", "-e", f"ledgermind_report_dir={reports}"]
    if kind == "rollback":
        # What a CLI run has (no AWX set_stats): the rollback falls back to the newest backup in the
        # directory. Set empty rather than left undefined, which migration_rollback's defaults (as of
        # 66de777) fail on outside AWX.
        argv += ["-e", "ledgermind_backup_path="]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if memory:
        with ModuleMemory(proc.pid) as mem:
            out, err = proc.communicate()
        peaks = mem.peaks_mib()
    else:
        out, err = proc.communicate()
        peaks = {"module": {}, "children": {}}
    wall = time.perf_counter() - started
    try:
        callback = json.loads(out)
    except ValueError:
        raise BenchError(f"{playbook.name}: no JSON from the callback (rc={proc.returncode}): "
                         f"{err.strip()[-400:]}") from None
    if proc.returncode != 0 or failures(callback):
        raise BenchError(f"{playbook.name} failed (rc={proc.returncode}): "
                         f"{_failure_message(callback) or err.strip()[-400:]}")
    if kind == "migrate":
        phases, tasks = task_phases(callback, MIGRATE_ROLES)
    else:
        phases, tasks = task_phases(callback, ROLLBACK_ROLES, ROLLBACK_ACTIONS)
    phases["overhead"] = phases.get("overhead", 0.0) + max(0.0, wall - sum(phases.values()))
    if kind == "rollback":
        phases["rollback_overhead"] = phases.pop("overhead")
    return {"wall": wall, "phases": phases, "tasks": tasks, "signoff": _signoff(reports, kind), "memory": peaks}


def _failure_message(callback: dict) -> str:
    for play in callback.get("plays", []):
        for entry in play.get("tasks", []):
            for result in entry.get("hosts", {}).values():
                if result.get("failed") and not result.get("ignore_errors"):
                    return f"{entry['task']['name']}: {result.get('msg', '')}"[:400]
    return ""


def _signoff(reports: Path, kind: str) -> dict:
    found = sorted(glob.glob(str(reports / f"tokens_{kind}_*.json")))
    if not found:
        return {}
    with open(found[-1], encoding="utf-8") as fh:
        return json.load(fh)
