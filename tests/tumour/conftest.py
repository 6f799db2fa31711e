"""Fixtures for the tumour model: parts of the in-repository PAD-UFES-20 subset, images linked in."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.datasets import PAD_UFES_SUBSET

PAD_UFES = PAD_UFES_SUBSET


def write_subset(root: Path, per_class: int) -> Path:
    """``root``/labels.csv with ``per_class`` rows of each diagnosis; ``images/`` links to the real ones."""
    with (PAD_UFES / "labels.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        columns = reader.fieldnames or []
    taken: dict[str, int] = {}
    chosen = []
    for row in rows:
        if taken.get(row["diagnostic"], 0) < per_class:
            taken[row["diagnostic"]] = taken.get(row["diagnostic"], 0) + 1
            chosen.append(row)
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").symlink_to(PAD_UFES / "images")
    path = root / "labels.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(chosen)
    return path


@pytest.fixture
def real_subset(tmp_path: Path) -> Callable[[int], Path]:
    return lambda per_class: write_subset(tmp_path, per_class)
