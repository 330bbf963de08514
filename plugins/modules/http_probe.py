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
  - Meant for smoke tests; it never changes anything, so it never reports a change.
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
  headers:
    description: Extra request headers.
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
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The probe is a read-only request, so check mode sends it too.
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
from urllib.error import HTTPError

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url


def judge(status, payload, status_codes, expect_json, expect_nonempty):
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


def backoff_delays(retries, delay, max_delay):
    """Seconds to wait after each failed try but the last."""
    return [min(delay * (2 ** i), max_delay) for i in range(max(retries - 1, 0))]


def probe_once(module):
    params = module.params
    headers = dict(params['headers'] or {})
    data = None
    if params['body'] is not None:
        data = json.dumps(params['body'])
        headers.setdefault('content-type', 'application/json')
    try:
        response = open_url(params['url'], method=params['method'], headers=headers, data=data,
                            timeout=params['timeout'], validate_certs=True)
        status, raw = response.getcode(), response.read()
    except HTTPError as exc:
        status, raw = exc.code, exc.read() if hasattr(exc, 'read') else b''
    except Exception as exc:  # any transport failure is an answer too: "none came"
        return -1, None, '', f'no answer: {exc}'
    text = raw.decode('utf-8', 'replace') if isinstance(raw, bytes) else str(raw)
    try:
        payload = json.loads(text) if text.strip() else None
    except ValueError:
        payload = None
    return status, payload, text, ''


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type='str', required=True),
            method=dict(type='str', choices=['GET', 'POST'], default='GET'),
            headers=dict(type='dict', default={}),
            body=dict(type='raw'),
            timeout=dict(type='float', default=10),
            status_code=dict(type='list', elements='int', default=[200]),
            expect_json=dict(type='dict', default={}),
            expect_nonempty=dict(type='list', elements='str', default=[]),
            retries=dict(type='int', default=5),
            delay=dict(type='float', default=1),
            max_delay=dict(type='float', default=15),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if params['retries'] < 1:
        module.fail_json(msg='retries must be at least 1')
    delays = backoff_delays(params['retries'], params['delay'], params['max_delay'])
    attempts = []
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
        module.fail_json(msg='{} {}: {} after {} tries; last answer: {}'.format(
            params['method'], params['url'], '; '.join(problems), len(attempts), text[:500].strip() or '(empty)'),
            **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
