"""The skin training manifest: one CSV shared by every skin task, and the generator that writes one.

A manifest is a CSV whose image paths are relative to the CSV itself, one row per photo::

    image,mask,patient_id,fitzpatrick,body_part,condition,diagnosis,erythema,oedema_papulation,excoriation
    images/000001.jpg,masks/000001.png,subject-0001,3,hand,atopic-dermatitis,atopic-dermatitis,2,1,3

- ``image`` (required): the photo.
- ``patient_id`` (required): the group; splits and bootstrap resamples never separate a group.
- ``fitzpatrick`` (optional, 1–6): enables the per-Fitzpatrick breakdown.
- ``mask`` (task ``lesion``; optional elsewhere): a PNG the size of the photo, pixel value 0 = no
  lesion, 2 = tumour-like growth, any other value = rash (inflammatory) lesion. An all-zero mask
  says "no lesion in this photo". For the lesion-crop tasks the crop is taken around the largest
  lesion of the mask; without a mask the whole photo is the lesion crop (a pre-cropped photo).
- ``body_part`` (task ``body-part``): face, neck, trunk-front, trunk-back, upper-limb, hand,
  lower-limb, foot or not-skin.
- ``condition`` (task ``ad-complications``): atopic-dermatitis, impetigo, eczema-herpeticum or
  mycosis-fungoides.
- ``diagnosis`` (task ``diagnosis``): any label; the label set is whatever the column holds (codes
  from an optional JSON label file, see ``models.skin.labels.load_label_file``).
- ``erythema``, ``oedema_papulation``, ``excoriation`` (task ``tis``): 0–3 each, for the photo's
  most severe lesion (the one TIS is scored on).

A row may leave any task's columns empty; each task uses the rows that carry its labels.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, get_args

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from models.errors import DatasetError
from models.skin.labels import AD_COMPLICATION_KEYS, BODY_PART_KEYS, TIS_ITEMS
from models.skin.synthetic import generate_scene
from models.skin.synthetic_lesions import CONDITIONS, TUMOUR

SkinTask = Literal["body-part", "lesion", "tis", "ad-complications", "diagnosis"]
SKIN_TASKS: Final[tuple[SkinTask, ...]] = get_args(SkinTask)
COLUMNS: Final = (
    "image",
    "mask",
    "patient_id",
    "fitzpatrick",
    "body_part",
    "condition",
    "diagnosis",
    *TIS_ITEMS,
)
MASK_TUMOUR: Final = 2
GENERATED_MARKER: Final = "generated.json"
Box = tuple[int, int, int, int]
Progress = Callable[[str], None]


@dataclass(frozen=True)
class SkinRow:
    line: int
    image: Path
    mask: Path | None
    patient_id: str
    fitzpatrick: int | None
    body_part: str | None
    condition: str | None
    diagnosis: str | None
    tis: tuple[int, int, int] | None

    def has(self, task: SkinTask) -> bool:
        if task == "body-part":
            return self.body_part is not None
        if task == "lesion":
            return self.mask is not None
        if task == "tis":
            return self.tis is not None
        if task == "ad-complications":
            return self.condition is not None
        return self.diagnosis is not None


def load_rows(csv_path: Path) -> list[SkinRow]:
    """Every row of a manifest, checked; errors name the line and column."""
    try:
        handle = csv_path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"cannot read {csv_path.name}: {exc.strerror or type(exc).__name__}") from None
    with handle:
        reader = csv.DictReader(handle)
        missing = {"image", "patient_id"} - set(reader.fieldnames or ())
        if missing:
            raise DatasetError(f"{csv_path.name}: missing column(s) {', '.join(sorted(missing))}")
        rows = [_row(csv_path.parent, line, record) for line, record in enumerate(reader, start=2)]
    if not rows:
        raise DatasetError(f"{csv_path.name} has no rows")
    return rows


def _row(root: Path, line: int, record: dict[str, str]) -> SkinRow:
    def text(name: str) -> str | None:
        value = (record.get(name) or "").strip()
        return value or None

    def level(name: str, low: int, high: int) -> int | None:
        value = text(name)
        if value is None:
            return None
        try:
            number = int(float(value))
        except ValueError:
            raise DatasetError(f"line {line}: {name} must be a number, got {value!r}") from None
        if not low <= number <= high:
            raise DatasetError(f"line {line}: {name} must be {low}–{high}, got {number}")
        return number

    image = text("image")
    patient = text("patient_id")
    if image is None or patient is None:
        raise DatasetError(f"line {line}: image and patient_id are required")
    body_part = text("body_part")
    if body_part is not None and body_part not in BODY_PART_KEYS:
        raise DatasetError(f"line {line}: body_part must be one of {', '.join(BODY_PART_KEYS)}")
    condition = text("condition")
    if condition is not None and condition not in AD_COMPLICATION_KEYS:
        raise DatasetError(f"line {line}: condition must be one of {', '.join(AD_COMPLICATION_KEYS)}")
    items = [level(name, 0, 3) for name in TIS_ITEMS]
    if any(v is None for v in items) and any(v is not None for v in items):
        raise DatasetError(f"line {line}: give all three TIS items or none")
    tis = None if items[0] is None else (int(items[0]), int(items[1] or 0), int(items[2] or 0))
    mask = text("mask")
    return SkinRow(
        line=line,
        image=_inside(root, image, line),
        mask=_inside(root, mask, line) if mask else None,
        patient_id=patient,
        fitzpatrick=level("fitzpatrick", 1, 6),
        body_part=body_part,
        condition=condition,
        diagnosis=text("diagnosis"),
        tis=tis,
    )


def _inside(root: Path, relative: str, line: int) -> Path:
    """A path from the CSV, kept inside the CSV's directory tree."""
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise DatasetError(f"line {line}: {relative!r} points outside the manifest's directory")
    return path


