"""Where the tests find real photos: the small subsets in the repository, and the full data sets.

The subsets under ``tests/data`` ship with every clone, so a test of behaviour on real photos runs
everywhere. The full development sets (training, cross-validation, figures) live outside the
repository: ``PHOTOMARKER_DATASETS`` names the folder that holds ``pad-ufes-20/`` and
``cp-anemic/``, by default ``../shared/data`` beside the checkout. It is read once, at import,
because the per-test settings fixture clears every ``PHOTOMARKER_*`` variable.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

#: The in-repository subsets, in the same layout as the full data sets.
SUBSETS = REPO / "tests" / "data"
PAD_UFES_SUBSET = SUBSETS / "pad-ufes-20"
CP_ANEMIC_SUBSET = SUBSETS / "cp-anemic"

FULL_DATASETS = Path(os.environ.get("PHOTOMARKER_DATASETS") or REPO.parent / "shared" / "data")

#: Files that tell a full data set from a partial copy.
_MARKERS = {"pad-ufes-20": "labels.csv", "cp-anemic": "labels.csv"}


def full_dataset(name: str) -> Path:
    """The full data set ``name``, or a skip with the one reason every such test gives."""
    root = FULL_DATASETS / name
    if not (root / _MARKERS[name]).is_file():
        pytest.skip(
            f"needs the full {name} data set: not found at {root} "
            "(set PHOTOMARKER_DATASETS to the folder holding pad-ufes-20/ and cp-anemic/)"
        )
    return root
