"""Abstention: a photo the models cannot read gets "no conclusion", said plainly, not a score."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from models.engine.execution import Execution
from models.engine.options import EngineOptions
from models.engine.stages import AbstentionLimits, Prediction
from models.intake import DecodedPhoto
from models.model_stages import abstention_limits, build_model_pipeline
from models.registry import SHIPPED_MODEL_DIR, LoadedModel, ModelRegistry
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


# --- how many outputs there are to disagree (PHOTOMARKER_INFERENCE_TTA_VIEWS) -----------------------


def test_one_output_per_photo_turns_spread_abstention_off_and_keeps_the_ood_check(
    reference: LoadedModel,
) -> None:
    manifest = reference.manifest
    calibrated = abstention_limits(manifest, EngineOptions(), outputs=2)
    assert calibrated == AbstentionLimits(manifest.abstention.max_spread, manifest.abstention.max_ood)
    alone = abstention_limits(manifest, EngineOptions(max_spread=0.01), outputs=1)
    assert alone == AbstentionLimits(None, manifest.abstention.max_ood)


@pytest.fixture(scope="module")
def single_member() -> LoadedModel:
    """The shipped tumour package: one member, so one view is one output per photo."""
    loaded = ModelRegistry([SHIPPED_MODEL_DIR]).load("tumour-padufes")
    assert len(loaded.network().members) == 1
    return loaded


def test_one_view_of_one_member_never_abstains_on_spread_but_still_on_ood(
    single_member: LoadedModel, cpu: Execution
) -> None:
    photo = skin_photo(1, size=160, marker_at=(0.5, 0.5))

    def predict(**options: object) -> Prediction:
        pipeline = build_model_pipeline(
            single_member,
            cpu,
            EngineOptions(device="cpu", heatmaps=False, **options),  # type: ignore[arg-type]
        )
        return only(pipeline([photo]))

    # Two views (identity, half turn) disagree a little: a tiny threshold abstains on it …
    two = predict(tta_views=2, max_spread=1e-9, max_ood=1e9)
    assert two.spread > 0 and two.abstention is not None and "disagree" in two.abstention.reason
    # … one view has nothing to disagree with: spread 0, and no abstention on spread however strict …
    one = predict(tta_views=1, max_spread=1e-9, max_ood=1e9)
    assert one.spread == 0 and one.abstention is None
    assert predict(tta=False, max_spread=1e-9, max_ood=1e9).abstention is None
    # … while a photo unlike the training photos is still refused with one view.
    refused = predict(tta_views=1, max_spread=1e-9, max_ood=1e-9).abstention
    assert refused is not None and "unlike those the model was trained on" in refused.reason