def generated_provenance(csv_path: Path) -> dict[str, object] | None:
    """What ``photomarker generate skin`` recorded beside a generated manifest, else None (real photos)."""
    marker = csv_path.parent / GENERATED_MARKER
    try:
        value = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def rows_for(task: SkinTask, rows: Sequence[SkinRow]) -> list[SkinRow]:
    chosen = [row for row in rows if row.has(task)]
    if len(chosen) < 10:
        raise DatasetError(f"only {len(chosen)} rows carry labels for {task}; at least 10 are needed")
    return chosen


# --- pixels ----------------------------------------------------------------------------------------


def read_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read image {path.name}: {type(exc).__name__}") from None


def read_mask(path: Path, size: tuple[int, int]) -> NDArray[np.uint8]:
    """The lesion classes (0 none, 1 rash, 2 tumour) at the photo's size."""
    try:
        with Image.open(path) as image:
            mask = image.convert("L")
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read mask {path.name}: {type(exc).__name__}") from None
    if mask.size != size:
        mask = mask.resize(size, Image.Resampling.NEAREST)
    raw = np.asarray(mask)
    return np.where(raw == 0, 0, np.where(raw == MASK_TUMOUR, 2, 1)).astype(np.uint8)


def squash(image: Image.Image, size: int, box: Box | None = None) -> NDArray[np.uint8]:
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR, box=box, reducing_gap=2.0))


def components(mask: NDArray[np.bool_]) -> tuple[NDArray[np.int32], int]:
    """4-connected components: a label image (0 = background) and the count.

    Label propagation (each pixel takes the largest label among itself and its neighbours until
    nothing changes) in whole-array steps: no SciPy needed, ~ms on the 128-px maps used here.
    """
    h, w = mask.shape
    labels = np.where(mask, np.arange(1, h * w + 1, dtype=np.int32).reshape(h, w), 0).astype(np.int32)
    while True:
        grown = labels.copy()
        np.maximum(grown[1:], labels[:-1], out=grown[1:])
        np.maximum(grown[:-1], labels[1:], out=grown[:-1])
        np.maximum(grown[:, 1:], labels[:, :-1], out=grown[:, 1:])
        np.maximum(grown[:, :-1], labels[:, 1:], out=grown[:, :-1])
        grown[~mask] = 0
        if np.array_equal(grown, labels):
            break
        labels = grown
    values = np.unique(labels[labels > 0])
    lookup = np.zeros(h * w + 1, dtype=np.int32)
    lookup[values] = np.arange(1, len(values) + 1, dtype=np.int32)
    return lookup[labels], len(values)


