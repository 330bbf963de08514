"""Where things are, which database the bench owns, and timed subprocesses."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
STACK = REPO / "scripts" / "stack"
ALEMBIC_INI = "examples/backend/alembic.ini"
TARGET_REVISION = "502d44cd70ab"
BASE_REVISION = "20251109_add_user_name_picture"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class BenchError(Exception):
    """A failure worth one line, no traceback."""


@dataclass
class Timed:
    """One command's outcome."""

    seconds: float
    rc: int
    stdout: str = ""
    stderr: str = ""
    extra: dict = field(default_factory=dict)


def base_env(url: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env.setdefault("ANSIBLE_NOCOLOR", "1")
    if url is not None:
        env["DATABASE_URL"] = url
    return env


def run(argv: list[str] | str, *, env: dict[str, str], cwd: Path = REPO, shell: bool = False,
        check: bool = True, what: str = "") -> Timed:
    """Run and time a command (wall clock); raise BenchError on a non-zero exit when ``check``."""
    started = time.perf_counter()
    command = ["bash", "-c", argv] if shell and isinstance(argv, str) else argv
    proc = subprocess.run(command, cwd=cwd, env=env, text=True, capture_output=True, check=False)
    seconds = time.perf_counter() - started
    if check and proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise BenchError(f"{what or argv} failed (rc={proc.returncode}): {' | '.join(tail)}")
    return Timed(seconds, proc.returncode, proc.stdout, proc.stderr)


def database_url(db: str) -> str:
    """The URL of database ``db`` on the stack's server (or on $DATABASE_URL's), loopback only."""
    out = run([str(STACK), "env", db], env=base_env(), what="scripts/stack env").stdout.strip()
    url = out.split("=", 1)[1] if out.startswith("export DATABASE_URL=") else ""
    if not url:
        raise BenchError(f"scripts/stack env {db} printed no URL: {out!r}")
    host = urlsplit(url).hostname or "localhost"
    if host not in LOOPBACK:
        raise BenchError(f"the bench only runs against a loopback server, not {host}")
    return url


def reset(db: str, rows: int, tries: int = 6) -> float:
    """Drop, recreate and seed ``db`` with ``rows`` rows; returns the seconds the last try took.

    DROP DATABASE ... WITH (FORCE) cannot end an autovacuum worker (it runs as the superuser) that
    is still cleaning up after the previous rollback: such a failure is retried after a pause.
    """
    for attempt in range(1, tries + 1):
        timed = run([str(STACK), "reset", "--rows", str(rows), "--db", db], env=base_env(), check=False)
        if timed.rc == 0:
            return timed.seconds
        message = " ".join((timed.stderr or timed.stdout).split())
        if attempt == tries or "pg_signal_backend" not in message and "being accessed by other users" not in message:
            raise BenchError(f"scripts/stack reset --rows {rows} failed (rc={timed.rc}): {message[-400:]}")
        time.sleep(5)
    raise AssertionError("unreachable")


def client(name: str) -> str:
    """A PostgreSQL client binary: PATH first, then the newest /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found
    for bindir in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (bindir / name).exists():
            return str(bindir / name)
    raise BenchError(f"{name} not found; install PostgreSQL's client package")


def _first_line(path: str, prefix: str, sep: str = ":") -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(prefix) and sep in line:
                    return line.split(sep, 1)[1].strip()
    except OSError:
        pass
    return ""


def machine(url: str) -> dict:
    """What the numbers came from."""
    info: dict[str, object] = {
        "cpu": _first_line("/proc/cpuinfo", "model name") or platform.processor(),
        "cores": os.cpu_count(),
        "memory_gib": round(int((_first_line("/proc/meminfo", "MemTotal") or "0 kB").split()[0]) / 2**20, 1),
        "os": _first_line("/etc/os-release", "PRETTY_NAME", "=").strip('"') or platform.platform(),
        "python": platform.python_version(),
        "loadavg_start": list(os.getloadavg()),
    }
    try:
        import psycopg2

        # The maintenance database: the bench database is only created by the first reset.
        with psycopg2.connect(url, dbname="postgres") as conn, conn.cursor() as cur:
            cur.execute("SHOW server_version")
            info["postgresql"] = cur.fetchone()[0]
        conn.close()
    except Exception as exc:  # informative only
        info["postgresql"] = f"unknown ({type(exc).__name__})"
    ansible = run([str(VENV_BIN / "ansible"), "--version"], env=base_env(), check=False).stdout.splitlines()
    info["ansible_core"] = ansible[0].split("[")[-1].rstrip("]").replace("core ", "") if ansible else "unknown"
    info["argv"] = sys.argv[1:]
    return info
