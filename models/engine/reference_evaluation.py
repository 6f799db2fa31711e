"""Calibrate and evaluate the reference model through the engine. Reference only.

``models.engine.reference_train`` writes the package, then loads it back through the registry
and runs the engine's own stages (pre-process, predict, post-process) on generated photos: on the
validation set to fit the temperature and the abstention thresholds (``calibrate``), then on the
test and OOD sets for the metrics in the manifest and the card (``evaluate``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np
import torch

from models.engine.calibration import (
    averaged_probabilities,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    quantile_threshold,
)
from models.engine.ensemble import aggregate_classifier, mahalanobis_score
from models.engine.execution import resolve_execution
from models.engine.options import EngineOptions
from models.engine.reference_data import LABEL_PRESENT, ReferenceSet, Uint8Image, as_photo
from models.engine.stages import PostProcess, Predict, Prediction, PreProcess, RawOutputs
from models.evaluation.metrics import FloatArray, Metric, accuracy, auroc, bootstrap
from models.manifest import AbstentionPolicy, Calibration
from models.model_stages import model_stages
from models.registry import ModelRegistry

# Abstention thresholds: this quantile of the validation photos' scores (≈1 % abstain per test) …
ABSTAIN_QUANTILE: Final = 0.99
# … but a spread threshold never below this: views that agree within 5 probability points agree.
MIN_SPREAD_THRESHOLD: Final = 0.05


def raw_outputs(stages: tuple[PreProcess, Predict, PostProcess], images: Uint8Image) -> RawOutputs:
    """Pre-process and predict ``images`` in chunks; outputs joined along the photo axis."""
    pre, predict, _ = stages
    parts = [
        predict(pre([as_photo(image) for image in images[start : start + 32]]))
        for start in range(0, len(images), 32)
    ]
    return RawOutputs(
        outputs=torch.cat([part.outputs for part in parts], dim=2),
        features=torch.cat([part.features for part in parts], dim=1),
        cams=None,
        boxes=tuple(box for part in parts for box in part.boxes),
    )


def engine_stages(directory: Path) -> tuple[PreProcess, Predict, PostProcess]:
    """The package as the registry loads it (hash checked), through the engine's composition."""
    loaded = ModelRegistry([directory.parent]).load(directory.name)
    options = EngineOptions(device="cpu", heatmaps=False)
    pre, predict, post = model_stages(loaded, resolve_execution("cpu"), options)
    if not (isinstance(pre, PreProcess) and isinstance(predict, Predict) and isinstance(post, PostProcess)):
        raise TypeError("model_stages no longer returns pre_process, predict, post_process")
    return pre, predict, post


def calibrate(directory: Path, validation: ReferenceSet, seed: int) -> tuple[Calibration, AbstentionPolicy]:
    """Fit the temperature and abstention thresholds on the validation set (generated from ``seed``)."""
    pre, predict, post = engine_stages(directory)
    raw = raw_outputs((pre, predict, post), validation.images)
    labels = torch.from_numpy(validation.labels)
    fit = fit_temperature(raw.outputs, labels)
    spread = aggregate_classifier(raw.outputs, fit.temperature).spread.numpy()
    if post.ood is None:
        raise ValueError("the package has no OOD statistics to calibrate")
    ood = mahalanobis_score(raw.features, *post.ood).numpy()
    described = f"validation set ({len(labels)} generated patches, seed {seed}), all TTA views"
    calibration = Calibration(
        temperature=round(fit.temperature, 6),
        fitted_on=described,
        nll_before=round(fit.nll_before, 6),
        nll_after=round(fit.nll_after, 6),
    )
    policy = AbstentionPolicy(
        max_spread=round(max(quantile_threshold(spread, ABSTAIN_QUANTILE), MIN_SPREAD_THRESHOLD), 6),
        max_ood=round(quantile_threshold(ood, ABSTAIN_QUANTILE), 6),
        ood_method="feature-mahalanobis",
        rule=f"each threshold is the {ABSTAIN_QUANTILE:.0%} quantile of that score on the {described} "
        f"(the spread threshold at least {MIN_SPREAD_THRESHOLD:g})",
    )
    return calibration, policy


def _mean_of_first(values: FloatArray, _unused: FloatArray) -> FloatArray:
    return np.asarray(np.mean(values, axis=-1))


def _share_correct_of_kept(correct: FloatArray, kept: FloatArray) -> FloatArray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray((correct * kept).sum(axis=-1) / kept.sum(axis=-1))


def _with_interval(name: str, metric: Metric, truth: FloatArray, score: FloatArray) -> dict[str, float]:
    """``name`` and its bootstrap 95 % CI as ``name_low`` / ``name_high`` (the manifest's convention)."""
    return bootstrap({name: metric}, truth, score)[name].figures(name)


def evaluate(directory: Path, test: ReferenceSet, ood: dict[str, Uint8Image]) -> dict[str, float]:
    """Test-set and OOD metrics of the calibrated package, run through the engine's stages."""
    stages = engine_stages(directory)
    raw = raw_outputs(stages, test.images)
    predictions = stages[2](raw)
    labels = test.labels
    probs = np.array([p.probabilities for p in predictions], dtype=np.float64)
    abstained = np.array([p.abstention is not None for p in predictions])
    predicted = probs.argmax(1)
    uncalibrated = averaged_probabilities(raw.outputs).numpy()
    correct = (predicted == labels).astype(np.float64)
    kept = (~abstained).astype(np.float64)
    present = (labels == LABEL_PRESENT).astype(np.float64)
    # Generated patches are drawn independently, so the 95 % CIs resample single photos.
    metrics = {
        **_with_interval("test_accuracy", accuracy, labels.astype(np.float64), predicted.astype(np.float64)),
        **_with_interval("test_auroc", auroc, present, probs[:, LABEL_PRESENT]),
        "test_nll": negative_log_likelihood(torch.from_numpy(probs), torch.from_numpy(labels)),
        "test_ece": expected_calibration_error(probs, labels),
        "test_ece_before_temperature": expected_calibration_error(uncalibrated, labels),
        **_with_interval("test_abstention_rate", _mean_of_first, 1.0 - kept, kept),
        **_with_interval("test_accuracy_when_not_abstaining", _share_correct_of_kept, correct, kept),
        "test_mean_tta_spread": float(np.mean([p.spread for p in predictions])),
    }
    for kind, images in ood.items():
        ood_predictions: list[Prediction] = stages[2](raw_outputs(stages, images))
        declined = np.array([p.abstention is not None for p in ood_predictions], dtype=np.float64)
        metrics |= _with_interval(f"ood_{kind}_abstention_rate", _mean_of_first, declined, declined)
    return {key: round(value, 4) for key, value in metrics.items()}
