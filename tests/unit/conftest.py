"""Make ``ansible_collections.ledgermind.migrations`` importable from this checkout.

ansible.cfg resolves the collection through .build/collections (``collections_path``); the link
below is what ``make setup`` creates. It is created here too when missing, so ``pytest tests/unit``
works straight after a clone.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO / '.build' / 'collections'
LINK = COLLECTIONS / 'ansible_collections' / 'ledgermind' / 'migrations'

if not LINK.exists():
    LINK.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.join('..', '..', '..', '..'), LINK)  # -> the repository root
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))
