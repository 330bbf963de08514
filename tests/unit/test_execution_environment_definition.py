"""execution-environment.yml and meta/ee-requirements.txt, read offline (issue 12 §2).

The EE installs the collections of requirements.yml (not the whole ``ansible`` package) on a pinned base image,
this collection from its built tarball (never the source tree), and the Python packages our plugins import; other
EEs get those packages unpinned from meta/ee-requirements.txt through meta/execution-environment.yml. Building the
image needs a registry; tests/integration/awx/test_execution_environment.py writes its build context.
"""
from __future__ import annotations

import ast
import fnmatch
import re
import sys
from pathlib import Path

import pytest
import yaml
from ansible_builder.user_definition import UserDefinition
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
EE_FILE = REPO / "execution-environment.yml"
EE = yaml.safe_load(EE_FILE.read_text())
GALAXY = yaml.safe_load((REPO / "galaxy.yml").read_text())
META_EE = yaml.safe_load((REPO / "meta" / "execution-environment.yml").read_text())
TARBALL = f"{GALAXY['namespace']}-{GALAXY['name']}-{GALAXY['version']}.tar.gz"
# Import name -> distribution, where they differ.
DISTRIBUTION = {"psycopg2": "psycopg2-binary", "yaml": "pyyaml"}
# community.docker modules that talk to the engine's API through requests (docker_compose_v2 runs the CLI).
DOCKER_API_MODULES = re.compile(
    r"community\.docker\.docker_(host_info|image_info|image_tag|container|container_info|image|network|volume)\b")


def requirements(path: Path) -> list[Requirement]:
    found = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            found.append(Requirement(line))
    return found


def names(path: Path) -> set[str]:
    return {r.name.lower() for r in requirements(path)}


def plugin_imports(root: Path = REPO / "plugins") -> dict[str, set[str]]:
    """Top-level modules the plugins import (anywhere in a file, guarded or not), with the files importing them."""
    found: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                found.setdefault(module.split(".")[0], set()).add(str(path.relative_to(root)))
    return found


def third_party(imports: dict[str, set[str]]) -> dict[str, set[str]]:
    own = {"ansible", "ansible_collections", "__future__"}
    return {m: files for m, files in imports.items() if m not in own and m not in sys.stdlib_module_names}


def test_ansible_builder_accepts_the_definition():
    definition = UserDefinition(str(EE_FILE))
    definition.validate()
    assert definition.version == 3


def test_the_base_image_is_pinned():
    name = EE["images"]["base_image"]["name"]
    reference, _, digest = name.partition("@")
    repository, _, tag = reference.rpartition(":")
    assert repository and "/" in repository and tag, f"{name}: no tag"
    assert tag not in ("latest", "rawhide", "stable"), f"{name}: a moving tag"
    assert not digest or re.fullmatch(r"sha256:[0-9a-f]{64}", digest), f"{name}: not a sha256 digest"


def test_collections_come_from_requirements_yml_not_the_ansible_package():
    assert EE["dependencies"]["galaxy"] == "requirements.yml"
    listed = yaml.safe_load((REPO / "requirements.yml").read_text())["collections"]
    assert {c["name"]: c["version"] for c in listed} == GALAXY["dependencies"]
    python = REPO / EE["dependencies"]["python"]
    assert "ansible" not in names(python), f"{python.name} would install the whole ansible package in the EE"


def test_ansible_core_and_runner_are_pinned_and_agree_with_requirements_txt():
    core = Requirement(EE["dependencies"]["ansible_core"]["package_pip"])
    runner = Requirement(EE["dependencies"]["ansible_runner"]["package_pip"])
    assert str(core.specifier).startswith("==") and str(runner.specifier).startswith("==")
    pinned = {r.name.lower(): r for r in requirements(REPO / EE["dependencies"]["python"])}
    if "ansible-core" in pinned:
        assert pinned["ansible-core"].specifier == core.specifier
    dev = {r.name.lower(): r for r in requirements(REPO / "requirements-dev.txt")}
    assert dev["ansible-runner"].specifier == runner.specifier


