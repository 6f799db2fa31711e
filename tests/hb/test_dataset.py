"""The duplicate rule and the cross-validation groups, on photos made here and on real CP-AnemiC."""

from __future__ import annotations

import collections
from collections.abc import Callable
from pathlib import Path

import pytest

from models.errors import DatasetError
from models.evaluation import grouped_kfold
from models.hb.dataset import cv_groups, load_dataset, load_strips
from tests.hb.conftest import strip_png, write_dataset

PINK = (200, 110, 120)
PALE = (215, 170, 160)
DARK = (150, 70, 80)
ORANGE = (210, 140, 90)


def test_conflicting_copies_are_dropped_and_agreeing_copies_count_once_at_their_median(
    tmp_path: Path,
) -> None:
    pink, pale, dark = strip_png(PINK, seed=1), strip_png(PALE, seed=2), strip_png(DARK, seed=3)
    csv_path = write_dataset(
        tmp_path,
        [
            ("Image_001", 9.0, pink),
            ("Image_050", 11.5, pink),  # same bytes, labels 2.5 g/dL apart: dropped
            ("Image_002", 12.0, pale),
            ("Image_060", 12.6, pale),  # same bytes, 0.6 apart
            ("Image_070", 12.2, pale),  # … median 12.2
            ("Image_003", 8.0, dark),
        ],
    )
    dataset = load_dataset(csv_path)
    by_first = {s.image_ids[0]: s for s in dataset.samples}
    assert set(by_first) == {"Image_002", "Image_003"}
    assert by_first["Image_002"].hb_g_dl == pytest.approx(12.2)
    assert by_first["Image_002"].image_ids == ("Image_002", "Image_060", "Image_070")
    assert [d.image_ids for d in dataset.dropped] == [("Image_001", "Image_050")]
    assert dataset.dropped[0].spread == pytest.approx(2.5)
    summary = dataset.summary()
    assert summary["rows"] == 6 and summary["rows_dropped"] == 2 and summary["samples"] == 2


def test_a_copy_with_other_bytes_but_the_same_pixels_is_a_copy(tmp_path: Path) -> None:
    # Re-encoding changes the file hash, not the picture: still the same photo.
    same_a = strip_png(PINK, seed=4, compress_level=1)
    same_b = strip_png(PINK, seed=4, compress_level=9)
    assert same_a != same_b
    csv_path = write_dataset(
        tmp_path,
        [
            ("Image_010", 9.0, same_a),
            ("Image_200", 13.0, same_b),
            ("Image_020", 10.0, strip_png(PALE, seed=5)),
        ],
    )
    dataset = load_dataset(csv_path)
    assert [d.image_ids for d in dataset.dropped] == [("Image_010", "Image_200")]


def test_one_childs_consecutive_photos_share_a_cv_group(tmp_path: Path) -> None:
    rows = [
        ("Image_1", 9.6, strip_png(PINK, seed=10)),
        ("Image_2", 9.6, strip_png(PALE, seed=11)),  # next ID, identical Hb: same child
        ("Image_3", 12.1, strip_png(DARK, seed=12)),
        ("Image_4", 13.0, strip_png((180, 90, 100), seed=14)),
        ("Image_5", 8.0, strip_png((230, 190, 185), seed=15)),
        ("Image_9", 9.6, strip_png(ORANGE, seed=13)),  # same Hb but 4 places on: another child
    ]
    dataset = load_dataset(write_dataset(tmp_path, rows))
    groups = dict(zip([s.image_ids[0] for s in dataset.samples], cv_groups(dataset), strict=True))
    assert groups["Image_1"] == groups["Image_2"]
    assert len({groups["Image_1"], groups["Image_3"], groups["Image_9"]}) == 3
    assert len(set(cv_groups(dataset, grouping="sha256"))) == 6


def test_a_patient_column_decides_who_is_who(tmp_path: Path) -> None:
    rows = [
        ("A", 9.6, strip_png(PINK, seed=20)),
        ("B", 9.6, strip_png(PALE, seed=21)),
        ("C", 11.0, strip_png(DARK, seed=22)),
    ]
    dataset = load_dataset(write_dataset(tmp_path, rows, patient=["p1", "p2", "p1"]))
    groups = dict(zip([s.image_ids[0] for s in dataset.samples], cv_groups(dataset), strict=True))
    assert groups["A"] == groups["C"] != groups["B"]


def test_a_recrop_of_the_same_photo_shares_a_cv_group(tmp_path: Path) -> None:
    whole = strip_png(PINK, size=(200, 70), seed=30)
    recrop = strip_png(PINK, size=(180, 64), seed=30)  # same tissue colour, other cut
    rows = [("Image_100", 10.0, whole), ("Image_500", 10.4, recrop), ("Image_300", 12.0, strip_png(ORANGE))]
    dataset = load_dataset(write_dataset(tmp_path, rows))
    groups = dict(zip([s.image_ids[0] for s in dataset.samples], cv_groups(dataset), strict=True))
    assert groups["Image_100"] == groups["Image_500"] != groups["Image_300"]


def test_unusable_csvs_are_refused_with_the_row_named(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    bad = tmp_path / "labels.csv"
    bad.write_text("IMAGE_ID,HB_LEVEL\nImage_1,9.5\n")
    with pytest.raises(DatasetError, match=r"labels.csv:2: no image for Image_1"):
        load_dataset(bad)
    bad.write_text("IMAGE_ID,HB\nImage_1,9.5\n")
    with pytest.raises(DatasetError, match="no HB_LEVEL column"):
        load_dataset(bad)
    (tmp_path / "images" / "Image_1.png").write_bytes(strip_png(PINK))
    bad.write_text("IMAGE_ID,HB_LEVEL\nImage_1,ninety\n")
    with pytest.raises(DatasetError, match="is not an Hb"):
        load_dataset(bad)
    assert DatasetError.code == "invalid-dataset"


def test_real_data_no_copy_or_child_is_on_both_sides_of_a_split(real_subset: Callable[[int], Path]) -> None:
    dataset = load_dataset(real_subset(104))
    strips = load_strips(dataset)
    groups = cv_groups(dataset, strips)
    ids_of_group: dict[str, set[str]] = collections.defaultdict(set)
    for sample, group in zip(dataset.samples, groups, strict=True):
        ids_of_group[group].update(sample.image_ids)
    sha_groups = {s.group for s in dataset.samples}
    assert len(sha_groups) == len(dataset.samples), "one sample per copy group"
    for train, test in grouped_kfold(groups, 5, target=dataset.hb, seed=0):
        train_ids = {i for k in train for i in dataset.samples[k].image_ids}
        test_ids = {i for k in test for i in dataset.samples[k].image_ids}
        assert not train_ids & test_ids
        assert not {groups[k] for k in train} & {groups[k] for k in test}
        # No file hash on both sides either (copies are folded into one sample).
        assert not {dataset.samples[k].group for k in train} & {dataset.samples[k].group for k in test}
    # The real subset has conflicting copies: they are dropped, not averaged.
    assert dataset.dropped and all(d.spread > 1.0 for d in dataset.dropped)
