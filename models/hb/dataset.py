"""Labelled conjunctiva data sets: CSV rows → duplicate groups → one sample per usable group.

The layout is CP-AnemiC's: a CSV with at least ``IMAGE_ID`` and ``HB_LEVEL`` (g/dL), optionally
``Age(Months)``, ``GENDER`` and ``sha256``, and the images in ``images/`` beside it
(``images/<IMAGE_ID>.png``, or any extension). Reading is lenient (column names are matched
without case or surrounding spaces, a missing ``sha256`` is computed) and a row that cannot be
used stops the run with a :class:`~models.errors.DatasetError` that names it.

**The duplicate rule** (also written in the model card). CP-AnemiC holds the same photo under
several IDs, often with different laboratory Hb, and some copies differ in their bytes but not
in their pixels. So:

1. Rows are grouped when their files have the same SHA-256 *or* their pixels are the same
   image — size within 3 % and 32×16 colour thumbnails differing by ≤ 3 grey levels on
   average (re-encoded and 1-px-resized copies measure 0–1.4; distinct strips 10 and more).
2. A group whose Hb values span more than 1.0 g/dL (max − min) is dropped: the labels
   contradict each other and there is no way to tell which is the child's.
3. Any other group becomes one sample labelled with the median Hb of its rows, using the
   image of its first row (by ID).

**Cross-validation groups** are wider than copies, because CP-AnemiC also holds *different*
files of the same eye — re-crops, rotations and re-scalings of one photo, and runs of a child's
photos under consecutive IDs with the same Hb — and scoring a model on a re-crop of a training
image is leakage just as a byte copy is. With ``grouping="strict"`` (the default) samples are
in one CV group when any of these holds:

- a ``PATIENT_ID`` / ``SUBJECT_ID`` column gives them the same value; without one, their rows
  lie within 3 places of each other in ID order and carry the identical Hb (CP-AnemiC has no
  patient column; its consecutive IDs with equal Hb are one child's photos);
- their tissue colour distributions look alike: the RMS difference of the 10/25/50/75/90th
  percentiles of L*, a* and b* is below 1.0 (re-crops of one photo measure 0.3–0.8; two
  different children almost never come that close).

``grouping="sha256"`` groups by copies only (the literal ``sha256`` column), for comparison.
"""

from __future__ import annotations

import csv
import hashlib
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from models.errors import DatasetError, IntakeError
from models.hb.localise import conjunctiva_strip
from models.hb.strip import Strip
from models.intake import IntakeLimits, decode_photo
from models.tissue_colour import srgb_to_lab

Grouping = Literal["strict", "sha256"]

MAX_GROUP_SPREAD_G_DL: Final = 1.0
NEAR_DUPLICATE_MAX_DIFFERENCE: Final = 3.0  # mean |Δ| of 32×16 RGB thumbnails, grey levels
NEAR_DUPLICATE_SIZE_TOLERANCE: Final = 0.03
SAME_CHILD_ID_WINDOW: Final = 3
LOOKALIKE_MAX_LAB_RMS: Final = 1.0
_LOOKALIKE_PERCENTILES: Final = (10.0, 25.0, 50.0, 75.0, 90.0)
_THUMB_SIZE: Final = (32, 16)
_IMAGE_SUFFIXES: Final = (".png", ".jpg", ".jpeg", ".webp", ".heic", ".heif")
_SUBJECT_COLUMNS: Final = ("patient_id", "subject_id", "patient", "subject")
# Physiologically possible Hb (g/dL); anything outside is a data-entry error, not a label.
_HB_RANGE: Final = (2.0, 25.0)


@dataclass(frozen=True)
class LabelledImage:
    """One CSV row: an image file and the laboratory Hb measured for it."""

    image_id: str
    hb_g_dl: float
    path: Path
    sha256: str
    subject: str | None = None


