"""galaxy.yml: the declared dependencies are the collections the tree uses, and site files do not ship.

Nothing is built: the collections are read from the roles, playbooks, plugins and Molecule scenarios
(task actions and ``module_defaults`` groups, filters, tests and lookups in templates, roles and
playbooks named by FQCN, Python imports), and ``build_ignore`` is matched the way
``ansible-galaxy collection build`` matches it (fnmatch on the path relative to the root; an ignored
directory takes everything under it).
"""
from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
GALAXY = yaml.safe_load((REPO / "galaxy.yml").read_text())
SELF = f"{GALAXY['namespace']}.{GALAXY['name']}"
# Part of ansible-core, never a dependency.
CORE = {"ansible.builtin", "ansible.legacy"}
SCANNED = ("roles", "playbooks", "plugins", "molecule")

NAME = r"[a-z][a-z0-9_]*"
FQCN = re.compile(rf"^(?:group/)?({NAME}\.{NAME})\.{NAME}$")
# In a template: `| ns.coll.filter`, `is ns.coll.test`, `lookup('ns.coll.x')`, `query("ns.coll.x")`.
IN_TEMPLATE = re.compile(
    rf"""(?:\|\s*|\bis\s+(?:not\s+)?|\b(?:lookup|query|q)\(\s*['"])({NAME}\.{NAME})\.{NAME}\b"""
)
# Values that name a role or playbook: include_role/import_role `name`, `roles:` entries, import_playbook.
NAMING_KEYS = {"name", "role", "roles", "import_playbook", "ansible.builtin.import_playbook"}
PY_IMPORT = re.compile(rf"^\s*(?:from|import)\s+ansible_collections\.({NAME})\.({NAME})\b", re.MULTILINE)

# What ansible-galaxy's build always leaves out (galaxy.yml becomes MANIFEST.json).
BUILDER_DEFAULTS = ("MANIFEST.json", "FILES.json", "galaxy.yml", "galaxy.yaml", ".git", "*.pyc", "*.retry",
                    "tests/output", f"{GALAXY['namespace']}-{GALAXY['name']}-*.tar.gz")

# Site and development files that must stay out of the artifact.
SITE_FILES = (
    "inventories/prod/hosts.yml", "inventories/staging/hosts.yml", "inventories/awx/hosts.yml",
    "inventories/awx/group_vars/all/vault.yml", "inventories/local/hosts.yml", "ansible.cfg",
    "execution-environment.yml", "docs/bench.png", "molecule/default/molecule.yml", ".config/molecule/config.yml",
    "tests/unit/test_galaxy.py", "tests/integration/conftest.py", "tests/output/junit.xml", "scripts/stack",
    "scripts/bench/ours.py", "examples/backend/Dockerfile", "Makefile", "requirements-dev.txt", "pyproject.toml",
    ".ansible-lint", ".yamllint", ".ci/run", ".ansible/collections", ".venv/bin/python", ".stack/data/PG_VERSION",
    ".build/collections/ansible_collections", "results/bench.json", "backups/x.dump", "reports/x.md",
    "ledgermind-migrations-0.1.0.tar.gz",
)
# What a user of the artifact needs: the content, its docs, and what meta/execution-environment.yml reads.
SHIPPED = (
    "README.md", "LICENSE", "requirements.yml", "requirements.txt", "bindep.txt",
    "meta/runtime.yml", "meta/execution-environment.yml", "docs/run-record.md",
    "docs/runbook/tokens_migration_checklist.md", "changelogs/changelog.yaml", "changelogs/config.yaml",
    "inventories/fleet_example/hosts.yml", "playbooks/migrate_tokens.yml", "playbooks/vars/fleet_rollout.yml",
    "roles/pg_backup/tasks/main.yml", "plugins/modules/pg_column_type.py", "plugins/filter/libpq_url.yml",
    "plugins/module_utils/_libpq.py", "plugins/doc_fragments/connection.py",
)


class _AnsibleYamlLoader(yaml.SafeLoader):
    """Loads Ansible's YAML tags as the plain values they wrap."""


_AnsibleYamlLoader.add_multi_constructor("!", lambda loader, suffix, node: (
    loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode)
    else loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode)
    else loader.construct_mapping(node)))


def _collections_in_yaml(data: Any, key: str | None = None) -> Iterator[str]:
    if isinstance(data, dict):
        for k, v in data.items():
            if isinstance(k, str) and (match := FQCN.match(k)):
                yield match.group(1)
            yield from _collections_in_yaml(v, k if isinstance(k, str) else None)
    elif isinstance(data, list):
        for item in data:
            yield from _collections_in_yaml(item, key)
    elif isinstance(data, str):
        yield from IN_TEMPLATE.findall(data)
        if key in NAMING_KEYS and (match := FQCN.match(data.strip())):
            yield match.group(1)


