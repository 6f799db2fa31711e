"""Abstention: a photo the models cannot read gets "no conclusion", said plainly, not a score."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from models.engine.execution import Execution
from models.engine.stages import Prediction
from models.intake import DecodedPhoto
from models.registry import LoadedModel
from tests.engine.conftest import noise_photo, reference_pipeline, skin_photo, wall_photo


def only(predictions: list[Prediction]) -> Prediction:
    (prediction,) = predictions
    return prediction


def test_ordinary_patches_are_read_and_not_abstained(reference: LoadedModel, cpu: Execution) -> None:
    photos = [skin_photo(seed, marker_at=(0.6, 0.4) if seed % 2 else None) for seed in range(6)]
    predictions = reference_pipeline(reference, cpu, heatmaps=False)(photos)
    for seed, prediction in enumerate(predictions):
        assert prediction.abstention is None, (seed, prediction)
        assert prediction.probabilities is not None
        assert (prediction.probabilities[1] > 0.5) == bool(seed % 2)
        assert (
            prediction.ood_score is not None and prediction.ood_score < reference.manifest.abstention.max_ood
        )  # type: ignore[operator]


@pytest.mark.parametrize(("make", "what"), [(noise_photo, "noise"), (wall_photo, "a blank wall")])
def test_a_photo_of_noise_or_a_blank_wall_is_abstained_on(
    reference: LoadedModel, cpu: Execution, make: Callable[[int], DecodedPhoto], what: str
) -> None:
    photos = [make(seed) for seed in range(3)]
    for prediction in reference_pipeline(reference, cpu, heatmaps=False)(photos):
        abstention = prediction.abstention
        assert abstention is not None, what
        assert "unlike those the model was trained on" in abstention.reason
        assert abstention.ood_score is not None
        assert abstention.ood_score > reference.manifest.abstention.max_ood  # type: ignore[operator]
        assert abstention.spread == prediction.spread


def test_the_settings_can_override_the_calibrated_thresholds(reference: LoadedModel, cpu: Execution) -> None:
    # A site that sets the OOD threshold absurdly high gets predictions on noise (their choice) …
    lenient = reference_pipeline(reference, cpu, heatmaps=False, max_ood=1e9, max_spread=1e9)
    assert only(lenient([noise_photo()])).abstention is None
    # … and a tiny spread threshold makes the engine abstain on disagreement alone.
    strict = reference_pipeline(reference, cpu, heatmaps=False, max_spread=1e-9, max_ood=1e9)
    faint = skin_photo(1, marker_at=(0.5, 0.5), radius=0.04, opacity=0.4)  # views may well disagree
    abstention = only(strict([faint])).abstention
    assert abstention is not None and "disagree" in abstention.reason
