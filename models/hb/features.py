"""Colour features of the palpebral conjunctiva, for the regularised Hb regressor.

Pallor is a colour: less haemoglobin, less red. The features are the usual colorimetric
measures of redness over the tissue pixels — the erythema index (100·log10 R/G), CIELAB a*
(and L*, b*), R/G and chromaticity ratios, saturation — as means, spreads and quantiles.

The U-Tokyo/LPixel study found by Grad-CAM that the lower half of the conjunctiva carries the
signal, so the tissue is split per column at its vertical midpoint (the strip is curved, so a
single horizontal line would cut it unevenly): the lower half's pixels count twice in the
whole-tissue statistics, and the lower and upper halves are also described on their own
together with their difference (which cancels part of the lighting, since both halves share it).

Specular glare (any channel ≥ 250) and deep shadow or lashes (L* < 15) are left out: neither
says anything about the tissue's colour.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

from models.hb.strip import MIN_TISSUE_PIXELS, Strip
from models.tissue_colour import srgb_to_lab

LOWER_HALF_WEIGHT: Final = 2.0
_GLARE_LEVEL: Final = 250
_SHADOW_L: Final = 15.0

_PIXEL_MEASURES: Final = ("L", "a", "b", "erythema_index", "r_over_g", "r_chroma", "g_chroma", "saturation")
_QUANTILES: Final = (0.1, 0.5, 0.9)


def _names() -> tuple[str, ...]:
    names: list[str] = []
    for region in ("tissue", "lower", "upper"):
        names += [f"{region}_{m}_mean" for m in _PIXEL_MEASURES]
    names += [f"tissue_{m}_sd" for m in ("L", "a", "erythema_index")]
    names += [f"tissue_{m}_q{round(q * 100)}" for m in ("a", "erythema_index") for q in _QUANTILES]
    names += [f"lower_minus_upper_{m}" for m in ("L", "a", "erythema_index")]
    names += ["glare_fraction", "shadow_fraction"]
    return tuple(names)


FEATURE_NAMES: Final = _names()


class TooLittleTissue(ValueError):
    """Raised when a strip has too few usable pixels for colour statistics."""


def lower_half(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Per column, the tissue pixels at or below that column's tissue midpoint."""
    height = mask.shape[0]
    rows = np.arange(height, dtype=np.float64)[:, None]
    count = mask.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = (rows * mask).sum(axis=0) / count
    return np.asarray(mask & (rows >= np.nan_to_num(centre, nan=float(height))[None, :]))


def colour_features(strip: Strip) -> NDArray[np.float64]:
    """One row of :data:`FEATURE_NAMES` for ``strip``; raises :class:`TooLittleTissue`."""
    rgb = strip.rgb.reshape(-1, 3)
    tissue = strip.mask.reshape(-1)
    lower = lower_half(strip.mask).reshape(-1)
    lightness, a, b = srgb_to_lab(rgb)
    glare = (rgb >= _GLARE_LEVEL).any(axis=1)
    shadow = lightness < _SHADOW_L
    usable = tissue & ~glare & ~shadow
    n_tissue = int(np.count_nonzero(tissue))
    if np.count_nonzero(usable) < MIN_TISSUE_PIXELS:
        raise TooLittleTissue(f"{int(np.count_nonzero(usable))} usable tissue pixels")

    channels = rgb.astype(np.float64) + 1.0  # +1: no log of or division by zero on black pixels
    red, green, blue = channels[:, 0], channels[:, 1], channels[:, 2]
    total = red + green + blue
    high = channels.max(axis=1)
    measures = {
        "L": lightness.astype(np.float64),
        "a": a.astype(np.float64),
        "b": b.astype(np.float64),
        "erythema_index": 100.0 * np.log10(red / green),
        "r_over_g": red / green,
        "r_chroma": red / total,
        "g_chroma": green / total,
        "saturation": (high - channels.min(axis=1)) / high,
    }
    weights = np.where(lower, LOWER_HALF_WEIGHT, 1.0)
    regions = {
        "tissue": (usable, weights),
        "lower": (usable & lower, None),
        "upper": (usable & ~lower, None),
    }
    row: list[float] = []
    means: dict[tuple[str, str], float] = {}
    for region, (select, region_weights) in regions.items():
        # A half can be empty on a very thin strip; then it stands in for the whole tissue.
        if np.count_nonzero(select) < MIN_TISSUE_PIXELS // 4:
            select, region_weights = usable, None
        w = None if region_weights is None else region_weights[select]
        for name in _PIXEL_MEASURES:
            value = float(np.average(measures[name][select], weights=w))
            means[(region, name)] = value
            row.append(value)
    w_tissue = weights[usable]
    for name in ("L", "a", "erythema_index"):
        values = measures[name][usable]
        mean = np.average(values, weights=w_tissue)
        row.append(float(np.sqrt(np.average((values - mean) ** 2, weights=w_tissue))))
    for name in ("a", "erythema_index"):
        row += [float(q) for q in np.quantile(measures[name][usable], _QUANTILES)]
    for name in ("L", "a", "erythema_index"):
        row.append(means[("lower", name)] - means[("upper", name)])
    row.append(float(np.count_nonzero(tissue & glare)) / n_tissue)
    row.append(float(np.count_nonzero(tissue & shadow)) / n_tissue)
    return np.asarray(row, dtype=np.float64)
