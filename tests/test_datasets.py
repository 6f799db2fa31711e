"""The real-photo subsets in the repository are what their READMEs say they are."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

from tests.datasets import CP_ANEMIC_SUBSET, PAD_UFES_SUBSET, full_dataset


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_the_pad_ufes_subset_has_every_diagnosis_from_several_patients() -> None:
    labels = rows(PAD_UFES_SUBSET / "labels.csv")
    assert {row["diagnostic"] for row in labels} == {"BCC", "SCC", "MEL", "ACK", "SEK", "NEV"}
    assert len({row["patient_id"] for row in labels}) >= 20
    assert all((PAD_UFES_SUBSET / row["file"]).is_file() for row in labels)
    metadata = {row["img_id"] for row in rows(PAD_UFES_SUBSET / "metadata_pad_ufes_20.csv")}
    assert metadata == {row["img_id"] for row in labels}


def test_the_cp_anemic_subset_spans_the_hb_range_with_its_copies_and_conflicts() -> None:
    labels = rows(CP_ANEMIC_SUBSET / "labels.csv")
    for row in labels:
        data = (CP_ANEMIC_SUBSET / "images" / f"{row['IMAGE_ID']}.png").read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"], row["IMAGE_ID"]
    hb = [float(row["HB_LEVEL"]) for row in labels]
    assert min(hb) < 5 and max(hb) > 14
    by_copy: dict[str, list[float]] = {}
    for row in labels:
        by_copy.setdefault(row["sha256"], []).append(float(row["HB_LEVEL"]))
    assert any(max(v) - min(v) > 1 for v in by_copy.values()), "no conflicting-label copies to handle"


def test_the_subsets_are_byte_copies_of_the_full_data_sets() -> None:
    for subset, name in ((PAD_UFES_SUBSET, "pad-ufes-20"), (CP_ANEMIC_SUBSET, "cp-anemic")):
        full = full_dataset(name)
        full_rows = {tuple(row.items()) for row in rows(full / "labels.csv")}
        assert {tuple(row.items()) for row in rows(subset / "labels.csv")} <= full_rows
        for image in (subset / "images").iterdir():
            assert image.read_bytes() == (full / "images" / image.name).read_bytes(), image.name
