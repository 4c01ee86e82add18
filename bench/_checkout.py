"""Puts this checkout first on ``sys.path``: a bench script run as ``python bench/NAME.py`` then
imports this tree's ``sandlot`` and ``tests._support`` (the server harness), whatever is
installed. Imported for that effect, before either."""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(1, ROOT)  # after bench/ itself, which holds the scripts' sibling modules
