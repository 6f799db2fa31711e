"""Tissue colour rules: sRGB → CIELAB, and which pixels look like skin or conjunctiva.

The quality gate's content check (``models.quality``) asks what share of a photo these rules
accept; the Hb localiser and colour features (``models.hb``) use the same conversion and masks,
so a pixel the gate calls conjunctiva is one the localiser can find. Pure vectorised numpy on
(N, 3) uint8 arrays: no image handling, no thresholds of the gate's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class TissueFractions:
    """Share of the pixels that each colour rule accepts (0–1)."""

    skin: float
    conjunctiva: float
    red_mucosa: float
    skin_not_red: float


def _srgb_to_linear_table() -> NDArray[np.float32]:
    v = np.arange(256, dtype=np.float64) / 255.0
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4).astype(np.float32)


_LINEAR: Final = _srgb_to_linear_table()
# sRGB (D65) → XYZ, each row divided by the D65 white so that white maps to (1, 1, 1).
_RGB_TO_XYZ_N: Final = (
    np.array(
        [
            [0.4124564, 0.3575761, 0.1804375],
            [0.2126729, 0.7151522, 0.0721750],
            [0.0193339, 0.1191920, 0.9503041],
        ],
        dtype=np.float32,
    )
    / np.array([[0.95047], [1.0], [1.08883]], dtype=np.float32)
).T.copy()
_LAB_EPSILON: Final = (6.0 / 29.0) ** 3


def srgb_to_lab(
    pixels: NDArray[np.uint8],
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    """CIELAB (D65) L*, a*, b* of an (N, 3) uint8 sRGB array."""
    xyz = _LINEAR[pixels] @ _RGB_TO_XYZ_N
    f = np.where(xyz > _LAB_EPSILON, np.cbrt(xyz), xyz * np.float32(841.0 / 108.0) + np.float32(4.0 / 29.0))
    lightness = 116.0 * f[:, 1] - 16.0
    a = 500.0 * (f[:, 0] - f[:, 1])
    b = 200.0 * (f[:, 1] - f[:, 2])
    return lightness.astype(np.float32), a.astype(np.float32), b.astype(np.float32)


def tissue_masks(
    pixels: NDArray[np.uint8],
) -> tuple[NDArray[np.bool_], NDArray[np.bool_], NDArray[np.bool_]]:
    """(skin, red mucosa, conjunctiva) masks for an (N, 3) uint8 sRGB array.

    Skin: CIELAB hue 15–95° (reddened to yellow-leaning), chroma up to 60 with a floor that
    drops to 3 for very dark and to 4 for very pale skin, L* 10–97. Checked against the ten
    Monk Skin Tone swatches (#f6ede4 … #292420, which span Fitzpatrick I–VI), ITA°-category
    skin colours from very light to dark, and PAD-UFES-20 lesion photos; greys, blues, greens and
    saturated reds/oranges/yellows fall outside. Beige walls and wood fall inside — a colour
    rule cannot tell them apart, and rejecting a dark-skinned patient's photo would be worse.

    Conjunctiva = red mucosa (a* ≥ 14, hue −30–50°, L* 20–95) or pale mucosa (a* ≥ 8, hue
    15–65°, L* ≥ 45): anaemic conjunctiva is pale by definition, so a rule that demanded
    redness would refuse exactly the patients the Hb model is for. All 601 CP-AnemiC strips
    have ≥ 60 % conjunctiva pixels under it; pale skin of Fitzpatrick I–III also qualifies.
    """
    lightness, a, b = srgb_to_lab(pixels)
    chroma = np.hypot(a, b)
    hue = np.degrees(np.arctan2(b, a))
    chroma_floor = np.interp(lightness, [10.0, 25.0, 40.0, 80.0, 88.0, 97.0], [3.0, 3.0, 8.0, 8.0, 4.0, 4.0])
    skin = (
        (lightness >= 10.0)
        & (lightness <= 97.0)
        & (hue >= 15.0)
        & (hue <= 95.0)
        & (chroma >= chroma_floor)
        & (chroma <= 60.0)
    )
    red = (
        (lightness >= 20.0)
        & (lightness <= 95.0)
        & (a >= 14.0)
        & (hue >= -30.0)
        & (hue <= 50.0)
        & (chroma <= 75.0)
    )
    pale = (
        (lightness >= 45.0)
        & (lightness <= 95.0)
        & (a >= 8.0)
        & (hue >= 15.0)
        & (hue <= 65.0)
        & (chroma >= 8.0)
        & (chroma <= 60.0)
    )
    return skin, red, red | pale


def tissue_fractions(pixels: NDArray[np.uint8]) -> TissueFractions:
    """Fractions of an (N, 3) pixel array that look like skin / conjunctiva."""
    if pixels.shape[0] == 0:
        return TissueFractions(0.0, 0.0, 0.0, 0.0)
    skin, red, conjunctiva = tissue_masks(pixels)
    n = float(pixels.shape[0])
    return TissueFractions(
        skin=float(np.count_nonzero(skin)) / n,
        conjunctiva=float(np.count_nonzero(conjunctiva)) / n,
        red_mucosa=float(np.count_nonzero(red)) / n,
        skin_not_red=float(np.count_nonzero(skin & ~red)) / n,
    )
