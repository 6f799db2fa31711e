"""The skin training manifest: its format, its refusals, and the crops it yields."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.errors import DatasetError
from models.skin.dataset import (
    COLUMNS,
    components,
    generated_provenance,
    largest_lesion_box,
    lesion_crop,
    load_rows,
    rows_for,
    square_box,
    write_generated_set,
)


def _manifest(root: Path, *rows: str, header: str = ",".join(COLUMNS)) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "labels.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_generated_set_round_trips_and_is_marked_generated(tmp_path: Path) -> None:
    manifest = write_generated_set(tmp_path / "gen", count=24, seed=3, size=96)
    rows = load_rows(manifest)
    assert len(rows) == 24 and all(row.image.exists() and row.mask and row.mask.exists() for row in rows)
    assert {row.patient_id for row in rows} and len({row.patient_id for row in rows}) == 12
    assert all(row.body_part for row in rows)
    provenance = generated_provenance(manifest)
    assert provenance is not None and provenance["seed"] == 3
    assert "--count 24 --seed 3" in str(provenance["command"])
    for row in rows:
        if row.tis is not None:
            assert row.condition == "atopic-dermatitis" and sum(row.tis) >= 1


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("a.jpg,,p1,7,,,,,,", "fitzpatrick must be 1–6"),
        ("a.jpg,,p1,,elbow,,,,,", "body_part must be one of"),
        ("a.jpg,,p1,,,eczema,,,,", "condition must be one of"),
        ("a.jpg,,p1,,,,,2,1,", "all three TIS items or none"),
        ("a.jpg,,p1,,,,,4,1,1", "erythema must be 0–3"),
        ("a.jpg,,p1,,,,,x,1,1", "erythema must be a number"),
        ("../../etc/passwd,,p1,,,,,,,", "outside the manifest's directory"),
        (",,p1,,,,,,,", "image and patient_id are required"),
    ],
)
def test_bad_rows_are_refused_with_line_and_column(tmp_path: Path, row: str, message: str) -> None:
    with pytest.raises(DatasetError, match=message) as caught:
        load_rows(_manifest(tmp_path / "m", row))
    assert (
        "line 2" in caught.value.message
        or "outside" in caught.value.message
        or "required" in caught.value.message
    )


def test_missing_columns_and_empty_manifests(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="missing column"):
        load_rows(_manifest(tmp_path / "a", "x.jpg", header="image"))
    with pytest.raises(DatasetError, match="no rows"):
        load_rows(_manifest(tmp_path / "b"))


def test_a_task_needs_rows_with_its_labels(tmp_path: Path) -> None:
    rows = load_rows(_manifest(tmp_path / "m", *[f"{i}.jpg,,p{i},,hand,,,,," for i in range(12)]))
    assert len(rows_for("body-part", rows)) == 12
    with pytest.raises(DatasetError, match="only 0 rows carry labels for tis"):
        rows_for("tis", rows)


def test_components_count_separate_regions() -> None:
    mask = np.zeros((20, 20), dtype=bool)
    mask[2:5, 2:5] = True
    mask[10:18, 12:14] = True
    mask[10, 2] = True
    labels, count = components(mask)
    assert count == 3
    assert len(np.unique(labels[mask])) == 3
    assert largest_lesion_box(mask.astype(np.uint8)) == (12, 10, 14, 18)


def test_square_box_stays_inside_the_photo() -> None:
    box = square_box((0, 0, 10, 40), (100, 60))
    assert box[0] >= 0 and box[1] >= 0 and box[2] <= 100 and box[3] <= 60
    assert box[2] - box[0] == box[3] - box[1] == 60


def test_lesion_crop_is_taken_around_the_largest_masked_lesion(tmp_path: Path) -> None:
    root = tmp_path / "m"
    root.mkdir()
    image = np.full((200, 200, 3), 200, dtype=np.uint8)
    image[140:170, 20:50] = (200, 30, 30)  # the lesion
    Image.fromarray(image).save(root / "a.png")
    mask = np.zeros((200, 200), dtype=np.uint8)
    mask[140:170, 20:50] = 1
    Image.fromarray(mask).save(root / "a-mask.png")
    (row,) = load_rows(_manifest(root, "a.png,a-mask.png,p1,,,,,,,"))
    crop = lesion_crop(row, 32)
    assert crop.shape == (32, 32, 3)
    red = (crop[..., 0].astype(int) - crop[..., 1]) > 100
    assert 0.2 < red.mean() < 0.8  # the lesion, with a margin of healthy skin around it
