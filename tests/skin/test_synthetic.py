"""The generator plants what it says it plants: the ground truth the skin models learn from."""

from __future__ import annotations

import numpy as np
import pytest

from models.skin.labels import BODY_PART_KEYS, NOT_SKIN
from models.skin.synthetic import generate_scene
from models.skin.synthetic_body import FITZPATRICK_TONES
from models.skin.synthetic_lesions import CONDITIONS, TUMOUR


def test_same_seed_same_photo() -> None:
    first = generate_scene(np.random.default_rng(7), size=128)
    second = generate_scene(np.random.default_rng(7), size=128)
    assert np.array_equal(first.image, second.image)
    assert np.array_equal(first.lesion_mask, second.lesion_mask)


@pytest.mark.parametrize("condition", CONDITIONS)
def test_each_condition_plants_lesions_with_masks_and_boxes(condition: str) -> None:
    scene = generate_scene(
        np.random.default_rng(3), size=160, body_part="trunk-front", condition=condition, zoom=1.2
    )
    assert scene.condition == condition
    assert scene.lesions and scene.lesion_mask.any()
    for lesion in scene.lesions:
        left, top, right, bottom = lesion.box
        assert scene.lesion_mask[top:bottom, left:right].any()
    assert (scene.tis is not None) == (condition == "atopic-dermatitis")


@pytest.mark.parametrize("part", BODY_PART_KEYS)
def test_healthy_photos_have_no_lesion(part: str) -> None:
    scene = generate_scene(np.random.default_rng(11), size=128, body_part=part, condition=None)
    assert not scene.lesion_mask.any() and scene.condition is None and scene.tis is None
    assert scene.body_part == part


def test_not_skin_photos_never_carry_lesions() -> None:
    scene = generate_scene(np.random.default_rng(5), size=128, body_part=NOT_SKIN, condition="psoriasis")
    assert scene.condition is None and not scene.lesion_mask.any()


def test_fitzpatrick_types_run_light_to_dark() -> None:
    brightness = FITZPATRICK_TONES.mean(axis=1)
    assert np.all(np.diff(brightness) < 0)
    means = []
    for fitz in range(1, 7):
        scene = generate_scene(
            np.random.default_rng(2),
            size=128,
            body_part="trunk-back",
            condition=None,
            fitzpatrick=fitz,
            zoom=2.5,
            blur=0.0,
        )
        means.append(float(scene.image[32:96, 32:96].mean()))
    assert means == sorted(means, reverse=True)


def _redness(image: np.ndarray, mask: np.ndarray) -> float:
    pixels = image[mask].astype(np.float64)
    return float((pixels[:, 0] - pixels[:, 1]).mean())


def test_planted_erythema_is_redder_at_each_level() -> None:
    """Same photo, same lesion, only the erythema item changes: redness rises with the level."""
    redness = []
    for level in range(4):
        scene = generate_scene(
            np.random.default_rng(4),
            size=160,
            body_part="upper-limb",
            condition="atopic-dermatitis",
            tis=(level, 0, 1),
            fitzpatrick=2,
            zoom=1.5,
            blur=0.0,
        )
        redness.append(_redness(scene.image, scene.lesion_mask))
    assert redness == sorted(redness) and redness[3] - redness[0] > 20


def test_tumours_are_dark() -> None:
    scene = generate_scene(
        np.random.default_rng(9),
        size=160,
        body_part="trunk-front",
        condition=TUMOUR,
        fitzpatrick=1,
        zoom=1.5,
        blur=0.0,
    )
    inside = scene.image[scene.lesion_mask].mean()
    outside = scene.image[~scene.lesion_mask].mean()
    assert inside < outside - 30
