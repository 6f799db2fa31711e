"""Fixtures for the Hb model: small labelled sets made on the spot, and subsets of real CP-AnemiC."""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.datasets import CP_ANEMIC_SUBSET

CP_ANEMIC = CP_ANEMIC_SUBSET
COLUMNS = [
    "IMAGE_ID", "HB_LEVEL", "Severity", "Age(Months)", "GENDER", "REMARK", "HOSPITAL",
    "CITY/TOWN", "MUNICIPALITY/DISTRICT", "REGION", "sha256",
]  # fmt: skip


def strip_png(
    colour: tuple[int, int, int], *, size: tuple[int, int] = (160, 60), seed: int = 0, compress_level: int = 6
) -> bytes:
    """A conjunctiva-like crescent on a transparent background, with a little texture."""
    width, height = size
    rng = np.random.default_rng(seed)
    rgb = np.clip(np.array(colour, float) + rng.normal(0, 6, (height, width, 3)), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    centre = height * 0.15 + (height * 0.6) * ((xx - width / 2) / (width / 2)) ** 2
    alpha = ((yy > centre) & (yy < centre + height * 0.45)).astype(np.uint8) * 255
    image = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def write_dataset(
    root: Path, rows: Sequence[tuple[str, float, bytes]], *, patient: Sequence[str] | None = None
) -> Path:
    """labels.csv (CP-AnemiC columns) and images/ under ``root``; returns the CSV path."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    columns = [*COLUMNS, "PATIENT_ID"] if patient is not None else COLUMNS
    with (root / "labels.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for index, (image_id, hb, data) in enumerate(rows):
            (images / f"{image_id}.png").write_bytes(data)
            row = [image_id, hb, "", 24, "Female", "", "", "", "", "", hashlib.sha256(data).hexdigest()]
            writer.writerow([*row, patient[index]] if patient is not None else row)
    return root / "labels.csv"


def _real_rows() -> list[dict[str, str]]:
    with (CP_ANEMIC / "labels.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="session")
def real_rows() -> list[dict[str, str]]:
    return _real_rows()


@pytest.fixture(scope="session")
def real_subset(
    real_rows: list[dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[int], Path]:
    """A CSV of the first ``n`` rows of the in-repository subset, with their images, in CP-AnemiC's layout."""
    made: dict[int, Path] = {}

    def make(n: int) -> Path:
        if n > len(real_rows):
            raise ValueError(f"the CP-AnemiC test subset has {len(real_rows)} rows, not {n}")
        if n not in made:
            root = tmp_path_factory.mktemp(f"cp-anemic-{n}")
            (root / "images").mkdir()
            chosen = real_rows[:n]
            with (root / "labels.csv").open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(chosen[0]))
                writer.writeheader()
                writer.writerows(chosen)
            for row in chosen:
                shutil.copy(CP_ANEMIC / "images" / f"{row['IMAGE_ID']}.png", root / "images")
            made[n] = root / "labels.csv"
        return made[n]

    return make
