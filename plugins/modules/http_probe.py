#!/usr/bin/python
# Copyright (c) 2025, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: http_probe
short_description: Probe an HTTP endpoint until it answers as expected, with exponential back-off
version_added: 0.1.0
description:
  - Sends one request (GET, or POST with a JSON body) and judges the answer by its status code and, optionally,
    by JSON keys that must equal given values or must be non-empty.
  - Retries a failed probe with exponential back-off (O(delay), doubled after each try up to O(max_delay))
    until it passes or O(retries) tries are spent, then fails saying what came back the last time.
  - Meant for smoke tests; it never reports a change. Transport options (O(validate_certs), O(ca_path), client
    certificates, proxies) are Ansible's own (C(ansible.builtin.url)), as M(ansible.builtin.uri) has them.
  - In check mode a GET is sent (it reads only); a POST is not, and the result says what would have been sent.
author:
  - LedgerMind SRE (@ledgermind)
options:
  url:
    description: URL to request.
    type: str
    required: true
  method:
    description: HTTP method.
    type: str
    choices: [GET, POST]
    default: GET
  ca_path:
    description: PEM file of the CA certificates that verify the server's certificate (default the system's).
    type: path
  headers:
    description: Extra request headers. Never logged (they may carry a token).
    type: dict
    default: {}
  body:
    description: JSON body, sent as C(application/json); it does not change O(method).
    type: raw
  timeout:
    description: Seconds one request may take.
    type: float
    default: 10
  status_code:
    description: Status codes that pass.
    type: list
    elements: int
    default: [200]
  expect_json:
    description: Keys of the JSON answer and the values they must have.
    type: dict
    default: {}
  expect_nonempty:
    description: Keys of the JSON answer that must be present and non-empty.
    type: list
    elements: str
    default: []
  retries:
    description: Tries at most.
    type: int
    default: 5
  delay:
    description: Seconds to wait after the first failed try; doubles after each further one.
    type: float
    default: 1
  max_delay:
    description: Longest wait between two tries, in seconds.
    type: float
    default: 15
extends_documentation_fragment:
  - ansible.builtin.url
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: A GET (read-only) is sent in check mode too; a POST is not.
  diff_mode:
    support: none
  platform:
    platforms: posix
seealso:
  - module: ansible.builtin.uri
'''

EXAMPLES = r'''
- name: Smoke test the chat endpoint in stub mode
  ledgermind.migrations.http_probe:
    url: http://127.0.0.1:18080/agent/chat
    method: POST
    headers:
      x-test-mode: stub
    body:
      messages: [{role: user, content: test}]
    expect_nonempty: [content]

- name: Readiness
  ledgermind.migrations.http_probe:
    url: http://127.0.0.1:18080/ready
    expect_json: {ok: true, llm_ok: true, db_ok: true}
    retries: 6
    delay: 1
'''

RETURN = r'''
status:
  description: Status code of the last answer (-1 when no answer came).
  returned: always
  type: int
  sample: 200
json:
  description: The last answer parsed as JSON, when it was JSON.
  returned: always
  type: raw
  sample: {ok: true, db_ok: true, llm_ok: true}
body:
  description: The last answer's body as text, cut at 2000 characters.
  returned: always
  type: str
attempts:
  description: One entry per try, with its status, its problem (empty when it passed) and its duration.
  returned: always
  type: list
  elements: dict
  sample: [{status: 503, problem: "db_ok is false, expected true", seconds: 0.01}]
passed:
  description: Whether the last try passed.
  returned: always
  type: bool
