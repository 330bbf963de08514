"""Make ``ansible_collections.ledgermind.migrations`` importable from this checkout.

`make setup` links the repository into .build/collections/ansible_collections/ledgermind/migrations
(see ansible.cfg); the plugin tests import the collection's code through that link.
"""
from __future__ import annotations

import sys
from pathlib import Path

COLLECTIONS = Path(__file__).resolve().parents[3] / ".build" / "collections"
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))
