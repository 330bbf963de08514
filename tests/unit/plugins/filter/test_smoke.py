"""The smoke tests' verdict, check by check, from the probes' registered results."""
from __future__ import annotations

import typing as t

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.ledgermind.migrations.plugins.filter.smoke import smoke_verdict

CHAT = {"passed": True, "json": {"content": "hello"}, "attempts": [{"problem": "connection refused"}, {}]}
READY = {"passed": True, "json": {"ok": True, "llm_ok": True, "db_ok": True}, "attempts": [{}]}
LLM = {"rc": 0, "stdout": "LLM: healthy\n", "stderr": "", "attempts": 1}
WAS = {"container_id": "a" * 64, "restart_count": 0, "started_at": "T1"}
STAYED = {"containers": ["a" * 64], "container": {"restart_count": 0, "started_at": "T1", "running": True}}


def inputs(**changes: t.Any) -> dict[str, t.Any]:
    base = {"chat": CHAT, "ready": READY, "llm": LLM, "llm_stat": {"stat": {"exists": True, "executable": True}},
            "llm_script": "/opt/llm-health.sh", "stayed": STAYED, "container": WAS, "check_mode": False}
    base.update(changes)
    return base


def test_all_pass_with_what_came_back() -> None:
    report = smoke_verdict(inputs())
    assert report["ok"] is True and report["failure"] == ""
    assert "chat (stub mode) | pass | content: hello; failed tries: try 1 of 2 (connection refused)" in \
        report["evidence"]
    assert "ready | pass | ok=True llm_ok=True db_ok=True" in report["evidence"]
    assert "container aaaaaaaaaaaa up since T1, RestartCount 0" in report["evidence"]


@pytest.mark.parametrize(("changes", "name", "words"), [
    ({"chat": {"passed": False, "msg": "HTTP 500"}}, "chat (stub mode)", "HTTP 500"),
    ({"ready": {"passed": False, "msg": "db_ok is false"}}, "ready", "db_ok is false"),
    ({"llm": {"rc": 1, "stdout": "LLM: down", "stderr": "boom", "attempts": 3}}, "LLM health script",
     "exit 1: LLM: down boom (after 2 failed tries)"),
    ({"llm": {"skipped": True}, "llm_stat": {"stat": {"exists": False}}}, "LLM health script", "is missing"),
    ({"llm": {"skipped": True}, "llm_stat": {"stat": {"exists": True, "executable": False, "mode": "0644"}}},
     "LLM health script", "not executable (mode 0644)"),
    # A backend brought back by its restart policy answers the next try: the restart is caught.
    ({"stayed": dict(STAYED, container={"restart_count": 1, "started_at": "T2", "running": True, "status": "up"})},
     "container stayed up", "RestartCount 0 -> 1, StartedAt T1 -> T2"),
    ({"stayed": dict(STAYED, containers=["b" * 64])}, "container stayed up", "replaced after it became ready"),
])
def test_each_failure_names_its_check(changes: dict[str, t.Any], name: str, words: str) -> None:
    report = smoke_verdict(inputs(**changes))
    assert report["ok"] is False
    failed = [c for c in report["checks"] if not c["passed"]]
    assert [c["name"] for c in failed] == [name] and words in failed[0]["evidence"], failed
    assert report["failure"].startswith(name + ": ")


def test_no_script_and_no_container_are_skipped_not_failed() -> None:
    report = smoke_verdict(inputs(llm={"skipped": True}, llm_script="", stayed={"skipped": True}))
    assert report["ok"] is True
    assert "skipped (no script configured)" in report["evidence"]
    assert "skipped (no deployed container recorded)" in report["evidence"]


def test_an_inspection_that_failed_is_not_checked() -> None:
    report = smoke_verdict(inputs(stayed={"msg": "docker: not found", "failed": True}))
    assert report["ok"] is True and "not checked (docker: not found)" in report["evidence"]


def test_check_mode_probes_nothing() -> None:
    expected = {"ok": True, "checks": [], "evidence": "check mode: nothing probed"}
    assert smoke_verdict(inputs(check_mode=True)) == expected


def test_wrong_input() -> None:
    with pytest.raises(AnsibleFilterError):
        smoke_verdict("nope")  # type: ignore[arg-type]
