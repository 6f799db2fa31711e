"""Labels, codes and groupings of the six PAD-UFES-20 diagnoses, and the patient-grouped folds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.errors import DatasetError
from models.tumour.cross_validation import patient_folds
from models.tumour.dataset import CLASSES, LABELS, MALIGNANT, MALIGNANT_OR_PREMALIGNANT, SNOMED, load_samples
from models.tumour.report import operating_threshold
from tests.datasets import full_dataset
from tests.tumour.conftest import PAD_UFES


def test_malignant_is_bcc_scc_mel_and_ack_is_grouped_benign_with_a_second_grouping() -> None:
    groups = {name: label.group for name, label in zip(CLASSES, LABELS, strict=True)}
    assert (
        {name for name, group in groups.items() if group == "malignant"} == MALIGNANT == {"BCC", "SCC", "MEL"}
    )
    assert groups["ACK"] == "benign"
    assert {"BCC", "SCC", "MEL", "ACK"} == MALIGNANT_OR_PREMALIGNANT


def test_snomed_codes_where_verified_and_local_codes_otherwise() -> None:
    coded = {name: (label.system, label.code) for name, label in zip(CLASSES, LABELS, strict=True)}
    assert coded["BCC"] == (SNOMED, "254701007")
    assert coded["NEV"] == (SNOMED, "400096001")
    assert coded["MEL"] == (SNOMED, "372244006")
    assert all(coded[name][0] is None for name in ("SCC", "ACK", "SEK"))
    assert len({label.code for label in LABELS}) == len(CLASSES)


def test_the_full_real_labels_load_with_their_counts() -> None:
    samples = load_samples(full_dataset("pad-ufes-20") / "labels.csv")
    counts = {name: sum(s.diagnosis == name for s in samples) for name in CLASSES}
    assert counts == {"BCC": 427, "SCC": 93, "MEL": 21, "ACK": 389, "SEK": 144, "NEV": 127}
    assert all(s.label == CLASSES.index(s.diagnosis) for s in samples)
    assert sum(s.malignant for s in samples) == 427 + 93 + 21


def test_no_patient_is_ever_on_both_sides_of_a_split() -> None:
    samples = load_samples(PAD_UFES / "labels.csv")
    patients = np.array([s.patient_id for s in samples])
    folds = patient_folds(samples, 5)
    held_out = np.concatenate([test for _, test in folds])
    assert sorted(held_out.tolist()) == list(range(len(samples)))
    for train, test in folds:
        assert not set(patients[train]) & set(patients[test])


def test_unknown_diagnosis_is_refused_naming_the_line(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"")
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("file,diagnostic,patient_id,fitspatrick\na.jpg,BCC,P1,2\na.jpg,XYZ,P2,\n")
    with pytest.raises(DatasetError, match=r"labels.csv:3: unknown diagnostic 'XYZ'"):
        load_samples(csv_path)


def test_operating_threshold_reaches_the_target_sensitivity() -> None:
    rng = np.random.default_rng(0)
    positive = rng.random(200) < 0.4
    score = rng.random(200) + positive * 0.3
    threshold = operating_threshold(positive, score, 0.9)
    assert (score[positive] >= threshold).mean() >= 0.9
    assert (score[positive] > threshold).mean() < 0.9