@dataclass(frozen=True)
class HbSample:
    """One training / scoring unit: a distinct photo and the Hb its copies agree on.

    ``group`` is the sample's file hash (its copy group); ``subjects`` the presumed child of
    each copy (patient column, or the consecutive-ID rule), which :func:`cv_groups` joins.
    """

    group: str
    subjects: tuple[str, ...]
    hb_g_dl: float
    path: Path
    image_ids: tuple[str, ...]


@dataclass(frozen=True)
class DroppedGroup:
    """A duplicate group left out because its labels disagree by more than the rule allows."""

    image_ids: tuple[str, ...]
    hb_values: tuple[float, ...]

    @property
    def spread(self) -> float:
        return max(self.hb_values) - min(self.hb_values)


@dataclass(frozen=True)
class HbDataset:
    """The usable samples of one CSV and what the duplicate rule did to get them."""

    csv_path: Path
    rows: int
    samples: tuple[HbSample, ...]
    dropped: tuple[DroppedGroup, ...]
    merged_groups: int  # groups of ≥ 2 rows that were kept (as their median)
    has_subject_column: bool = False

    @property
    def hb(self) -> NDArray[np.float64]:
        return np.asarray([s.hb_g_dl for s in self.samples], dtype=np.float64)

    def summary(self) -> dict[str, object]:
        return {
            "rows": self.rows,
            "samples": len(self.samples),
            "duplicate_groups_kept_as_median": self.merged_groups,
            "duplicate_groups_dropped": len(self.dropped),
            "rows_dropped": sum(len(d.image_ids) for d in self.dropped),
            "duplicate_rule": DUPLICATE_RULE,
        }


DUPLICATE_RULE: Final = (
    "rows whose files have the same sha256 or the same pixels are one group; a group whose Hb "
    f"values span more than {MAX_GROUP_SPREAD_G_DL:g} g/dL is dropped, any other group counts once "
    "with its median Hb"
)
STRICT_GROUPING_RULE: Final = (
    "CV groups join copies, one child's photos (same patient ID; without one, rows within "
    f"{SAME_CHILD_ID_WINDOW} places in ID order with identical Hb) and look-alike re-crops "
    f"(RMS difference of L*a*b* percentiles < {LOOKALIKE_MAX_LAB_RMS:g})"
)


def load_dataset(csv_path: Path, *, max_spread: float = MAX_GROUP_SPREAD_G_DL) -> HbDataset:
    """Read ``csv_path`` and apply the duplicate rule (see the module docstring)."""
    rows, has_subjects = read_labels(csv_path)
    subjects = _subjects(rows, has_subjects)
    samples: list[HbSample] = []
    dropped: list[DroppedGroup] = []
    merged = 0
    for members in group_copies(rows):
        values = [row.hb_g_dl for row in members]
        if max(values) - min(values) > max_spread + 1e-9:
            dropped.append(DroppedGroup(tuple(r.image_id for r in members), tuple(values)))
            continue
        merged += len(members) > 1
        first = members[0]
        samples.append(
            HbSample(
                group=first.sha256,
                subjects=tuple(subjects[r.image_id] for r in members),
                hb_g_dl=float(statistics.median(values)),
                path=first.path,
                image_ids=tuple(r.image_id for r in members),
            )
        )
    if not samples:
        raise DatasetError(f"{csv_path}: no usable samples remain after the duplicate rule")
    return HbDataset(csv_path, len(rows), tuple(samples), tuple(dropped), merged, has_subjects)


def load_strips(dataset: HbDataset) -> list[Strip]:
    """The tissue strip of every sample, in sample order."""
    return [_read_strip(sample.path) for sample in dataset.samples]


def cv_groups(
    dataset: HbDataset, strips: Sequence[Strip] | None = None, grouping: Grouping = "strict"
) -> list[str]:
    """One group key per sample for cross-validation and the grouped bootstrap."""
    if grouping == "sha256":
        return [s.group for s in dataset.samples]
    samples = dataset.samples
    sets = _DisjointSets(len(samples))
    by_subject: dict[str, int] = {}
    for index, sample in enumerate(samples):
        # Copies of one photo may sit in several children's runs: all of those join.
        for key in sample.subjects:
            if key in by_subject:
                sets.union(index, by_subject[key])
            else:
                by_subject[key] = index
    if strips is None:
        strips = load_strips(dataset)
    signatures = np.stack([colour_signature(strip) for strip in strips])
    for a, b in _pairs_within(signatures, LOOKALIKE_MAX_LAB_RMS):
        sets.union(a, b)
    return [samples[sets.find(i)].group for i in range(len(samples))]


