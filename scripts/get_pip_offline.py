"""Stand-in for ansible-test's pip bootstrap script (get_pip_24_2.py).

ansible-test downloads get-pip from a host this network cannot reach; it looks in its cache
first, so `make setup` puts this file there. It bootstraps pip from the interpreter's own
ensurepip, then moves to the pip version ansible-test expects, from the package index.
"""
from __future__ import annotations

import subprocess
import sys

PIP_VERSION = "24.2"

subprocess.run([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"], check=True,
               stdout=subprocess.DEVNULL)
subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--quiet",
                f"pip=={PIP_VERSION}"], check=True)
