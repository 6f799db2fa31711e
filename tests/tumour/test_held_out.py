"""The shipped recipe's held-out outputs, kept in the repository, give back the card's figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.engine.ensemble import aggregate_classifier
from models.manifest import load_manifest
from models.registry import SHIPPED_MODEL_DIR
from models.tumour.cross_validation import cross_validate
from models.tumour.dataset import CLASSES, load_samples
from models.tumour.held_out import KEPT, keep_outputs
from models.tumour.package import calibrate
from models.tumour.report import tumour_report
from models.tumour.training import TumourTrainingConfig
from tests.datasets import REPO, full_dataset

HELD_OUT = REPO / "models" / "tumour" / "held-out"
# The recipe of the shipped package (its manifest's command), whose folds the files hold.
SHIPPED_RECIPE = TumourTrainingConfig(
    folds=5, epochs=8, backbone="efficientnet_lite0", size=224, learning_rate=0.001, checkpoint_dir=HELD_OUT
)


def test_the_kept_outputs_cover_every_photo_once_and_hold_no_network() -> None:
    files = sorted(HELD_OUT.glob("tumour-cv-*-fold*.pt"))
    assert len(files) == 5
    held = []
    for path in files:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        assert set(saved) == set(KEPT), "outputs only: no member weights"
        members, views, n, classes = saved["logits"].shape
        assert (members, views, classes) == (1, 4, len(CLASSES)) and n == len(saved["test"])
        assert torch.isfinite(saved["logits"]).all()
        held.extend(saved["test"].tolist())
    assert sorted(held) == list(range(1201)), "the folds split PAD-UFES-20's 1,201 photos"


def test_keeping_outputs_drops_the_networks(tmp_path: Path) -> None:
    full = {
        "test": torch.arange(3),
        "logits": torch.randn(1, 4, 3, 6),
        "ood": torch.rand(3, dtype=torch.float64),
        "members": [{"w": torch.ones(2, dtype=torch.float16)}],
    }
    torch.save(full, tmp_path / "tumour-cv-abc-fold0.pt")
    (written,) = keep_outputs(tmp_path, tmp_path / "kept")
    kept = torch.load(written, map_location="cpu", weights_only=True)
    assert set(kept) == set(KEPT) and torch.equal(kept["logits"], full["logits"])


def test_the_kept_outputs_recompute_the_shipped_cards_figures() -> None:
    csv_path = full_dataset("pad-ufes-20") / "labels.csv"
    samples = load_samples(csv_path)
    # Every fold comes from its file, so no image is read and nothing is trained.
    cv = cross_validate(samples, torch.empty(0), SHIPPED_RECIPE, lambda line: None)
    labels = np.array([s.label for s in samples])
    calibration, _ = calibrate(cv, labels, SHIPPED_RECIPE.tta_views)
    probabilities = aggregate_classifier(cv.logits, calibration.temperature).probabilities.numpy()
    report = tumour_report(
        probabilities.astype(np.float64),
        labels,
        [s.patient_id for s in samples],
        [s.fitzpatrick for s in samples],
        resamples=10,
    )
    manifest = load_manifest(SHIPPED_MODEL_DIR / "tumour-padufes" / "manifest.json")
    shipped = manifest.evaluation.metrics
    assert manifest.calibration.temperature == pytest.approx(calibration.temperature, abs=1e-6)
    assert report.malignant.metrics["auroc"].value == pytest.approx(shipped["malignant_auroc"], abs=5e-4)
    assert report.malignant.metrics["specificity"].value == pytest.approx(
        shipped["malignant_specificity"], abs=5e-5
    )
    assert report.balanced_accuracy_6 == pytest.approx(shipped["six_class_balanced_accuracy"], abs=5e-5)
