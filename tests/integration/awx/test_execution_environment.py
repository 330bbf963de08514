"""The execution environment definition: `ansible-builder create` writes its build context offline.

Building the image needs a container engine and registries; what can be checked here is that the
definition is valid ansible-builder v3, that the context holds the requirements and this collection's built
tarball, that the tarball installs offline next to the collections of requirements.yml and its modules load, and
that meta/execution-environment.yml gives an EE that installs the collection its Python (meta/ee-requirements.txt)
and system dependencies.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import ansible_collections
import yaml

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300, **kwargs)


def test_ansible_builder_create_writes_the_build_context(tmp_path):
    """The definition as a maintainer builds it: the collection's tarball first, then the context."""
    workdir = tmp_path / "checkout"
    workdir.mkdir()
    for name in ("execution-environment.yml", "requirements.yml", "requirements.txt", "bindep.txt"):
        shutil.copy(REPO / name, workdir / name)
    definition = yaml.safe_load((REPO / "execution-environment.yml").read_text())
    [tarball_file] = [f for f in definition["additional_build_files"] if f["src"].endswith(".tar.gz")]
    config = tmp_path / "empty.cfg"
    config.write_text("")
    env = {**os.environ, "ANSIBLE_CONFIG": str(config), "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    out = run([str(BIN / "ansible-galaxy"), "collection", "build", "--force", "--output-path",
               str(workdir / Path(tarball_file["src"]).parent), str(REPO)], env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (workdir / tarball_file["src"]).is_file(), f"galaxy.yml's version is not {tarball_file['src']}'s"

    context = tmp_path / "context"
    out = run([str(BIN / "ansible-builder"), "create", "-f", str(workdir / "execution-environment.yml"),
               "-c", str(context), "--output-filename", "Containerfile"], cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "No matches" not in out.stdout + out.stderr and "does not exist" not in out.stdout + out.stderr

    containerfile = (context / "Containerfile").read_text()
    assert definition["images"]["base_image"]["name"] in containerfile
    build = context / "_build"
    assert (build / "requirements.txt").read_text() == (REPO / "requirements.txt").read_text()
    assert (build / "bindep.txt").read_text() == (REPO / "bindep.txt").read_text()
    assert yaml.safe_load((build / "requirements.yml").read_text()) == yaml.safe_load(
        (REPO / "requirements.yml").read_text())
    # The tarball, installed in the galaxy stage (so the builder stage introspects it), not a copy of the tree.
    tarball = build / tarball_file["dest"] / Path(tarball_file["src"]).name
    assert tarball.is_file()
    galaxy_stage = containerfile.split("# Galaxy build stage", 1)[1].split("# Builder build stage", 1)[0]
    assert f"/build/{tarball_file['dest']}/{tarball.name}" in galaxy_stage
    assert "-r requirements.yml" in galaxy_stage
    assert not (build / "ledgermind_migrations").exists() and "COPY _build/ledgermind" not in containerfile

    # The galaxy stage's install, offline against the collections requirements.yml installs (here the venv's).
    installed = tmp_path / "collections"
    site = next(Path(p) for p in ansible_collections.__path__ if (Path(p) / "community" / "docker").is_dir())
    for name in ("community/docker", "community/library_inventory_filtering_v1", "awx/awx"):
        shutil.copytree(site / name, installed / "ansible_collections" / name)
    out = run([str(BIN / "ansible-galaxy"), "collection", "install", "--offline", "--collections-path",
               str(installed), str(tarball)], env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    out = run([str(BIN / "ansible-doc"), "ledgermind.migrations.pg_column_type"],
              env={**env, "ANSIBLE_COLLECTIONS_PATH": str(installed)}, cwd=tmp_path)
    assert out.returncode == 0 and "pg_column_type" in out.stdout, out.stderr
    # What the builder stage's introspection then finds in the image's collections.
    out = run([str(BIN / "ansible-builder"), "introspect", str(installed)])
    assert out.returncode == 0, out.stderr
    deps = yaml.safe_load(out.stdout.split("\n", 1)[1])
    python = " ".join(deps["python"])
    for package in ("psycopg2-binary", "alembic", "sqlalchemy", "requests"):
        assert f"{package}  # from collection ledgermind.migrations" in python, python


def test_the_collection_declares_its_ee_dependencies():
    out = run([str(BIN / "ansible-builder"), "introspect", str(REPO / ".build" / "collections")])
    assert out.returncode == 0, out.stderr
    deps = yaml.safe_load(out.stdout.split("\n", 1)[1])
    python = " ".join(deps["python"])
    system = " ".join(deps["system"])
    for package in ("psycopg2-binary", "alembic", "sqlalchemy", "requests"):
        assert f"{package}  # from collection ledgermind.migrations" in python, python
    assert "postgresql-client [platform:dpkg]" in system and "postgresql [platform:rpm]" in system
