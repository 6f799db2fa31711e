"""The conjunctiva segmenter: composites with exact masks, a small labelled package, network first."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.hb.localise import localise_conjunctiva
from models.hb.scenes import eyelid_scene, negative_scene
from models.hb.segmenter import MIN_CONFIDENCE, TASK, installed_segmenter
from models.hb.segmenter_card import REFERENCE_LABEL
from models.hb.segmenter_training import SegmenterConfig, split_strips, train_segmenter
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
    assert ModelRegistry([tmp_path]).for_task(TASK)[0].name == "tiny-localiser"


def test_the_shipped_segmenter_is_small_labelled_and_reproducible() -> None:
    package = ModelRegistry([SHIPPED_MODEL_DIR]).get(SHIPPED)
    assert package.weights_path.stat().st_size < 1024 * 1024
    manifest = package.manifest
    assert manifest.reference_only and REFERENCE_LABEL in manifest.display_name
    assert manifest.evaluation.command.startswith("photomarker train hb-localiser --data ")
    card = package.card_text() or ""
    assert manifest.evaluation.command in card and "not for clinical use" in card


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
