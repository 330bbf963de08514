"""Puts this directory on sys.path (pytest's default import mode), so every suite can import stackdb."""
