"""pytest plugin for `make matrix` (scripts/matrix loads it with ``-p``): ansible-core before 2.19 has no
``ansible.module_utils.testing.patch_module_args``, which tests/unit/plugins/modules/conftest.py imports.

On those versions this registers a stand-in with the same contract, through the mechanism those versions read
(``basic._ANSIBLE_ARGS``, the JSON that AnsibleModule parses). It changes only how the tests hand arguments
to a module, never the modules' own code path; on 2.19 and later it does nothing.
"""
from __future__ import annotations

import contextlib
import json
import sys
import types
import typing as t
from unittest import mock

try:
    import ansible.module_utils.testing  # noqa: F401  (ansible-core >= 2.19)
except ImportError:
    from ansible.module_utils import basic

    @contextlib.contextmanager
    def patch_module_args(args: dict[str, t.Any] | None = None) -> t.Iterator[None]:
        if not isinstance(args, (dict, type(None))):
            raise TypeError("The `args` arg must be a dict or None.")
        payload = json.dumps({"ANSIBLE_MODULE_ARGS": args or {}}).encode()
        with mock.patch.object(basic, "_ANSIBLE_ARGS", payload):
            yield

    testing = types.ModuleType("ansible.module_utils.testing")
    testing.__doc__ = "Stand-in from tests/matrix/compat_module_args.py (ansible-core < 2.19)."
    testing.patch_module_args = patch_module_args  # type: ignore[attr-defined]
    sys.modules["ansible.module_utils.testing"] = testing
    import ansible.module_utils

    ansible.module_utils.testing = testing
