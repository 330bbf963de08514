"""The AWX objects as code (inventories/awx/group_vars/all), loaded the way Ansible reads them.

``!unsafe`` marks the AWX-side Jinja (injector templates, inventory variables) that Ansible must not
render while applying the data; here it loads as the plain string AWX receives.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
AWX_DATA = REPO / "inventories" / "awx" / "group_vars" / "all"


class _AnsibleYamlLoader(yaml.SafeLoader):
    pass


_AnsibleYamlLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def load_yaml(path: Path) -> Any:
    with path.open() as handle:
        return yaml.load(handle, Loader=_AnsibleYamlLoader)


@pytest.fixture(scope="session")
def awx_data() -> dict[str, Any]:
    """Every variable of inventories/awx/group_vars/all, merged."""
    data: dict[str, Any] = {}
    for path in sorted(AWX_DATA.glob("*.yml")):
        data.update(load_yaml(path) or {})
    return data


@pytest.fixture(scope="session")
def yaml_loader():
    return load_yaml