'''

import json
import time
import typing as t

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import fetch_url, url_argument_spec

from ansible_collections.ledgermind.migrations.plugins.module_utils._errors import fail
from ansible_collections.ledgermind.migrations.plugins.module_utils._retry import backoff_delays


def judge(status: int, payload: t.Any, status_codes: list[int], expect_json: dict[str, t.Any],
          expect_nonempty: list[str]) -> list[str]:
    """The reasons an answer fails (an empty list when it passes)."""
    problems = []
    if status not in status_codes:
        problems.append('status {}, expected {}'.format(status, ' or '.join(str(c) for c in status_codes)))
    if (expect_json or expect_nonempty) and not isinstance(payload, dict):
        problems.append('the answer is not a JSON object')
        return problems
    for key, wanted in (expect_json or {}).items():
        if key not in payload:
            problems.append(f'{key} is missing')
        elif payload[key] != wanted:
            problems.append(f'{key} is {json.dumps(payload[key])}, expected {json.dumps(wanted)}')
    for key in expect_nonempty or []:
        if key not in payload or payload[key] in (None, '', [], {}):
            problems.append(f'{key} is empty or missing')
    return problems


def probe_once(module: AnsibleModule) -> tuple[int, t.Any, str, str]:
    """One request: its status, the answer as JSON (or None), as text, and the transport problem (or '')."""
    params = module.params
    headers = dict(params['headers'] or {})
    data = None
    if params['body'] is not None:
        data = json.dumps(params['body'])
        headers.setdefault('content-type', 'application/json')
    response, info = fetch_url(module, params['url'], data=data, headers=headers, method=params['method'],
                               timeout=params['timeout'], ca_path=params['ca_path'])
    status = int(info.get('status', -1))
    if status == -1:
        return -1, None, '', 'no answer: {}'.format(info.get('msg') or 'unknown error')
    # On an HTTP error fetch_url has already read the answer into info['body'] (the response it returns is spent).
    raw = info['body'] if 'body' in info else (response.read() if response is not None else b'')
    text = raw.decode('utf-8', 'replace') if isinstance(raw, bytes) else str(raw or '')
    try:
        payload = json.loads(text) if text.strip() else None
    except ValueError:
        payload = None
    return status, payload, text, ''


def argument_spec() -> dict[str, t.Any]:
    spec = url_argument_spec()
    # url_argument_spec's own url is a plain str; headers may carry a token.
    spec.update(
        url=dict(type='str', required=True),
        ca_path=dict(type='path'),
        method=dict(type='str', choices=['GET', 'POST'], default='GET'),
        headers=dict(type='dict', default={}, no_log=True),
        body=dict(type='raw'),
        timeout=dict(type='float', default=10),
        status_code=dict(type='list', elements='int', default=[200]),
        expect_json=dict(type='dict', default={}),
        expect_nonempty=dict(type='list', elements='str', default=[]),
        retries=dict(type='int', default=5),
        delay=dict(type='float', default=1),
        max_delay=dict(type='float', default=15),
    )
    return spec


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    if params['retries'] < 1:
        fail(module, 'retries must be at least 1')
    if module.check_mode and params['method'] != 'GET':
        module.exit_json(changed=False, skipped=True, status=-1, json=None, body='', attempts=[], passed=True,
                         msg='check mode: would {} {} (not sent: it is not read-only)'.format(
                             params['method'], params['url']))
    delays = backoff_delays(params['retries'], params['delay'], params['max_delay'])
    attempts: list[dict[str, t.Any]] = []
    status, payload, text, problems = -1, None, '', []
    for attempt in range(params['retries']):
        started = time.monotonic()
        status, payload, text, transport = probe_once(module)
        problems = [transport] if transport else judge(
            status, payload, params['status_code'], params['expect_json'], params['expect_nonempty'])
        attempts.append(dict(status=status, problem='; '.join(problems), seconds=round(time.monotonic() - started, 3)))
        if not problems:
            break
        if attempt < len(delays):
            time.sleep(delays[attempt])
    result = dict(changed=False, status=status, json=payload, body=text[:2000], attempts=attempts,
                  passed=not problems)
    if problems:
        fail(module, '{} {}: {} after {} tries; last answer: {}'.format(
            params['method'], params['url'], '; '.join(problems), len(attempts), text[:500].strip() or '(empty)'),
            **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
