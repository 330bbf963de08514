"""The AWX objects as code (inventories/awx/group_vars/all), loaded the way Ansible reads them.

``awx_data`` is every variable rendered by Ansible itself for awx_configure.yml (awx_model.load_awx_data): vault
placeholders filled in, the notification switch applied, ``!unsafe`` AWX-side Jinja (injector templates, inventory
variables, notification messages) left as the text AWX receives. ``yaml_loader`` reads a file as it is written.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from awx_model import load_awx_data

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
    """Every variable of inventories/awx/group_vars/all, rendered as awx_configure.yml gets it."""
    return load_awx_data()


@pytest.fixture(scope="session")
def awx_data_as_written() -> dict[str, Any]:
    """The same variables as they are written (Jinja unrendered)."""
    data: dict[str, Any] = {}
    for path in sorted(AWX_DATA.glob("*.yml")):
        data.update(load_yaml(path) or {})
    return data


@pytest.fixture(scope="session")
def yaml_loader():
    return load_yaml
