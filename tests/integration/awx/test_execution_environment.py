"""The execution environment definition: `ansible-builder create` writes its build context offline.

Building the image needs a container engine and registries; what can be checked here is that the
definition is valid ansible-builder v3, that the context holds the requirements and this collection,
that the collection in it installs and its modules load, and that meta/execution-environment.yml
gives an EE that installs the collection its Python and system dependencies.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300, **kwargs)


def test_ansible_builder_create_writes_the_build_context(tmp_path):
    context = tmp_path / "context"
    out = run([str(BIN / "ansible-builder"), "create", "-f", str(REPO / "execution-environment.yml"),
               "-c", str(context), "--output-filename", "Containerfile"], cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "No matches" not in out.stdout + out.stderr and "does not exist" not in out.stdout + out.stderr

    containerfile = (context / "Containerfile").read_text()
    definition = yaml.safe_load((REPO / "execution-environment.yml").read_text())
    assert definition["version"] == 3
    assert f"FROM {definition['images']['base_image']['name']}" in containerfile or \
        definition["images"]["base_image"]["name"] in containerfile
    assert "ansible-galaxy collection install --no-deps -p /usr/share/ansible/collections" in containerfile
    build = context / "_build"
    assert (build / "requirements.txt").read_text() == (REPO / "requirements.txt").read_text()
    assert (build / "bindep.txt").read_text() == (REPO / "bindep.txt").read_text()

    # The collection as the image installs it.
    collection = build / "ledgermind_migrations"
    for path in ("galaxy.yml", "meta/runtime.yml", "plugins/modules/pg_column_type.py",
                 "roles/migration_rollback/tasks/main.yml", "playbooks/migrate_tokens.yml"):
        assert (collection / path).is_file(), path
    config = tmp_path / "empty.cfg"
    config.write_text("")
    env = {**os.environ, "ANSIBLE_CONFIG": str(config), "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    installed = tmp_path / "collections"
    # --force: a copy installed elsewhere on the machine must not make galaxy skip this one.
    out = run([str(BIN / "ansible-galaxy"), "collection", "install", "--no-deps", "--force", "-p", str(installed),
               str(collection)], env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    out = run([str(BIN / "ansible-doc"), "ledgermind.migrations.pg_column_type"],
              env={**env, "ANSIBLE_COLLECTIONS_PATH": str(installed)}, cwd=tmp_path)
    assert out.returncode == 0 and "pg_column_type" in out.stdout, out.stderr


def test_the_collection_declares_its_ee_dependencies():
    out = run([str(BIN / "ansible-builder"), "introspect", str(REPO / ".build" / "collections")])
    assert out.returncode == 0, out.stderr
    deps = yaml.safe_load(out.stdout.split("\n", 1)[1])
    python = " ".join(deps["python"])
    system = " ".join(deps["system"])
    for package in ("psycopg2-binary", "alembic", "sqlalchemy"):
        assert package in python
    assert "postgresql-client [platform:dpkg]" in system and "postgresql [platform:rpm]" in system
