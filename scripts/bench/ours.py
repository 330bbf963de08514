"""The collection's playbooks, timed per phase from the ansible.posix.json callback.

Each task's duration is attributed to a phase by the role it belongs to (the json callback names
role tasks ``<role fqcn> : <task>``); what no task accounts for (interpreter start-up, playbook
parsing, the run record, gaps between tasks) is ``overhead``. The deploy and smoke phases
(issue 4) are skipped whether or not the playbooks have them yet: ``--skip-tags deploy,smoke``.

The conversion is always chosen explicitly (``-e ledgermind_conversion=in_place|online``): left to
``auto`` it would switch to online from 100,000 rows and the in-place figures would silently change.
Tasks of a role that other roles include (``online_conversion``) count where the including role's
do (the choice, ``tasks/choose.yml``), except the conversion itself (plan, expand, backfill, index,
verify, swap, remove), which is the migration's or the downgrade's.
"""

from __future__ import annotations

import glob
import json
import re
import subprocess
import time
from datetime import datetime
from pathlib import Path

from .env import REPO, VENV_BIN, BenchError, base_env
from .memory import ModuleMemory

SKIP_TAGS = "deploy,smoke"

MIGRATE_ROLES = {
    "migration_preflight": "preflight",
    "migration_rehearsal": "rehearsal",
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

CONVERSIONS = ("in_place", "online")
HELPER_ROLES = {"online_conversion"}
# Files of a helper role whose tasks belong to whichever role included them.
HELPER_INHERITS = ("/choose.yml",)
# The online conversion's own steps, from pg_online_convert's phase argument.
ONLINE_STEPS = ["plan", "expand", "backfill", "index", "verify", "swap", "remove"]


def _action(entry: dict) -> str:
    for result in entry.get("hosts", {}).values():
        if result.get("action"):
            return str(result["action"]).rsplit(".", 1)[-1]
    return ""


def _module_phase(entry: dict) -> str:
    for result in entry.get("hosts", {}).values():
        phase = ((result.get("invocation") or {}).get("module_args") or {}).get("phase")
        if phase:
            return str(phase)
    return ""


def _role(task: dict) -> str:
    """The role a task belongs to: named ``<role fqcn> : <task>`` by the callback, or else (an include_role task,
    which the callback names without its role) the role whose task file holds it."""
    if " : " in task["name"]:
        return task["name"].split(" : ", 1)[0].rsplit(".", 1)[-1]
    found = re.search(r"/roles/([^/]+)/tasks/", str(task.get("path", "")))
    return found.group(1) if found else ""


def _converts(task: dict) -> bool:
    """A task of the conversion itself: in a helper role's own task files, other than the choice. (Its argument
    check, "Validating arguments against arg spec", runs from the including file and counts with the includer.)"""
    path = str(task.get("path", "")).rsplit(":", 1)[0]
    return f"/roles/{_role(task)}/tasks/" in path and not path.endswith(HELPER_INHERITS)


def _seconds(task: dict) -> float:
    return _ts(task["duration"]["end"]) - _ts(task["duration"]["start"])


def task_phases(callback: dict, roles: dict[str, str], actions: dict[str, str] | None = None,
                conversion: str | None = None) -> tuple[dict[str, float], list[dict]]:
    """Seconds per phase (tasks of unknown roles go to ``overhead``) and the per-task list.

    ``conversion``: the phase of the online conversion's own tasks (see HELPER_ROLES); without it
    a helper role's tasks all count where the including role's do.
    """
    phases: dict[str, float] = {}
    tasks: list[dict] = []
    previous = "overhead"
    for play in callback.get("plays", []):
        for entry in play.get("tasks", []):
            task = entry["task"]
            seconds = _seconds(task)
            role = _role(task)
            if role in HELPER_ROLES:
                phase = conversion if conversion and _converts(task) else previous
            else:
                phase = (actions or {}).get(_action(entry)) or roles.get(role, "overhead")
            previous = phase
            phases[phase] = phases.get(phase, 0.0) + seconds
            tasks.append({"phase": phase, "task": task["name"], "seconds": round(seconds, 4),
                          "start": round(_ts(task["duration"]["start"]), 3)})
    return phases, tasks


def running_at(tasks: list[dict], began: float | None, seconds: float) -> list[str]:
    """The tasks that ran while an UPDATE that began at ``began`` (epoch) waited ``seconds``: where a writer's
    longest block came from."""
    if began is None:
        return []
    end = began + seconds
    return [f"{t['phase']}: {t['task']}" for t in tasks
            if "start" in t and t["start"] <= end and t["start"] + t["seconds"] >= began]


def online_steps(callback: dict) -> dict:
    """The online conversion's own steps (seconds per pg_online_convert phase; the debug and include tasks
    between them count with the step before), the backfill's last progress, the swap's tries."""
    steps: dict[str, float] = {}
    found: dict = {"steps": steps, "backfill_slices": 0, "progress": {}, "swap": {}, "verify": {}}
    step = ""
    for play in callback.get("plays", []):
        for entry in play.get("tasks", []):
            task = entry["task"]
            if _role(task) not in HELPER_ROLES or not _converts(task):
                step = ""
                continue
            phase = _module_phase(entry) if _action(entry) == "pg_online_convert" else ""
            step = phase if phase in ONLINE_STEPS else step or "other"
            steps[step] = round(steps.get(step, 0.0) + _seconds(task), 4)
            for result in entry.get("hosts", {}).values():
                if phase == "backfill" and not result.get("skipped"):
                    found["backfill_slices"] += 1
                    found["progress"] = result.get("progress") or found["progress"]
                elif phase in ("swap", "verify") and result.get(phase):
                    found[phase] = result[phase]
    return found


def failures(callback: dict) -> int:
    return sum(int(h.get("failures", 0)) + int(h.get("unreachable", 0)) for h in callback.get("stats", {}).values())


def run_playbook(kind: str, url: str, workdir: Path, *, memory: bool = True, conversion: str = "in_place",
                 batch_size: int | None = None, rehearsal: bool = False) -> dict:
    """Run migrate_tokens.yml or rollback_tokens.yml; phases, wall time, the sign-off, module peaks.

    ``conversion``: in_place or online (never auto, see the module's docstring); ``batch_size``: the online
    backfill's rows per batch (the roles' default when None); ``rehearsal``: the migrate's rehearsal on a scratch
    copy on or off, always explicit (the local inventory's default follows $LEDGERMIND_REHEARSAL)."""
    if conversion not in CONVERSIONS:
        raise BenchError(f"conversion must be one of {', '.join(CONVERSIONS)}, not {conversion!r}")
    playbook = REPO / "playbooks" / f"{kind}_tokens.yml"
    env = base_env(url)
    env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
    backups, reports = workdir / "backups", workdir / "reports"
    argv = [str(VENV_BIN / "ansible-playbook"), str(playbook), "-i", str(REPO / "inventories" / "local"),
            "--skip-tags", SKIP_TAGS, "-e", f"ledgermind_conversion={conversion}",
            "-e", f"ledgermind_backup_dir={backups}", "-e", f"ledgermind_report_dir={reports}",
            "-e", f"ledgermind_rehearsal={'true' if rehearsal else 'false'}"]
    if batch_size:
        argv += ["-e", f"ledgermind_online_batch_size={int(batch_size)}"]
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
    # Kept with the run's backups and reports (removed with them unless --keep-work): phases can be re-derived.
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / f"{kind}-{conversion}.callback.json").write_text(out, encoding="utf-8")
    try:
        callback = json.loads(out)
    except ValueError:
        raise BenchError(f"{playbook.name}: no JSON from the callback (rc={proc.returncode}): "
                         f"{err.strip()[-400:]}") from None
    if proc.returncode != 0 or failures(callback):
        raise BenchError(f"{playbook.name} failed (rc={proc.returncode}): "
                         f"{_failure_message(callback) or err.strip()[-400:]}")
    if kind == "migrate":
        phases, tasks = task_phases(callback, MIGRATE_ROLES, conversion="migrate")
    else:
        phases, tasks = task_phases(callback, ROLLBACK_ROLES, ROLLBACK_ACTIONS, conversion="rollback_downgrade")
    phases["overhead"] = phases.get("overhead", 0.0) + max(0.0, wall - sum(phases.values()))
    if kind == "rollback":
        phases["rollback_overhead"] = phases.pop("overhead")
    return {"wall": wall, "phases": phases, "tasks": tasks, "signoff": _signoff(reports, kind), "memory": peaks,
            "conversion": conversion, "online": online_steps(callback), "rehearsal": rehearsal_report(callback)}


REHEARSAL_RECORD_TASK = "Record the rehearsal for the sign-off"


def rehearsal_report(callback: dict) -> dict:
    """The rehearsal's own figures from its report (migration_rehearsal_report, as the role recorded it): whether it
    passed, its seconds from the first step to the report, and each step's seconds; empty when it did not run."""
    for play in callback.get("plays", []):
        for entry in play.get("tasks", []):
            if not entry["task"]["name"].endswith(REHEARSAL_RECORD_TASK):
                continue
            for result in entry.get("hosts", {}).values():
                found = (result.get("ansible_facts") or {}).get("migration_rehearsal_report") or {}
                if found.get("steps"):
                    return {"ok": found.get("ok") in (True, "True", "true"), "seconds": _number(found.get("seconds")),
                            "mode": found.get("mode"), "rows": found.get("rows"),
                            "steps": {step["name"]: _number(step.get("seconds")) for step in found["steps"]}}
    return {}


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


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