def collections_used(root: Path = REPO) -> dict[str, set[str]]:
    """Every other collection the scanned trees use, with the files that use it."""
    used: dict[str, set[str]] = {}
    for top in SCANNED:
        for path in sorted((root / top).rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts:
                continue
            found: set[str] = set()
            if path.suffix in (".yml", ".yaml"):
                for document in yaml.load_all(path.read_text(), Loader=_AnsibleYamlLoader):
                    found.update(_collections_in_yaml(document))
            elif path.suffix == ".j2":
                found.update(IN_TEMPLATE.findall(path.read_text()))
            elif path.suffix == ".py":
                found.update(f"{ns}.{coll}" for ns, coll in PY_IMPORT.findall(path.read_text()))
            for collection in found - CORE - {SELF}:
                used.setdefault(collection, set()).add(str(path.relative_to(root)))
    return used


def ignored(relative: str, patterns: list[str] | None = None) -> bool:
    """Whether ansible-galaxy's build leaves this path out (its defaults plus build_ignore)."""
    if patterns is None:
        patterns = GALAXY.get("build_ignore") or []
    patterns = [*BUILDER_DEFAULTS, *patterns]
    parts = relative.split("/")
    return any(fnmatch.fnmatch("/".join(parts[:depth]), pattern)
               for depth in range(1, len(parts) + 1) for pattern in patterns)


def test_dependencies_are_the_collections_the_tree_uses():
    used = collections_used()
    declared = set(GALAXY.get("dependencies") or {})
    assert declared == set(used), (
        f"galaxy.yml declares {sorted(declared)}; the tree uses "
        + "; ".join(f"{c} ({', '.join(sorted(files))})" for c, files in sorted(used.items()))
    )


def test_requirements_yml_lists_the_same_collections_and_ranges():
    requirements = yaml.safe_load((REPO / "requirements.yml").read_text())
    listed = {entry["name"]: entry["version"] for entry in requirements["collections"]}
    assert listed == GALAXY["dependencies"]


@pytest.mark.parametrize(("text", "expected"), [
    ("- name: x\n  community.docker.docker_compose_v2:\n    state: present\n", {"community.docker"}),
    ("- hosts: all\n  module_defaults:\n    group/awx.awx.controller: {}\n", {"awx.awx"}),
    ("x: \"{{ a | community.general.to_json }}\"\n", {"community.general"}),
    ("x: \"{{ lookup('community.hashi_vault.hashi_vault', 'p') }}\"\n", {"community.hashi_vault"}),
    ("x: \"{{ a is ansible.utils.ipaddr }}\"\n", {"ansible.utils"}),
    ("- ansible.builtin.include_role:\n    name: ns.other.role\n", {"ns.other"}),
    ("- hosts: all\n  roles: [ns.other.role]\n", {"ns.other"}),
    ("- ansible.builtin.import_playbook: ns.other.playbook\n", {"ns.other"}),
    ("x: !unsafe \"{{ a | ns.other.f }}\"\n", {"ns.other"}),
    # Not uses: hostnames, file names, prose, this collection and ansible-core.
    ("hosts: [backend-1.prod.example.internal]\nfile: report.tar.gz\nname: Read ml_features.tokens.type\n", set()),
    ("- ledgermind.migrations.pg_column_type: {}\n- ansible.builtin.debug: {}\n", set()),
])
def test_the_scan_finds_uses_and_only_uses(tmp_path, text, expected):
    (tmp_path / "roles" / "r" / "tasks").mkdir(parents=True)
    (tmp_path / "roles" / "r" / "tasks" / "main.yml").write_text(text)
    assert set(collections_used(tmp_path)) == expected


def test_a_python_import_of_another_collection_counts(tmp_path):
    (tmp_path / "plugins" / "modules").mkdir(parents=True)
    (tmp_path / "plugins" / "modules" / "m.py").write_text(
        '"""Mentions community.postgresql in prose only."""\n'
        "from ansible_collections.community.postgresql.plugins.module_utils.postgres import connect\n"
        "from ansible_collections.ledgermind.migrations.plugins.module_utils import _libpq\n")
    assert collections_used(tmp_path) == {"community.postgresql": {"plugins/modules/m.py"}}


@pytest.mark.parametrize("path", SITE_FILES)
def test_site_and_development_files_do_not_ship(path):
    assert ignored(path), f"{path} would ship: add it to galaxy.yml's build_ignore"


@pytest.mark.parametrize("path", SHIPPED)
def test_the_collection_ships(path):
    assert not ignored(path), f"{path} is needed in the artifact but galaxy.yml's build_ignore leaves it out"
    assert (REPO / path).exists(), path


def test_the_matching_is_the_builders():
    # An ignored directory takes everything under it; a pattern matches whole relative paths only.
    assert ignored("molecule/default/molecule.yml", ["molecule"])
    assert not ignored("roles/x/molecule/y.yml", ["molecule"])
    assert ignored("docs/bench.png", ["docs/*.png"])
