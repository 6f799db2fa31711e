"""The conjunctiva segmenter: composites with exact masks, a small labelled package, network first."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.hb.localise import localise_conjunctiva
from models.hb.scenes import eyelid_scene, negative_scene
from models.hb.segmenter import MIN_CONFIDENCE, TASK, installed_segmenter, segmenter_from
from models.hb.segmenter_card import REFERENCE_LABEL
from models.hb.segmenter_scores import MethodScore
from models.hb.segmenter_training import (
    SegmenterConfig,
    record_rescored,
    rescore,
    split_strips,
    train_segmenter,
)
from models.hb.strip import load_strip
from models.intake import DecodedPhoto, IntakeLimits, decode_photo
from models.registry import SHIPPED_MODEL_DIR, ModelRegistry, PackageRequest
from tests.hb.conftest import strip_png

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SHIPPED = "hb-conjunctiva-localiser"


def _decode(data: bytes) -> DecodedPhoto:
    return decode_photo(data, limits=IntakeLimits())


def _png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_composite_mask_is_exactly_where_the_strip_was_pasted() -> None:
    strip = load_strip(strip_png((200, 110, 120), size=(200, 70)))
    first = eyelid_scene(np.random.default_rng(5), strip)
    again = eyelid_scene(np.random.default_rng(5), strip)
    assert np.array_equal(first.rgb, again.rgb) and np.array_equal(first.mask, again.mask)
    assert first.positive and first.mask.shape == first.rgb.shape[:2]
    # The mask is the pasted tissue: its pixels are pinker than the frame around them.
    inside = first.rgb[first.mask].astype(float)
    assert (inside[:, 0] - inside[:, 1]).mean() > 20
    assert not negative_scene(np.random.default_rng(5)).positive


def test_held_out_strips_share_no_cv_group_with_training(real_subset: Callable[[int], Path]) -> None:
    split = split_strips(real_subset(60))
    assert split.train and split.held_out
    assert not split.train_groups & split.held_out_groups


def test_training_writes_a_reference_package_whose_card_gives_its_command_and_figures(
    real_subset: Callable[[int], Path], tmp_path: Path
) -> None:
    config = SegmenterConfig(epochs=1, train_scenes=48, held_out_scenes=12, validation_scenes=12)
    command = "photomarker train hb-localiser --data labels.csv --epochs 1"
    request = PackageRequest(tmp_path / "tiny-localiser", "tiny-localiser", "0.0.1", command, "labels.csv")
    report, manifest, _extra = train_segmenter(real_subset(60), config, request, lambda _line: None)
    assert manifest is not None and manifest.reference_only and REFERENCE_LABEL in manifest.display_name
    assert set(report.scores) == {"network", "classical", "network+fallback"}
    package = ModelRegistry([tmp_path]).get("tiny-localiser")
    card = package.card_text() or ""
    assert command in card and "Held-out composites" in card
    assert f"{report.scores['classical']['mean_iou']:.3f}" in card
    assert "Choosing the confidence threshold" in card
    assert "Starting weights: none" in card
    assert ModelRegistry([tmp_path]).for_task(TASK)[0].name == "tiny-localiser"
    # Every held-out rate carries its CI, in the manifest and in the card's table.
    metrics = manifest.evaluation.metrics
    for key in ("network_mean_iou", "network_detection_rate", "network_false_found_rate"):
        assert metrics[f"{key}_low"] <= metrics[key] <= metrics[f"{key}_high"]
    assert "detected [95% CI]" in card


def test_a_recorded_evaluation_adds_its_command_and_keeps_the_training_date(
    real_subset: Callable[[int], Path], tmp_path: Path
) -> None:
    config = SegmenterConfig(epochs=1, train_scenes=48, held_out_scenes=12, validation_scenes=12)
    command = "photomarker train hb-localiser --data labels.csv --epochs 1"
    directory = tmp_path / "tiny-localiser"
    request = PackageRequest(directory, "tiny-localiser", "0.0.1", command, "labels.csv")
    train_segmenter(real_subset(60), config, request, lambda _line: None)
    card_path = directory / "MODEL_CARD.md"
    card_path.write_text(card_path.read_text().replace(date.today().isoformat(), "2026-01-02"))
    weights = (directory / "weights.safetensors").read_bytes()

    segmenter = segmenter_from(ModelRegistry([tmp_path]).load("tiny-localiser"))
    rescored = rescore(real_subset(60), segmenter, config)
    evaluation = "photomarker evaluate hb-localiser --data labels.csv --model tiny-localiser"
    manifest = record_rescored(directory, segmenter, rescored, evaluation, config)

    assert manifest.evaluation.command == f"{command}\n{evaluation}"
    assert (directory / "weights.safetensors").read_bytes() == weights
    card = card_path.read_text()
    assert card.count("2026-01-02") == 1 and f"Trained by `{command}` on 2026-01-02" in card
    assert f"scored by `{evaluation}`" in card and "1 epochs" in card
    assert rescored[0].format_table() in card
    # The package still loads: its manifest and weights agree.
    assert ModelRegistry([tmp_path]).load("tiny-localiser").manifest == manifest


def test_held_out_cis_resample_whole_strip_groups() -> None:
    """Two children: one's composites all found, the other's all missed. Only two groups to
    resample, so the detection rate's CI spans almost everything; by composite it would not."""
    score = MethodScore()
    for index in range(20):
        score.add_positive(0.9 if index < 10 else 0.0, "child-a" if index < 10 else "child-b")
    score.negatives_found.extend([False] * 19 + [True])
    figures = score.to_json()
    assert figures["detection_rate"] == 0.5 and figures["false_found_rate"] == 0.05
    assert figures["detection_rate_low"] == 0.0 and figures["detection_rate_high"] == 1.0
    assert figures["false_found_rate_low"] == 0.0 < figures["false_found_rate_high"]


