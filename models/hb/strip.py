"""The conjunctiva strip: tissue pixels and their mask, cropped, as both Hb estimators read them.

A pre-cropped strip (CP-AnemiC style: transparent outside the tissue) is used as it is; a
whole photo goes through the localiser first (``models.hb.localise``). Either way the
estimators see the same thing: an RGB array cropped to the tissue's bounding box and a boolean
mask of the tissue inside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from models.intake import DecodedPhoto, IntakeLimits, decode_photo

# Alpha at or above this is tissue (the same line the quality gate draws).
OPAQUE_ALPHA: Final = 128
# Strips are reduced to this long side before any feature: colour statistics do not need more
# and it bounds the cost of a large crop. CP-AnemiC strips are 80–510 px long.
MAX_LONG_SIDE: Final = 512
# Fewer tissue pixels than this cannot give stable colour statistics.
MIN_TISSUE_PIXELS: Final = 200


@dataclass(frozen=True, eq=False)
class Strip:
    """RGB pixels (H, W, 3) uint8 cropped to the tissue, and the tissue mask (H, W)."""

    rgb: NDArray[np.uint8]
    mask: NDArray[np.bool_]

    @property
    def tissue_pixels(self) -> int:
        return int(np.count_nonzero(self.mask))


def load_strip(data: bytes, *, limits: IntakeLimits | None = None) -> Strip:
    """Decode a pre-cropped strip file; without an alpha mask the whole frame counts as tissue.

    Used for training data, whose strips are cut out already; photos from patients go through
    :func:`models.hb.localise.localise_conjunctiva` instead.
    """
    decoded = decode_photo(data, limits=limits or IntakeLimits())
    return strip_from_mask(decoded, _alpha_mask(decoded))


def precropped_mask(decoded: DecodedPhoto) -> NDArray[np.bool_] | None:
    """The tissue mask of a pre-cropped strip, or None when the photo has no transparency."""
    if decoded.alpha is None:
        return None
    return np.asarray(decoded.alpha) >= OPAQUE_ALPHA


def _alpha_mask(decoded: DecodedPhoto) -> NDArray[np.bool_]:
    mask = precropped_mask(decoded)
    if mask is None:
        width, height = decoded.pixels.size
        return np.ones((height, width), dtype=bool)
    return mask


def strip_from_mask(decoded: DecodedPhoto, mask: NDArray[np.bool_]) -> Strip:
    """Crop ``decoded`` to the bounding box of ``mask`` and shrink it to ``MAX_LONG_SIDE``."""
    rgb = np.asarray(decoded.pixels.convert("RGB"), dtype=np.uint8)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return Strip(rgb[:0, :0], mask[:0, :0])
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    rgb, mask = rgb[top:bottom, left:right], mask[top:bottom, left:right]
    height, width = mask.shape
    scale = MAX_LONG_SIDE / max(height, width)
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BOX))
        mask_img = Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.BOX)
        mask = np.asarray(mask_img) >= OPAQUE_ALPHA
    return Strip(np.ascontiguousarray(rgb), np.ascontiguousarray(mask))


def strip_tensor(strip: Strip, height: int, width: int) -> NDArray[np.float32]:
    """(4, height, width) float32: RGB in [0, 1] zeroed outside the tissue, then the mask.

    The strip is stretched to the fixed size (strips are all long and thin, aspect 2–5, so the
    distortion is mild and the network sees the whole tissue). Zeroing the background keeps the
    network from reading anything but tissue; the mask channel tells it where zero is background.
    """
    rgb = Image.fromarray(strip.rgb).resize((width, height), Image.Resampling.BILINEAR)
    mask = Image.fromarray(strip.mask.astype(np.uint8) * 255).resize(
        (width, height), Image.Resampling.BILINEAR
    )
    m = (np.asarray(mask, dtype=np.float32) / 255.0 >= 0.5).astype(np.float32)
    pixels = np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return np.concatenate([pixels * m[None], m[None]], axis=0)