def colour_signature(strip: Strip) -> NDArray[np.float64]:
    """L*, a*, b* percentiles of the tissue: equal for re-crops and rotations of one photo."""
    pixels = strip.rgb.reshape(-1, 3)[strip.mask.reshape(-1)]
    if pixels.shape[0] == 0:
        return np.full(3 * len(_LOOKALIKE_PERCENTILES), np.nan)
    channels = srgb_to_lab(pixels)
    return np.concatenate([np.percentile(c, _LOOKALIKE_PERCENTILES) for c in channels]).astype(np.float64)


def _pairs_within(signatures: NDArray[np.float64], limit: float) -> list[tuple[int, int]]:
    pairs: list[tuple[int, int]] = []
    chunk = 512
    for start in range(0, signatures.shape[0], chunk):
        block = signatures[start : start + chunk]
        rms = np.sqrt(np.mean((block[:, None, :] - signatures[None, :, :]) ** 2, axis=-1))
        for a, b in zip(*np.nonzero(rms < limit), strict=True):
            if start + a < b:
                pairs.append((int(start + a), int(b)))
    return pairs


# --- reading ---------------------------------------------------------------------------------------


def read_labels(csv_path: Path) -> tuple[list[LabelledImage], bool]:
    """The rows of a CP-AnemiC-layout CSV in natural ID order, and whether it names patients."""
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DatasetError(f"{csv_path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    reader = csv.DictReader(text.splitlines())
    columns = {_norm(name) for name in (reader.fieldnames or [])}
    for required in ("image_id", "hb_level"):
        if required not in columns:
            raise DatasetError(f"{csv_path}: no {required.upper()} column")
    subject_column = next((c for c in _SUBJECT_COLUMNS if c in columns), None)
    image_dir = csv_path.parent / "images"
    out: list[LabelledImage] = []
    for line, raw in enumerate(reader, start=2):
        record = {_norm(k): (v or "").strip() for k, v in raw.items() if k is not None}
        image_id = record.get("image_id", "")
        if not image_id:
            raise DatasetError(f"{csv_path}:{line}: empty IMAGE_ID")
        hb = _float(record.get("hb_level", ""))
        if hb is None or not _HB_RANGE[0] <= hb <= _HB_RANGE[1]:
            raise DatasetError(f"{csv_path}:{line}: HB_LEVEL {record.get('hb_level')!r} is not an Hb in g/dL")
        path = _image_path(image_dir, image_id)
        if path is None:
            raise DatasetError(f"{csv_path}:{line}: no image for {image_id} in {image_dir}")
        sha = record.get("sha256", "").lower() or hashlib.sha256(path.read_bytes()).hexdigest()
        subject = record.get(subject_column, "") if subject_column else ""
        out.append(LabelledImage(image_id, hb, path, sha, subject or None))
    if not out:
        raise DatasetError(f"{csv_path}: no rows")
    if len({r.image_id for r in out}) != len(out):
        raise DatasetError(f"{csv_path}: IMAGE_ID values are not unique")
    return sorted(out, key=_natural_key), subject_column is not None


def _natural_key(row: LabelledImage) -> tuple[object, ...]:
    # "Image_9" before "Image_10": the consecutive-ID rule needs the order the IDs were issued in.
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", row.image_id))


def _norm(column: str) -> str:
    return column.strip().lower()


def _float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def _image_path(image_dir: Path, image_id: str) -> Path | None:
    direct = image_dir / image_id
    if direct.suffix.lower() in _IMAGE_SUFFIXES and direct.is_file():
        return direct
    for suffix in _IMAGE_SUFFIXES:
        for candidate in (image_dir / f"{image_id}{suffix}", image_dir / f"{image_id}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def _read_strip(path: Path) -> Strip:
    """The strip the deployed pipeline would read: the alpha mask, else the localiser's finding."""
    try:
        photo = decode_photo(path.read_bytes(), limits=IntakeLimits())
    except (OSError, IntakeError) as exc:
        raise DatasetError(f"{path}: cannot be read as an image ({exc})") from None
    strip, where = conjunctiva_strip(photo)
    if strip is None:
        raise DatasetError(f"{path}: {where.reason or 'no conjunctiva found'}")
    return strip


# --- who is who ------------------------------------------------------------------------------------


class _DisjointSets:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            # The smaller index becomes the root, so group keys do not depend on union order.
            self.parent[max(a, b)] = min(a, b)


def _subjects(rows: Sequence[LabelledImage], has_subjects: bool) -> dict[str, str]:
    """Image ID → presumed child: the patient column, else the consecutive-ID-and-equal-Hb rule."""
    if has_subjects:
        return {r.image_id: f"patient:{r.subject}" if r.subject else f"image:{r.image_id}" for r in rows}
    sets = _DisjointSets(len(rows))
    for i, row in enumerate(rows):
        for j in range(i + 1, min(i + 1 + SAME_CHILD_ID_WINDOW, len(rows))):
            if rows[j].hb_g_dl == row.hb_g_dl:
                sets.union(i, j)
    return {row.image_id: f"run:{rows[sets.find(i)].image_id}" for i, row in enumerate(rows)}


def group_copies(rows: Sequence[LabelledImage]) -> list[list[LabelledImage]]:
    """Rows grouped by file hash and by identical pixels, each group in row order."""
    sets = _DisjointSets(len(rows))
    first_of_sha: dict[str, int] = {}
    for i, row in enumerate(rows):
        if row.sha256 in first_of_sha:
            sets.union(i, first_of_sha[row.sha256])
        else:
            first_of_sha[row.sha256] = i
    # Pixel fingerprints only for one row per file: copies with equal bytes are already joined.
    distinct = list(first_of_sha.values())
    prints = [_fingerprint(rows[i].path) for i in distinct]
    for a, b in _near_duplicate_pairs(prints):
        sets.union(distinct[a], distinct[b])
    groups: dict[int, list[LabelledImage]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(sets.find(i), []).append(row)
    return list(groups.values())


@dataclass(frozen=True)
class _Fingerprint:
    size: tuple[int, int]
    thumb: NDArray[np.float32]


def _fingerprint(path: Path) -> _Fingerprint:
    strip = _read_strip(path)
    masked = strip.rgb * strip.mask[..., None]
    small = Image.fromarray(masked.astype(np.uint8)).resize(_THUMB_SIZE, Image.Resampling.BILINEAR)
    height, width = strip.mask.shape
    return _Fingerprint((width, height), np.asarray(small, dtype=np.float32).ravel())


def _near_duplicate_pairs(prints: Sequence[_Fingerprint]) -> list[tuple[int, int]]:
    if len(prints) < 2:
        return []
    thumbs = np.stack([p.thumb for p in prints])
    sizes = np.asarray([p.size for p in prints], dtype=np.float64)
    pairs: list[tuple[int, int]] = []
    # Chunks keep memory at O(chunk × n × 1536) for data sets of many thousand images.
    chunk = 64
    for start in range(0, len(prints), chunk):
        difference = np.abs(thumbs[start : start + chunk, None, :] - thumbs[None, :, :]).mean(axis=-1)
        a_sizes = sizes[start : start + chunk, None, :]
        rel = np.abs(a_sizes - sizes[None, :, :]) / np.maximum(a_sizes, sizes[None, :, :])
        close = (difference <= NEAR_DUPLICATE_MAX_DIFFERENCE) & np.all(
            rel <= NEAR_DUPLICATE_SIZE_TOLERANCE, axis=-1
        )
        for a, b in zip(*np.nonzero(close), strict=True):
            if start + a < b:
                pairs.append((int(start + a), int(b)))
    return pairs