def test_the_shipped_segmenter_is_small_labelled_and_reproducible() -> None:
    package = ModelRegistry([SHIPPED_MODEL_DIR]).get(SHIPPED)
    assert package.weights_path.stat().st_size < 1024 * 1024
    manifest = package.manifest
    assert manifest.reference_only and REFERENCE_LABEL in manifest.display_name
    assert manifest.evaluation.command.startswith("photomarker train hb-localiser --data ")
    card = package.card_text() or ""
    training, evaluation = manifest.evaluation.command.split("\n")
    assert training in card and evaluation in card and "not for clinical use" in card
    assert evaluation.startswith("photomarker evaluate hb-localiser --data ")
    metrics = manifest.evaluation.metrics
    assert metrics["network_detection_rate_low"] <= metrics["network_detection_rate"]
    assert "detected [95% CI]" in card and "Starting weights: none" in card


def test_the_network_runs_first_and_finds_the_example_eyelid() -> None:
    photo = _decode((EXAMPLES / "eyelid.png").read_bytes())
    where = localise_conjunctiva(photo)
    assert where.found and where.method == "network" and where.fallback is None
    assert where.confidence is not None and where.confidence >= MIN_CONFIDENCE
    assert where.box is not None
    left, top, right, bottom = where.box
    width, height = photo.pixels.size
    # The pink band spans most of the frame's width in its middle, between the iris and the lashes.
    assert right - left > 0.7 * width
    assert 0.15 * height < top < 0.4 * height and 0.55 * height < bottom < 0.8 * height


def test_without_a_network_the_classical_localiser_answers_and_says_why() -> None:
    photo = _decode((EXAMPLES / "eyelid.png").read_bytes())
    where = localise_conjunctiva(photo, None)
    assert where.found and where.method == "classical"
    assert where.fallback == "no conjunctiva segmentation network is installed"


def test_a_precropped_strip_skips_the_network() -> None:
    where = localise_conjunctiva(_decode(strip_png((200, 110, 120))))
    assert where.method == "precropped" and where.confidence is None


@pytest.mark.parametrize("seed", [1, 2])
def test_a_grey_wall_has_no_conjunctiva_for_either_method(seed: int) -> None:
    rng = np.random.default_rng(seed)
    wall = np.clip(128 + rng.normal(0, 4, (300, 400, 3)), 0, 255).astype(np.uint8)
    segmenter = installed_segmenter()
    assert segmenter is not None
    assert segmenter.segment(wall).mask is None
    assert not localise_conjunctiva(_decode(_png(wall))).found


def test_an_eczema_patch_on_a_forearm_is_not_taken_for_conjunctiva() -> None:
    # The colour rule alone marks the red patch; the network, which runs first, does not.
    photo = _decode((EXAMPLES / "forearm-eczema.jpg").read_bytes())
    where = localise_conjunctiva(photo)
    assert not where.found and where.method == "network" and where.fallback is None
    assert localise_conjunctiva(photo, None).found
