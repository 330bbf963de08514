# Copyright: (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The smoke tests' verdict: each check passed or not, with what came back, from the probes' registered results."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError


def _ran(result: Any) -> bool:
    return isinstance(result, Mapping) and bool(result) and not result.get("skipped")


def _failed_tries(result: Mapping[str, Any]) -> str:
    """``; failed tries: try 1 of 3 (connection refused), ...`` from http_probe's attempts."""
    attempts = result.get("attempts") or []
    failed = [f"try {n} of {len(attempts)} ({a['problem']})" for n, a in enumerate(attempts, 1) if a.get("problem")]
    return ("; failed tries: " + ", ".join(failed)) if failed else ""


def _truncate(value: Any, length: int) -> str:
    text = str(value or "")
    return text if len(text) <= length else text[:length - 3] + "..."


def chat_check(chat: Mapping[str, Any]) -> dict[str, Any]:
    passed = bool(chat.get("passed"))
    evidence = (f"content: {_truncate((chat.get('json') or {}).get('content'), 80)}" if passed
                else str(chat.get("msg") or "not run"))
    return {"name": "chat (stub mode)", "passed": passed, "evidence": evidence + _failed_tries(chat)}


def ready_check(ready: Mapping[str, Any]) -> dict[str, Any]:
    passed = bool(ready.get("passed"))
    body = ready.get("json") or {}
    evidence = (f"ok={body.get('ok')} llm_ok={body.get('llm_ok')} db_ok={body.get('db_ok')}" if passed
                else str(ready.get("msg") or "not run"))
    return {"name": "ready", "passed": passed, "evidence": evidence + _failed_tries(ready)}


def llm_check(llm: Any, stat: Any, script: str) -> dict[str, Any]:
    name = "LLM health script"
    if _ran(llm):
        rc = llm.get("rc", 1)
        stdout = str(llm.get("stdout") or "").strip()
        passed = rc == 0 and "LLM: healthy" in stdout
        stderr = (" " + _truncate(str(llm.get("stderr") or "").strip(), 200)) if rc != 0 else ""
        retried = f" (after {llm['attempts'] - 1} failed tries)" if int(llm.get("attempts") or 1) > 1 else ""
        return {"name": name, "passed": passed, "evidence": f"exit {rc}: {stdout}{stderr}{retried}"}
    if not script:
        return {"name": name, "passed": True, "evidence": "skipped (no script configured)"}
    found = (stat or {}).get("stat") or {}
    why = ("missing" if not found.get("exists") else
           f"not executable (mode {found.get('mode')})" if not found.get("executable") else "not run")
    return {"name": name, "passed": False, "evidence": f"the script {script} is {why}"}


def stayed_check(stayed: Any, was: Mapping[str, Any]) -> dict[str, Any]:
    name = "container stayed up"
    if not _ran(stayed):
        return {"name": name, "passed": True, "evidence": "skipped (no deployed container recorded)"}
    if stayed.get("msg") is not None:
        return {"name": name, "passed": True, "evidence": f"not checked ({stayed['msg']})"}
    now = stayed.get("container") or {}
    containers = list(stayed.get("containers") or [])
    was_id = str(was.get("container_id") or "")
    if containers != [was_id]:
        evidence = "replaced after it became ready: {} -> {}".format(
            was_id[:12], ",".join(c[:12] for c in containers) or "none")
        return {"name": name, "passed": False, "evidence": evidence}
    same = (now.get("restart_count", -1) == was.get("restart_count", 0)
            and now.get("started_at", "") == was.get("started_at", "") and bool(now.get("running")))
    if same:
        return {"name": name, "passed": True, "evidence": "container {} up since {}, RestartCount {}".format(
            was_id[:12], was.get("started_at"), was.get("restart_count"))}
    template = ("restarted after it became ready (crashed and brought back by its restart policy): RestartCount {} -> "
                "{}, StartedAt {} -> {}, {}")
    evidence = template.format(was.get("restart_count"), now.get("restart_count"), was.get("started_at"),
                               now.get("started_at"), now.get("status"))
    return {"name": name, "passed": False, "evidence": evidence}


def smoke_verdict(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """``inputs``: ``chat`` and ``ready`` (http_probe), ``llm`` (the health script's command result), ``llm_stat``
    (its stat), ``llm_script`` (its path, empty when none), ``stayed`` (container_keeper inspect), ``container``
    (the container recorded when it became ready), ``check_mode``. Returns ``ok``, ``checks`` and ``evidence``."""
    if not isinstance(inputs, Mapping):
        raise AnsibleFilterError("smoke_verdict expects a mapping of the smoke probes' results")
    if inputs.get("check_mode"):
        return {"ok": True, "checks": [], "evidence": "check mode: nothing probed"}
    checks = [chat_check(inputs.get("chat") or {}), ready_check(inputs.get("ready") or {}),
              llm_check(inputs.get("llm"), inputs.get("llm_stat"), str(inputs.get("llm_script") or "")),
              stayed_check(inputs.get("stayed"), inputs.get("container") or {})]
    evidence = "; ".join(f"{c['name']} | {'pass' if c['passed'] else 'FAIL'} | {c['evidence'].strip()}" for c in checks)
    failed = [c for c in checks if not c["passed"]]
    return {"ok": not failed, "checks": checks, "evidence": evidence,
            "failure": "; ".join(f"{c['name']}: {c['evidence'].strip()}" for c in failed)}


class FilterModule:
    """smoke_verdict."""

    def filters(self) -> dict[str, Any]:
        return {"smoke_verdict": smoke_verdict}
