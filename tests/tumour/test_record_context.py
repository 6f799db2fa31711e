"""The record comparison: age and body site (what a FHIR record holds) weighed into the image model."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from models.evaluation import balanced_accuracy
from models.evaluation.splits import grouped_kfold
from models.manifest import load_manifest
from models.registry import SHIPPED_MODEL_DIR
from models.tumour.dataset import CLASSES, TumourSample, load_samples
from models.tumour.metadata import (
    IMAGE_WITH_RECORD,
    QUESTIONS,
    RECORD_ONLY,
    MetadataComparison,
    compare_with_metadata,
)
from models.tumour.package import model_card
from models.tumour.record import fit_multinomial, record_features, record_fusion
from models.tumour.report import tumour_report
from models.tumour.training import TumourTrainingConfig
from tests.tumour.conftest import PAD_UFES


def test_the_record_context_is_age_and_site_only() -> None:
    samples = load_samples(PAD_UFES / "labels.csv")
    table, names, regions = record_features(PAD_UFES / "labels.csv", samples)
    assert names[:2] == ("age", "age²") and names[2:] == tuple(f"region={r}" for r in regions)
    assert not any(q in name for q in QUESTIONS for name in names), "no study-form answers"
    assert np.all(table[:, 2:].sum(1) == 1), "exactly one body region per photo"
    assert np.allclose(table[:, 1], table[:, 0] ** 2)


def test_a_record_that_says_nothing_leaves_the_image_probabilities() -> None:
    image = np.array([[0.5, 0.1, 0.1, 0.1, 0.1, 0.1], [0.05, 0.05, 0.6, 0.1, 0.1, 0.1]])
    prior = np.array([0.3, 0.1, 0.05, 0.2, 0.15, 0.2])
    assert record_fusion(image, np.tile(prior, (2, 1)), prior) == pytest.approx(image)
    # A record twice as likely as the prior for naevus moves probability to naevus, and only by Bayes.
    record = prior * np.array([1, 1, 1, 1, 1, 2.0])
    fused = record_fusion(image, np.tile(record / record.sum(), (2, 1)), prior)
    assert fused.sum(1) == pytest.approx([1.0, 1.0])
    assert np.all(fused[:, 5] > image[:, 5]) and np.all(fused[:, :5] < image[:, :5])
    assert fused[0, 5] / fused[0, 0] == pytest.approx(2 * image[0, 5] / image[0, 0])


def test_the_softmax_regression_learns_from_its_training_rows_only() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(len(CLASSES)), 20)
    features = np.eye(len(CLASSES))[labels] + rng.normal(0, 0.2, (len(labels), len(CLASSES)))
    train, test = np.arange(0, 120, 2), np.arange(1, 120, 2)
    names = tuple(f"x{i}" for i in range(len(CLASSES)))

    def fit_predict(target: NDArray[np.int_]) -> NDArray[np.float64]:
        return fit_multinomial(features, names, target, train).probabilities(features[test])

    predicted = fit_predict(labels)
    assert predicted.shape == (60, len(CLASSES)) and predicted.sum(1) == pytest.approx(np.ones(60))
    assert balanced_accuracy(labels[test], predicted.argmax(1)) == 1.0
    # Shuffled training labels carry no signal: the held-out rows are then near chance.
    shuffled = rng.permutation(labels)
    assert balanced_accuracy(labels[test], fit_predict(shuffled).argmax(1)) < 0.5


def _subset_comparison() -> tuple[list[TumourSample], NDArray[np.float64], MetadataComparison]:
    """The repository subset with an image model that knows the answer, a little blurred."""
    samples = load_samples(PAD_UFES / "labels.csv")
    labels = np.array([s.label for s in samples])
    probabilities = 0.5 * np.eye(len(CLASSES))[labels] + 0.5 / len(CLASSES)
    splits = grouped_kfold([s.patient_id for s in samples], 3, seed=0)
    comparison = compare_with_metadata(PAD_UFES / "labels.csv", samples, probabilities, splits, resamples=20)
    assert comparison is not None
    return samples, probabilities, comparison


def test_the_comparison_reports_the_record_alone_and_weighed_into_the_image() -> None:
    _, _, comparison = _subset_comparison()
    for grouping in ("malignant", "malignant_or_ack"):
        assert {"image", RECORD_ONLY, IMAGE_WITH_RECORD} <= {
            m for g, m in comparison.figures if g == grouping
        }
    out = comparison.to_json()
    weighed = {IMAGE_WITH_RECORD, "image+age", "image+site"}
    assert set(comparison.balanced_accuracy_6) == {"image", RECORD_ONLY, *weighed}
    # Each type's recall, for the photo and each weighing (the card's melanoma sentence reads it).
    assert set(comparison.recall_6) == {"image", *weighed}
    assert comparison.recall_6["image"] == pytest.approx([1.0] * len(CLASSES))
    assert sum(comparison.class_counts) == comparison.figures[("malignant", "image")].n
    assert set(out["six_class_recall"]) == {"classes", "photos", "image", *weighed}
    assert comparison.balanced_accuracy_6["image"] == 1.0
    assert comparison.record_features[:2] == ("age", "age²")
    assert (
        out["six_class_balanced_accuracy"][IMAGE_WITH_RECORD]
        == comparison.balanced_accuracy_6[IMAGE_WITH_RECORD]
    )
    assert out["malignant"][IMAGE_WITH_RECORD]["auroc"]["value"] is not None
    assert "six-class balanced accuracy" in comparison.format_table()
    # The gain is paired: the weighed result minus the image's, on the same resampled patients.
    gains = list(comparison.record_gain.values())
    assert len(gains) == 2 and all(g.low <= g.value <= g.high for g in gains)
    assert set(out["record_gain"]) == set(comparison.record_gain)


def test_the_card_gives_the_record_comparison_and_whether_it_is_served() -> None:
    samples, probabilities, comparison = _subset_comparison()
    labels = np.array([s.label for s in samples])
    report = tumour_report(
        probabilities, labels, [s.patient_id for s in samples], [s.fitzpatrick for s in samples], resamples=20
    )
    shipped = SHIPPED_MODEL_DIR / "tumour-padufes"
    manifest = load_manifest(shipped / "manifest.json")
    assert manifest.record is not None
    without = manifest.model_copy(update={"record": None})
    for package, served in ((without, "does not carry the record model"), (manifest, "**Served.**")):
        card = model_card(package, report, TumourTrainingConfig(), [0.9], comparison, shipped)
        assert f"malignant: {IMAGE_WITH_RECORD}" in card and f"malignant: {RECORD_ONLY}" in card
        assert "Weighed minus photo alone, paired patient bootstrap" in card
        assert "`Patient.birthDate`" in card and served in card
        assert "| MEL | " in card and "must not be read as ruling melanoma out" in card
    served_card = model_card(manifest, report, TumourTrainingConfig(), [0.9], comparison, shipped)
    assert manifest.record.sha256 in served_card and manifest.record.command in served_card
