"""A skin task's training photos as tensors: the rows carrying its labels, read at its input side.

Whole-photo tasks (body part, lesion) read each photo once, squashed to the square input, with
the lesion mask resized beside it; lesion-crop tasks (TIS, AD vs complications, diagnosis) cut
around each row's largest masked lesion. The label set is the task's own, or for diagnosis the
classes present (in the default order) unless a label file fixes them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image
from torch import Tensor

from models.errors import DatasetError
from models.manifest import LabelSpec
from models.skin.dataset import (
    SkinRow,
    generated_provenance,
    lesion_crop,
    load_rows,
    read_mask,
    read_rgb,
    rows_for,
    squash,
)
from models.skin.labels import DEFAULT_DIAGNOSES, key_of, labels_for_keys, load_label_file
from models.skin.tasks import LESION_CROP, TaskSpec

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TaskData:
    rows: list[SkinRow]
    images: Tensor  # uint8 (N, 3, S, S)
    targets: Tensor
    labels: tuple[LabelSpec, ...]
    source: str  # "synthetic" when the manifest was written by ``photomarker generate skin``
    generated: dict[str, object] | None = None


def load_task_data(
    spec: TaskSpec, csv_path: Path, label_file: Path | None, progress: Progress | None = None
) -> TaskData:
    rows = rows_for(spec.task, load_rows(csv_path))
    labels = _labels(spec, rows, label_file)
    keys = [key_of(label) for label in labels]
    arrays: list[NDArray[np.uint8]] = []
    targets: list[Any] = []
    size = spec.input_size
    began = time.perf_counter()
    for index, row in enumerate(rows):
        # Whole-photo tasks read the photo once: for its pixels, and for the mask's size.
        image = None if spec.sees == LESION_CROP else read_rgb(row.image)
        arrays.append(lesion_crop(row, size) if image is None else squash(image, size))
        if spec.task == "lesion" and row.mask is not None and image is not None:
            mask = read_mask(row.mask, image.size)
            targets.append(np.asarray(Image.fromarray(mask).resize((size, size), Image.Resampling.NEAREST)))
        elif spec.task == "tis" and row.tis is not None:  # rows_for keeps only rows with TIS
            targets.append(row.tis)
        else:
            value = {
                "body-part": row.body_part,
                "ad-complications": row.condition,
                "diagnosis": row.diagnosis,
            }[spec.task]
            if value not in keys:
                raise DatasetError(f"line {row.line}: {value!r} is not in the label set")
            targets.append(keys.index(value))
        if progress is not None and (index + 1) % 1000 == 0:
            progress(f"loaded {index + 1}/{len(rows)} photos ({time.perf_counter() - began:.0f} s)")
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    target_tensor = torch.as_tensor(np.asarray(targets), dtype=torch.long)
    generated = generated_provenance(csv_path)
    return TaskData(rows, images, target_tensor, labels, "synthetic" if generated else "real", generated)


def _labels(spec: TaskSpec, rows: Sequence[SkinRow], label_file: Path | None) -> tuple[LabelSpec, ...]:
    if spec.task != "diagnosis":
        return spec.labels
    if label_file is not None:
        return load_label_file(label_file)
    present = sorted({row.diagnosis for row in rows if row.diagnosis})
    default_order = [key_of(label) for label in DEFAULT_DIAGNOSES]
    present.sort(
        key=lambda key: (default_order.index(key) if key in default_order else len(default_order), key)
    )
    if len(present) < 2:
        raise DatasetError("diagnosis needs at least two classes in the manifest")
    return labels_for_keys(present, DEFAULT_DIAGNOSES)
