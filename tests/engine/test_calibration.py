"""Calibration and the clinical result builders: the numbers the engine acts on are fitted right."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from models.engine.calibration import (
    averaged_probabilities,
    expected_calibration_error,
    fit_temperature,
    quantile_threshold,
    residual_std,
)
from models.engine.ensemble import fit_feature_gaussian, mahalanobis_score
from models.engine.reference_train import base_manifest
from models.engine.stages import Prediction
from models.errors import InvalidModelManifest
from models.manifest import Calibration, LabelSpec, ModelManifest, OutputSpec, load_manifest, save_manifest
from models.pipelines import check_fits_analysis, hb_result, tumour_result
from models.results import Abstention


def test_temperature_scaling_undoes_overconfidence() -> None:
    rng = np.random.default_rng(0)
    n, true_t = 4000, 3.0
    true_logits = rng.normal(0, 1.5, (n, 3))
    probs = np.exp(true_logits) / np.exp(true_logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(3, p=p) for p in probs])
    overconfident = torch.tensor(true_logits * true_t, dtype=torch.float32)  # a net 3x too sure
    fit = fit_temperature(overconfident, torch.from_numpy(labels))
    assert fit.temperature == pytest.approx(true_t, rel=0.1)
    assert fit.nll_after < fit.nll_before
    before = expected_calibration_error(averaged_probabilities(overconfident).numpy(), labels)
    after = expected_calibration_error(averaged_probabilities(overconfident, fit.temperature).numpy(), labels)
    assert after < before / 2


def test_temperature_is_fitted_on_the_member_and_view_average() -> None:
    logits = torch.randn(3, 4, 50, 2)  # members, views, photos, classes
    labels = torch.randint(0, 2, (50,))
    fit = fit_temperature(logits, labels)
    assert fit.temperature > 0 and fit.nll_after <= fit.nll_before + 1e-9


def test_thresholds_and_residuals() -> None:
    scores = np.arange(1, 101, dtype=np.float64)
    assert quantile_threshold(scores, 0.99) == pytest.approx(99.01)
    assert residual_std(np.array([1.0, 2.0]), np.array([2.0, 4.0])) == pytest.approx(math.sqrt(2.5))
    with pytest.raises(ValueError, match="quantile"):
        quantile_threshold(scores, 1.0)


def test_ood_score_is_small_near_the_training_features_and_large_far_away() -> None:
    rng = np.random.default_rng(1)
    features = torch.tensor(rng.normal(0, 1, (500, 8)), dtype=torch.float32)
    groups = torch.tensor(rng.integers(0, 2, 500))
    means, precision = fit_feature_gaussian(features, groups, 2)
    near = mahalanobis_score(features[None, :5], means[None], precision[None])
    far = mahalanobis_score(features[None, :5] + 20, means[None], precision[None])
    assert float(near.max()) < 2 < float(far.min())


def test_a_manifest_round_trips_through_json(tmp_path: Path) -> None:
    manifest = base_manifest()
    save_manifest(manifest, tmp_path / "manifest.json")
    assert load_manifest(tmp_path) == manifest


def test_unknown_fields_and_bad_hashes_are_refused(tmp_path: Path) -> None:
    data = base_manifest().model_dump(mode="json")
    (tmp_path / "manifest.json").write_text(json.dumps({**data, "threshold": 1}))
    with pytest.raises(InvalidModelManifest, match="threshold"):
        load_manifest(tmp_path)
    with pytest.raises(ValueError, match="64 lower-case hex"):
        ModelManifest.model_validate({**data, "weights": {**data["weights"], "sha256": "abc"}})


def regressor_manifest() -> ModelManifest:
    return base_manifest().model_copy(
        update={
            "task": "hb",
            "output": OutputSpec(kind="regressor", unit="g/dL"),
            "labels": (LabelSpec(code="hb", display="Haemoglobin"),),
            "calibration": Calibration(residual_std=1.2),
        }
    )


def test_the_hb_interval_adds_residual_and_spread_in_quadrature() -> None:
    manifest = regressor_manifest()
    check_fits_analysis(manifest, "hb")
    estimate = hb_result(Prediction(None, 11.0, 0.5, None, None, None), manifest)
    half = 1.959963984540054 * math.hypot(1.2, 0.5)
    assert (estimate.g_dl, estimate.low, estimate.high) == pytest.approx((11.0, 11.0 - half, 11.0 + half))
    assert estimate.interval_level == 0.95


def test_a_package_that_cannot_fill_an_analysis_is_refused() -> None:
    with pytest.raises(InvalidModelManifest, match="needs a regressor"):
        check_fits_analysis(base_manifest(), "hb")
    with pytest.raises(InvalidModelManifest, match="malignant"):
        check_fits_analysis(base_manifest(), "skin-tumour")
    uncalibrated = regressor_manifest().model_copy(update={"calibration": Calibration()})
    with pytest.raises(InvalidModelManifest, match="residual_std"):
        check_fits_analysis(uncalibrated, "hb")


def test_tumour_malignancy_is_the_sum_over_malignant_types() -> None:
    labels = (
        LabelSpec(code="nev", display="Naevus", group="benign"),
        LabelSpec(code="mel", display="Melanoma", group="malignant"),
        LabelSpec(code="bcc", display="Basal cell carcinoma", group="malignant"),
    )
    manifest = base_manifest().model_copy(update={"labels": labels})
    abstention = Abstention("test", spread=0.3)
    assessment = tumour_result(Prediction((0.5, 0.3, 0.2), None, 0.3, None, abstention, None), manifest)
    assert assessment.malignancy_probability == pytest.approx(0.5)
    assert [t.concept.code for t in assessment.types] == ["nev", "mel", "bcc"]
    assert assessment.abstention is abstention