def test_the_collection_is_installed_from_its_built_tarball():
    files = EE.get("additional_build_files", [])
    sources = [f["src"] for f in files]
    tarballs = [f for f in files if f["src"].endswith(".tar.gz")]
    assert [Path(f["src"]).name for f in tarballs] == [TARBALL], sources
    # Nothing of the source tree is copied in.
    for src in sources:
        top = Path(src).parts[0]
        assert top not in ("plugins", "roles", "playbooks", "meta", "galaxy.yml", "README.md", ".", REPO.name), src
    installed = f"/build/{tarballs[0]['dest'].strip('/')}/{TARBALL}"
    galaxy_steps = " ".join(EE["additional_build_steps"].get("append_galaxy", []))
    assert "ansible-galaxy collection install" in galaxy_steps and installed in galaxy_steps, galaxy_steps
    final_steps = " ".join(EE["additional_build_steps"].get("append_final", []))
    assert "COPY" not in final_steps and "ansible-galaxy" not in final_steps


def test_consumers_get_unpinned_requirements():
    assert META_EE["dependencies"]["python"] == "meta/ee-requirements.txt"
    assert (REPO / META_EE["dependencies"]["system"]).is_file()
    for requirement in requirements(REPO / "meta" / "ee-requirements.txt"):
        assert not requirement.specifier and not requirement.url, f"{requirement}: pinned"
    # It ships: build_ignore leaves meta/ alone.
    patterns = GALAXY.get("build_ignore") or []
    for prefix in ("meta", "meta/ee-requirements.txt", "meta/execution-environment.yml"):
        assert not any(fnmatch.fnmatch(prefix, p) for p in patterns), prefix


def test_every_package_for_consumers_is_pinned_for_our_ee():
    pinned = {r.name.lower(): r for r in requirements(REPO / EE["dependencies"]["python"])}
    for name in names(REPO / "meta" / "ee-requirements.txt"):
        assert name in pinned and str(pinned[name].specifier).startswith("=="), name


def test_every_python_import_of_the_plugins_is_an_ee_requirement():
    wanted = names(REPO / "meta" / "ee-requirements.txt")
    missing = {m: files for m, files in third_party(plugin_imports()).items()
               if DISTRIBUTION.get(m, m).lower().replace("_", "-") not in wanted}
    assert not missing, f"meta/ee-requirements.txt lacks {missing}"


def test_the_docker_api_modules_requirement_is_listed():
    """community.docker's API modules need requests where they run; docker_compose_v2 needs only the CLI."""
    uses = [p for p in (REPO / "roles").rglob("*.yml") if DOCKER_API_MODULES.search(p.read_text())]
    if uses:
        assert "requests" in names(REPO / "meta" / "ee-requirements.txt"), uses
        assert "requests" in names(REPO / "requirements.txt"), uses


@pytest.mark.parametrize(("source", "expected"), [
    ("import psycopg2\n", {"psycopg2"}),
    ("try:\n    from psycopg2 import sql\nexcept ImportError:\n    pass\n", {"psycopg2"}),
    ("def f():\n    import requests.adapters\n", {"requests"}),
    ("import os, json\nfrom ansible.module_utils.basic import AnsibleModule\n", set()),
    ("from ansible_collections.ledgermind.migrations.plugins.module_utils import _libpq\n", set()),
    ("from __future__ import annotations\nfrom . import sibling\n", set()),
])
def test_the_import_scan_finds_third_party_imports_only(tmp_path, source, expected):
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "m.py").write_text(source)
    assert set(third_party(plugin_imports(tmp_path))) == expected


def test_the_import_scan_sees_the_real_plugins():
    assert "psycopg2" in third_party(plugin_imports())
