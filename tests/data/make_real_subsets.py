"""Copy the small real-photo subsets the tests use out of the full data sets (run once, committed).

    python tests/data/make_real_subsets.py [--from DIR]  # default: $PHOTOMARKER_DATASETS, else ../shared/data

The rule for each set is written here, so anyone with the full data can re-make the same files:

- PAD-UFES-20: for each of the six diagnoses, rows in the file's own order, at most two photos of
  one patient, until six photos of that diagnosis are taken (36 cut-outs). The file order puts
  ``PAT_106_158_249`` (a BCC the tests name) and the first row of each diagnosis in the subset.
  ``labels.csv`` and ``metadata_pad_ufes_20.csv`` keep only the chosen rows.
- CP-AnemiC: the first 40 rows (consecutive IDs keep the runs of one child's photos that the
  strict CV grouping relies on), the strips the tests name, the four lowest-Hb rows (so the subset
  reaches severe anaemia) and then every byte-identical copy of each chosen photo, so the
  duplicate and conflicting-label handling is exercised on real data. Rows keep their file order.

Images are copied byte for byte (their ``sha256`` column still matches).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAMED_STRIPS = ("Image_001", "Image_099", "Image_211", "Image_363", "Image_551", "Image_041")
PER_DIAGNOSIS = 6
PER_PATIENT = 2
FIRST_STRIPS = 40
LOWEST_HB = 4


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def write_csv(path: Path, columns: list[str], rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def pad_ufes(source: Path, target: Path) -> None:
    columns, rows = read_csv(source / "labels.csv")
    per_diagnosis: Counter[str] = Counter()
    per_patient: Counter[str] = Counter()
    chosen = []
    for row in rows:
        if per_diagnosis[row["diagnostic"]] < PER_DIAGNOSIS and per_patient[row["patient_id"]] < PER_PATIENT:
            per_diagnosis[row["diagnostic"]] += 1
            per_patient[row["patient_id"]] += 1
            chosen.append(row)
    (target / "images").mkdir(parents=True, exist_ok=True)
    for row in chosen:
        shutil.copyfile(source / row["file"], target / row["file"])
    write_csv(target / "labels.csv", columns, chosen)
    meta_columns, meta_rows = read_csv(source / "metadata_pad_ufes_20.csv")
    wanted = {row["img_id"] for row in chosen}
    kept = [row for row in meta_rows if row["img_id"] in wanted]
    write_csv(target / "metadata_pad_ufes_20.csv", meta_columns, kept)


def cp_anemic(source: Path, target: Path) -> None:
    columns, rows = read_csv(source / "labels.csv")
    lowest = sorted(rows, key=lambda row: float(row["HB_LEVEL"]))[:LOWEST_HB]
    picked = {row["IMAGE_ID"] for row in [*rows[:FIRST_STRIPS], *lowest]} | set(NAMED_STRIPS)
    copies: defaultdict[str, set[str]] = defaultdict(set)
    for row in rows:
        copies[row["sha256"]].add(row["IMAGE_ID"])
    for row in rows:
        if row["IMAGE_ID"] in picked:
            picked |= copies[row["sha256"]]
    chosen = [row for row in rows if row["IMAGE_ID"] in picked]
    (target / "images").mkdir(parents=True, exist_ok=True)
    for row in chosen:
        name = f"{row['IMAGE_ID']}.png"
        shutil.copyfile(source / "images" / name, target / "images" / name)
    write_csv(target / "labels.csv", columns, chosen)


def main() -> None:
    default = Path(os.environ.get("PHOTOMARKER_DATASETS", HERE.parents[1].parent / "shared" / "data"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", type=Path, default=default)
    args = parser.parse_args()
    pad_ufes(args.source / "pad-ufes-20", HERE / "pad-ufes-20")
    cp_anemic(args.source / "cp-anemic", HERE / "cp-anemic")


if __name__ == "__main__":
    main()
