"""`python scripts/bench` (what `make bench` runs): see bench/cli.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cli import main  # noqa: E402

sys.exit(main())
