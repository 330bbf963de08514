"""http_probe's judging and back-off, as tables."""
from __future__ import annotations

import pytest

from ansible_collections.ledgermind.migrations.plugins.modules import http_probe


@pytest.mark.parametrize(
    ("status", "payload", "expect_json", "expect_nonempty", "problems"),
    [
        (200, {"ok": True}, {"ok": True}, [], []),
        (503, {"ok": False}, {"ok": True}, [], ["status 503, expected 200", "ok is false, expected true"]),
        (200, {"db_ok": True}, {"ok": True}, [], ["ok is missing"]),
        (200, {"content": ""}, {}, ["content"], ["content is empty or missing"]),
        (200, {"content": "hi"}, {}, ["content"], []),
        (200, None, {}, ["content"], ["the answer is not a JSON object"]),
        (200, "text", {}, [], []),
    ],
)
def test_judge(status, payload, expect_json, expect_nonempty, problems):
    assert http_probe.judge(status, payload, [200], expect_json, expect_nonempty) == problems


@pytest.mark.parametrize(
    ("retries", "delay", "max_delay", "delays"),
    [(1, 1, 10, []), (4, 1, 10, [1, 2, 4]), (6, 1, 5, [1, 2, 4, 5, 5]), (3, 0.5, 10, [0.5, 1.0])],
)
def test_backoff_delays(retries, delay, max_delay, delays):
    assert http_probe.backoff_delays(retries, delay, max_delay) == delays


def test_transport_options_are_ansibles_own_and_headers_are_never_logged():
    spec = http_probe.argument_spec()
    assert {'validate_certs', 'ca_path', 'client_cert', 'use_proxy'} <= set(spec)
    assert spec['headers']['no_log'] is True


class _Spent:
    """fetch_url's answer to an HTTP error: already read, so read() gives nothing."""

    def read(self):
        return b''


def test_an_http_errors_body_is_judged(monkeypatch):
    class Module:
        params = {'headers': {}, 'body': None, 'url': 'http://x/ready', 'method': 'GET', 'timeout': 1,
                  'ca_path': None}
    monkeypatch.setattr(http_probe, 'fetch_url', lambda *a, **k: (_Spent(), {'status': 503, 'body': b'{"ok": false}'}))
    assert http_probe.probe_once(Module()) == (503, {'ok': False}, '{"ok": false}', '')
    monkeypatch.setattr(http_probe, 'fetch_url', lambda *a, **k: (None, {'status': -1, 'msg': 'refused'}))
    assert http_probe.probe_once(Module())[3] == 'no answer: refused'