def square_box(box: Box, size: tuple[int, int], margin: float = 0.25) -> Box:
    """A square around ``box`` with ``margin`` of its side added, inside the photo where possible."""
    left, top, right, bottom = box
    side = max(right - left, bottom - top) * (1 + 2 * margin)
    side = max(side, 8.0)
    cx, cy = (left + right) / 2, (top + bottom) / 2
    width, height = size
    side = min(side, float(max(width, height)))
    x0 = round(min(max(cx - side / 2, 0), max(width - side, 0)))
    y0 = round(min(max(cy - side / 2, 0), max(height - side, 0)))
    return (x0, y0, min(width, round(x0 + side)), min(height, round(y0 + side)))


def largest_lesion_box(mask: NDArray[np.uint8]) -> Box | None:
    """The bounding box of the largest lesion in a class mask, at the mask's scale."""
    labels, count = components(mask > 0)
    if count == 0:
        return None
    areas = np.bincount(labels.ravel())[1:]
    rows, cols = np.nonzero(labels == int(np.argmax(areas)) + 1)
    return (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)


def lesion_crop(row: SkinRow, size: int) -> NDArray[np.uint8]:
    """The training crop of a row: around its largest lesion, or the whole photo without a mask."""
    image = read_rgb(row.image)
    if row.mask is None:
        return squash(image, size)
    small = 128
    mask = read_mask(row.mask, image.size)
    scale_x, scale_y = image.size[0] / small, image.size[1] / small
    reduced = np.asarray(Image.fromarray(mask).resize((small, small), Image.Resampling.NEAREST))
    box = largest_lesion_box(reduced)
    if box is None:
        return squash(image, size)
    full = (
        int(box[0] * scale_x),
        int(box[1] * scale_y),
        int(np.ceil(box[2] * scale_x)),
        int(np.ceil(box[3] * scale_y)),
    )
    return squash(image, size, square_box(full, image.size))


# --- the generated training set ---------------------------------------------------------------------

# Atopic dermatitis is drawn more often: TIS needs its range of severities.
_AD_SHARE: Final = 0.3


def write_generated_set(
    out_dir: Path, count: int, seed: int, size: int = 256, progress: Progress | None = None
) -> Path:
    """Generate ``count`` photos with masks and labels under ``out_dir``; returns the manifest path."""
    rng = np.random.default_rng(seed)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    others = [c for c in CONDITIONS if c != "atopic-dermatitis"]
    manifest = out_dir / "labels.csv"
    # Marks the set as generated (its models are reference-only) and says how to make it again.
    provenance = {
        "generator": "photomarker generate skin",
        "command": f"photomarker generate skin --out {out_dir} --count {count} --seed {seed} --size {size}",
        "count": count,
        "seed": seed,
        "size": size,
    }
    (out_dir / GENERATED_MARKER).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        fitzpatrick = 1
        for index in range(count):
            # Two photos per synthetic subject, sharing a skin tone: groups as real data has them.
            if index % 2 == 0:
                fitzpatrick = int(rng.integers(1, 7))
            draw = rng.uniform()
            if draw < 0.12:
                condition: str | None = None
            elif draw < 0.12 + _AD_SHARE:
                condition = "atopic-dermatitis"
            else:
                condition = others[rng.integers(len(others))]
            scene = generate_scene(rng, size=size, condition=condition, fitzpatrick=fitzpatrick)
            name = f"{index:06d}"
            Image.fromarray(scene.image).save(out_dir / "images" / f"{name}.jpg", quality=92)
            classes = np.where(scene.lesion_mask, MASK_TUMOUR if scene.condition == TUMOUR else 1, 0)
            Image.fromarray(classes.astype(np.uint8)).save(out_dir / "masks" / f"{name}.png")
            condition_label = scene.condition if scene.condition in AD_COMPLICATION_KEYS else ""
            diagnosis = scene.condition if scene.condition not in (None, TUMOUR) else ""
            tis = [str(v) for v in scene.tis] if scene.tis else ["", "", ""]
            writer.writerow(
                [
                    f"images/{name}.jpg",
                    f"masks/{name}.png",
                    f"subject-{seed}-{index // 2:05d}",
                    scene.fitzpatrick,
                    scene.body_part,
                    condition_label,
                    diagnosis,
                    *tis,
                ]
            )
            if progress is not None and (index + 1) % 500 == 0:
                progress(f"generated {index + 1}/{count}")
    return manifest
