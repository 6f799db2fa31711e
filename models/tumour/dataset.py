"""PAD-UFES-20 labels: the six diagnoses, their codes and groupings, and the images as tensors.

The CSV layout is the one in ``../shared/data/pad-ufes-20/labels.csv``: ``file`` (relative to
the CSV), ``diagnostic``, ``patient_id`` and ``fitspatrick`` (sic, as the source spells it).
Every split is by ``patient_id``: several photos per lesion and lesions per patient.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import torch
from torch import Tensor

from models.engine.stages import photo_array
from models.errors import DatasetError
from models.intake import IntakeLimits, decode_photo
from models.manifest import InputSpec, LabelSpec, Normalisation

log = logging.getLogger("photomarker.tumour")
SNOMED: Final = "http://snomed.info/sct"
# Order is the network's output order.
CLASSES: Final = ("BCC", "SCC", "MEL", "ACK", "SEK", "NEV")
MALIGNANT: Final = frozenset({"BCC", "SCC", "MEL"})
# Actinic keratosis is pre-malignant; the "malignant or pre-malignant" grouping adds it.
MALIGNANT_OR_PREMALIGNANT: Final = MALIGNANT | {"ACK"}
LABELS: Final = (
    LabelSpec(code="254701007", display="Basal cell carcinoma of skin", system=SNOMED, group="malignant"),
    LabelSpec(code="tumour-scc", display="Squamous cell carcinoma of skin", group="malignant"),
    LabelSpec(code="372244006", display="Malignant melanoma", system=SNOMED, group="malignant"),
    LabelSpec(code="tumour-ack", display="Actinic keratosis (pre-malignant)", group="benign"),
    LabelSpec(code="tumour-sek", display="Seborrhoeic keratosis", group="benign"),
    LabelSpec(code="400096001", display="Melanocytic naevus", system=SNOMED, group="benign"),
)
DEFAULT_SIZE: Final = 96


def input_spec(size: int = DEFAULT_SIZE) -> InputSpec:
    """0–1 RGB in (mean 0, std 1): the network normalises after its own colour step."""
    return InputSpec(
        size=size,
        normalisation=Normalisation(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
        resize="squash",  # the crop is a box around the lesion: keep all of it
        background=(0, 0, 0),  # transparent surround becomes the training crops' black
        # Trained on lesion cut-outs: on a whole photo it is served only through the skin
        # pipeline's lesion extraction, never on the whole frame.
        region="lesion",
    )


INPUT: Final = input_spec()


@dataclass(frozen=True)
class TumourSample:
    path: Path
    diagnosis: str
    patient_id: str
    fitzpatrick: int | None
    img_id: str = ""

    @property
    def label(self) -> int:
        return CLASSES.index(self.diagnosis)

    @property
    def malignant(self) -> bool:
        return self.diagnosis in MALIGNANT


def _fitzpatrick(text: str) -> int | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if math.isfinite(value) and 1 <= value <= 6 else None


def load_samples(csv_path: Path) -> list[TumourSample]:
    """Rows of the CSV; unknown diagnoses or missing columns are refused, missing images too."""
    try:
        with csv_path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise DatasetError(f"cannot read {csv_path}: {exc.strerror or type(exc).__name__}") from None
    needed = {"file", "diagnostic", "patient_id"}
    if not rows or not needed <= set(rows[0]):
        raise DatasetError(f"{csv_path}: needs columns {sorted(needed)} and at least one row")
    samples = []
    for number, row in enumerate(rows, start=2):
        diagnosis = row["diagnostic"].strip().upper()
        if diagnosis not in CLASSES:
            raise DatasetError(f"{csv_path}:{number}: unknown diagnostic {row['diagnostic']!r}")
        path = csv_path.parent / row["file"]
        if not path.is_file():
            raise DatasetError(f"{csv_path}:{number}: image {row['file']} not found")
        samples.append(
            TumourSample(
                path,
                diagnosis,
                row["patient_id"].strip(),
                _fitzpatrick(row.get("fitspatrick") or ""),
                (row.get("img_id") or "").strip(),
            )
        )
    return samples


def load_images(
    samples: list[TumourSample], size: int = DEFAULT_SIZE, cache_dir: Path | None = None
) -> Tensor:
    """(N, 3, S, S) in 0–1, through the engine's own pre-processing (what serving sees).

    With ``cache_dir`` the decoded uint8 pixels are kept in one ``.npz`` per (files, size), so
    repeated experiments do not decode 1,200 JPEGs again; the key hashes each file's path,
    size and modification time, so a changed image is decoded afresh.
    """
    cache = None
    if cache_dir is not None:
        key = hashlib.sha256(str(size).encode())
        for s in samples:
            stat = s.path.stat()
            key.update(f"{s.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        cache = cache_dir / f"tumour-{size}px-{key.hexdigest()[:16]}.npz"
        if cache.is_file():
            with np.load(cache) as stored:
                pixels = stored["pixels"]
            log.info("decoded crops read from %s", cache)
            return torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(255)
    spec = input_spec(size)
    limits = IntakeLimits()
    pixels = np.stack(
        [photo_array(decode_photo(s.path.read_bytes(), limits=limits), spec)[0] for s in samples]
    )
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, pixels=pixels)
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(255)
