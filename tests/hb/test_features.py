"""Colour features on real strips and on strips whose redness is known; the lower-half split."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from models.hb.dataset import load_dataset, load_strips
from models.hb.features import FEATURE_NAMES, TooLittleTissue, colour_features, lower_half
from models.hb.strip import Strip, load_strip, strip_tensor
from tests.hb.conftest import strip_png


def _feature(row: np.ndarray, name: str) -> float:
    return float(row[FEATURE_NAMES.index(name)])


def test_features_of_real_strips_are_finite_and_plausible(real_subset: Callable[[int], Path]) -> None:
    dataset = load_dataset(real_subset(40))
    strips = load_strips(dataset)
    rows = np.stack([colour_features(strip) for strip in strips])
    assert rows.shape == (len(strips), len(FEATURE_NAMES))
    assert np.isfinite(rows).all()
    a_mean = rows[:, FEATURE_NAMES.index("tissue_a_mean")]
    # Conjunctiva is red: CIELAB a* well above zero on every real strip.
    assert (a_mean > 5).all() and (a_mean < 60).all()
    ei = rows[:, FEATURE_NAMES.index("tissue_erythema_index_mean")]
    assert (ei > 0).all()
    assert (rows[:, FEATURE_NAMES.index("glare_fraction")] < 0.5).all()


def test_a_redder_strip_scores_redder() -> None:
    red = colour_features(load_strip(strip_png((205, 95, 110), seed=1)))
    pale = colour_features(load_strip(strip_png((220, 175, 165), seed=1)))
    for name in ("tissue_a_mean", "tissue_erythema_index_mean", "tissue_r_over_g_mean", "lower_a_mean"):
        assert _feature(red, name) > _feature(pale, name)


def test_lower_half_is_split_per_column_and_weighted() -> None:
    mask = np.zeros((10, 4), dtype=bool)
    mask[2:6, 0] = True  # column 0: rows 2–5, centre 3.5 → rows 4, 5 are lower
    mask[5:9, 3] = True  # column 3: rows 5–8, centre 6.5 → rows 7, 8 are lower
    lower = lower_half(mask)
    assert np.flatnonzero(lower[:, 0]).tolist() == [4, 5]
    assert np.flatnonzero(lower[:, 3]).tolist() == [7, 8]
    assert not lower[:, 1:3].any()
    # Lower half red, upper half pale: the weighted tissue mean leans to the lower half.
    rgb = np.zeros((40, 60, 3), dtype=np.uint8)
    rgb[:20] = (220, 175, 165)
    rgb[20:] = (200, 90, 105)
    row = colour_features(Strip(rgb, np.ones((40, 60), dtype=bool)))
    lower_a, upper_a = _feature(row, "lower_a_mean"), _feature(row, "upper_a_mean")
    assert lower_a > upper_a
    assert _feature(row, "tissue_a_mean") == pytest.approx((2 * lower_a + upper_a) / 3, rel=1e-6)
    assert _feature(row, "lower_minus_upper_a") == pytest.approx(lower_a - upper_a)


def test_too_little_tissue_is_refused() -> None:
    mask = np.zeros((20, 20), dtype=bool)
    mask[:5, :5] = True
    with pytest.raises(TooLittleTissue):
        colour_features(Strip(np.full((20, 20, 3), 180, dtype=np.uint8), mask))


def test_cnn_input_zeroes_background_and_carries_the_mask() -> None:
    strip = load_strip(strip_png((200, 110, 120)))
    tensor = strip_tensor(strip, 64, 128)
    assert tensor.shape == (4, 64, 128)
    mask = tensor[3]
    assert set(np.unique(mask).tolist()) <= {0.0, 1.0}
    assert 0.2 < mask.mean() < 0.9
    assert np.all(tensor[:3][:, mask == 0] == 0)
