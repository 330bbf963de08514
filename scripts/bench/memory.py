"""Peak memory of Ansible module processes, read from /proc while they run.

A module runs as a python process whose command line names ``AnsiballZ_<module>.py``. The poller
walks the descendants of the ansible process it was given and keeps, per module, the largest
``VmHWM`` (the kernel's own peak-RSS mark, so a short spike between two polls is still counted),
and, separately, the largest process the module started (pg_dump, alembic, pg_restore).
"""

from __future__ import annotations

import os
import re
import threading

MODULE_RE = re.compile(r"AnsiballZ_([A-Za-z0-9_]+)\.py")


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as fh:
                stat = fh.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def _hwm_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


class ModuleMemory:
    """``with ModuleMemory(pid) as mem: ...``; then ``mem.peaks_mib()``."""

    def __init__(self, root_pid: int, interval: float = 0.02):
        self.root_pid = root_pid
        self.interval = interval
        self.module_kib: dict[str, int] = {}
        self.child_kib: dict[str, int] = {}
        self._names: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="module-memory", daemon=True)

    def __enter__(self) -> ModuleMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        children = _children_map()
        stack: list[tuple[int, str | None]] = [(self.root_pid, None)]
        while stack:
            pid, module = stack.pop()
            for child in children.get(pid, []):
                name = self._names.get(child)
                if name is None:
                    found = MODULE_RE.search(_cmdline(child))
                    name = found.group(1) if found else ""
                    self._names[child] = name
                if name:
                    # The module's own python process (under a `/bin/sh -c` wrapper).
                    self.module_kib[name] = max(self.module_kib.get(name, 0), _hwm_kib(child))
                    stack.append((child, name))
                elif module:
                    self.child_kib[module] = max(self.child_kib.get(module, 0), _hwm_kib(child))
                    stack.append((child, module))
                else:
                    stack.append((child, None))

    @staticmethod
    def _mib(values: dict[str, int]) -> dict[str, float]:
        return {k: round(v / 1024, 1) for k, v in sorted(values.items())}

    def peaks_mib(self) -> dict[str, dict[str, float]]:
        return {"module": self._mib(self.module_kib), "children": self._mib(self.child_kib)}
