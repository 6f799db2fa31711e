"""Fixtures for the tumour model: parts of the in-repository PAD-UFES-20 subset, images linked in."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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


def lesion_cut_out(image: str = "PAT_106_158_249.jpg") -> bytes:
    """A real PAD-UFES-20 cut-out as PNG, its black surround made transparent (the default a BCC).

    The quality gate then judges the lesion alone (a black JPEG surround reads as under-exposed),
    and the tumour model sees it on black again.
    """
    pixels = np.asarray(Image.open(PAD_UFES / "images" / image).convert("RGB"))
    alpha = np.where(pixels.max(axis=2) > 12, 255, 0).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(np.dstack([pixels, alpha]), "RGBA").save(out, format="PNG")
    return out.getvalue()
