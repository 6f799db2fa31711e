"""Lesion regions from the segmenter's map: kinds, the plaque-core rule, and how the phone was held."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from models.engine.execution import resolve_execution
from models.intake import IntakeLimits, decode_photo
from models.registry import SHIPPED_MODEL_DIR, ModelRegistry
from models.skin.lesions import LesionExtractor, lesion_regions, plaque_cores

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SIZE = 32


def _map(winner: np.ndarray, sure: float = 0.9) -> np.ndarray:
    """(3, S, S) probabilities whose per-pixel argmax is ``winner``."""
    rest = (1.0 - sure) / 2
    probabilities = np.full((3, *winner.shape), rest, dtype=np.float32)
    for index in range(3):
        probabilities[index][winner == index] = sure
    return probabilities


def _disc(cy: int, cx: int, radius: int) -> np.ndarray:
    rows, cols = np.mgrid[:SIZE, :SIZE]
    return np.asarray((rows - cy) ** 2 + (cols - cx) ** 2 <= radius**2)


def test_a_growth_ringed_by_rash_is_the_plaques_core() -> None:
    winner = np.zeros((SIZE, SIZE), dtype=np.int64)
    winner[_disc(16, 16, 10)] = 1
    winner[_disc(16, 16, 4)] = 2
    assert plaque_cores(winner).sum() == _disc(16, 16, 4).sum()
    (region,) = lesion_regions(_map(winner))
    assert region.kind == "rash" and region.mask.sum() == _disc(16, 16, 10).sum()


def test_a_growth_beside_a_rash_stays_a_growth() -> None:
    winner = np.zeros((SIZE, SIZE), dtype=np.int64)
    winner[_disc(16, 9, 7)] = 1
    growth = _disc(16, 20, 4) & (winner == 0)
    winner[growth] = 2
    assert not plaque_cores(winner).any()
    kinds = sorted(region.kind for region in lesion_regions(_map(winner)))
    assert kinds == ["rash", "tumour"]


def test_unsure_regions_are_not_lesions() -> None:
    winner = np.zeros((SIZE, SIZE), dtype=np.int64)
    winner[_disc(16, 16, 6)] = 2
    assert [r.kind for r in lesion_regions(_map(winner, sure=0.9))] == ["tumour"]
    assert lesion_regions(_map(winner, sure=0.5)) == []


def test_what_is_found_does_not_depend_on_how_the_phone_was_held() -> None:
    """The shipped extractor on the example eczema photo, upright and turned a quarter (no EXIF)."""
    loaded = ModelRegistry([SHIPPED_MODEL_DIR]).load("skin-lesion-reference")
    extractor = LesionExtractor(loaded, resolve_execution("cpu"), views=None)
    upright = Image.open(EXAMPLES / "forearm-eczema.jpg").convert("RGB")
    found = []
    for turned in (upright, upright.transpose(Image.Transpose.ROTATE_90)):
        buffer = io.BytesIO()
        turned.save(buffer, "PNG")
        (lesions,) = extractor([decode_photo(buffer.getvalue(), limits=IntakeLimits())])
        found.append(sorted((lesion.kind, round(lesion.area, 2)) for lesion in lesions))
    assert found[0] == found[1]
    assert [kind for kind, _ in found[0]] == ["rash"], found[0]
