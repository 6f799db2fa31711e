"""The classical quality gate: is this photo sharp, well exposed, big enough and of the right thing?

Four checks on a decoded photo, each with its measured value, its threshold and — when it fails —
advice a patient can act on. Everything runs on one reduced copy (long side 512 px) with
vectorised numpy, so the gate costs a few tens of milliseconds even for a 12 MP photo; no
network is involved, which is why it can run before any model and on every inbox photo.

Pre-cropped inputs (an alpha mask marks the tissue, as in conjunctiva strips cut out of a
photo) are judged only on their opaque pixels, against lower floors for size and sharpness:
their size is the size of the tissue, not of the camera frame, and smooth mucosa has little
texture for a Laplacian to find — sharp and blurred strips measure alike (see
``QualityThresholds``).

The colour rules the content check applies (sRGB → CIELAB, skin and conjunctiva masks) live in
``models.tissue_colour``, shared with the Hb localiser and features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from models.intake import DecodedPhoto
from models.results import PhotoKind, QualityCheck, QualityCheckName, QualityVerdict
from models.tissue_colour import tissue_fractions

ANALYSIS_LONG_SIDE: Final = 512
CONTENT_LONG_SIDE: Final = 256
# Grey levels at or beyond these count as clipped (crushed shadows / blown highlights).
CLIP_LOW: Final = 4
CLIP_HIGH: Final = 251
# Alpha at or above this counts as opaque tissue in a pre-cropped input.
OPAQUE_ALPHA: Final = 128
# Without ``expected``: call it conjunctiva when red mucosa is at least this share of the tissue
# in view. An eyelid close-up is about half everted conjunctiva (examples/eyelid.png: 0.48); the
# eczema patch in examples/forearm-eczema.jpg is 0.22 of its skin. Redness covering over a third
# of a skin photo would be misread — the reason callers should pass ``expected`` when they can.
AUTO_CONJUNCTIVA_SHARE: Final = 0.35

ADVICE_BLUR: Final = "Hold the phone still and tap the screen to focus, then take the photo again."
ADVICE_DARK: Final = "The photo is too dark: move to even light, avoid flash glare."
ADVICE_BRIGHT: Final = "The photo is too bright or has glare: move to even light, avoid flash glare."
ADVICE_RESOLUTION: Final = "Move closer or use a higher resolution camera setting."
ADVICE_CONTENT: Final[dict[PhotoKind | None, str]] = {
    "skin": "Make sure the skin area fills the frame.",
    "conjunctiva": "Make sure the pulled-down lower eyelid fills the frame.",
    None: "Make sure the skin area or the pulled-down lower eyelid fills the frame.",
}

ADVICE_CONJUNCTIVA_NOT_FOUND: Final = (
    "Pull the lower eyelid down so the inner lining fills the middle of the frame, in good light."
)


class _QualitySettings(Protocol):
    """The settings fields the gate reads (satisfied by ``plugin.settings.Settings``)."""

    @property
    def quality_min_side_px(self) -> int: ...

    @property
    def quality_min_sharpness(self) -> float: ...

    @property
    def quality_max_clipped_fraction(self) -> float: ...

    @property
    def quality_min_mean_brightness(self) -> float: ...

    @property
    def quality_max_mean_brightness(self) -> float: ...

    @property
    def quality_min_content_fraction(self) -> float: ...


@dataclass(frozen=True)
class QualityThresholds:
    """Pass marks for the gate; the first six mirror the ``quality_*`` settings and their defaults.

    ``precropped_*`` apply when the photo has an alpha mask (a pre-cropped tissue strip):
    - ``precropped_min_side_px`` 32: CP-AnemiC strips are 33–270 px on the short side (median
      88) and still hold thousands of tissue pixels, plenty for colour features.
    - ``precropped_min_sharpness`` 0.5: on CP-AnemiC strips the Laplacian variance is 1.4–500
      (median 15) and a Gaussian blur of radius 4 still leaves 2–4, so it cannot tell sharp from
      blurred smooth mucosa; this floor only catches a crop with no detail at all.
    """

    min_side_px: int = 224
    min_sharpness: float = 60.0
    max_clipped_fraction: float = 0.25
    min_mean_brightness: float = 40.0
    max_mean_brightness: float = 230.0
    min_content_fraction: float = 0.05
    precropped_min_side_px: int = 32
    precropped_min_sharpness: float = 0.5

    @classmethod
    def from_settings(cls, settings: _QualitySettings) -> QualityThresholds:
        return cls(
            min_side_px=settings.quality_min_side_px,
            min_sharpness=settings.quality_min_sharpness,
            max_clipped_fraction=settings.quality_max_clipped_fraction,
            min_mean_brightness=settings.quality_min_mean_brightness,
            max_mean_brightness=settings.quality_max_mean_brightness,
            min_content_fraction=settings.quality_min_content_fraction,
        )


def assess_quality(
    photo: DecodedPhoto, thresholds: QualityThresholds, expected: PhotoKind | None = None
) -> QualityVerdict:
    """Blur, exposure, resolution and content checks on one photo.

    With ``expected`` the content check asks for that kind; without it the gate reports what
    colour alone suggests. Colour cannot tell a pale (anaemic) conjunctiva from skin, so callers
    that know which pipeline the photo is for should pass ``expected``.
    """
    rgb, opaque = _analysis_view(photo)
    grey = _luma(rgb)
    precropped = photo.alpha is not None
    content, found = _content_check(rgb, opaque, thresholds, expected)
    return QualityVerdict(
        checks=(
            _blur_check(grey, opaque, thresholds, precropped),
            _exposure_check(grey, opaque, thresholds),
            _resolution_check(photo, thresholds, precropped),
            content,
        ),
        content_found=found,
    )


# --- the analysis copy --------------------------------------------------------------------------


def _analysis_view(photo: DecodedPhoto) -> tuple[NDArray[np.uint8], NDArray[np.bool_] | None]:
    """RGB at long side ≤ 512 and, for pre-cropped inputs, the opaque-pixel mask.

    Smaller photos are not enlarged: upsampling would invent smoothness and lower the sharpness.
    """
    image, alpha = photo.pixels, photo.alpha
    width, height = image.size
    scale = ANALYSIS_LONG_SIDE / max(width, height)
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        # reducing_gap=1 box-averages by an integer factor first: fast and anti-aliased.
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=1.0)
        if alpha is not None:
            alpha = alpha.resize(size, Image.Resampling.BILINEAR, reducing_gap=1.0)
    rgb = np.asarray(image, dtype=np.uint8)
    opaque = None if alpha is None else np.asarray(alpha, dtype=np.uint8) >= OPAQUE_ALPHA
    return rgb, opaque


def _luma(rgb: NDArray[np.uint8]) -> NDArray[np.float32]:
    """ITU-R BT.601 luma, the grey Pillow's 'L' mode uses."""
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return rgb.astype(np.float32) @ weights


def _erode(mask: NDArray[np.bool_], steps: int) -> NDArray[np.bool_]:
    """Shrink a mask by ``steps`` pixels (4-neighbourhood); outside the frame is not opaque."""
    out = mask.copy()
    for _ in range(steps):
        shrunk = out.copy()
        shrunk[1:, :] &= out[:-1, :]
        shrunk[:-1, :] &= out[1:, :]
        shrunk[:, 1:] &= out[:, :-1]
        shrunk[:, :-1] &= out[:, 1:]
        shrunk[0, :] = shrunk[-1, :] = False
        shrunk[:, 0] = shrunk[:, -1] = False
        out = shrunk
    return out


# --- the four checks ----------------------------------------------------------------------------


def _blur_check(
    grey: NDArray[np.float32],
    opaque: NDArray[np.bool_] | None,
    thresholds: QualityThresholds,
    precropped: bool,
) -> QualityCheck:
    """Variance of the 4-neighbour Laplacian: a sharp photo has strong fine detail."""
    threshold = thresholds.precropped_min_sharpness if precropped else thresholds.min_sharpness
    sharpness = 0.0
    if grey.shape[0] >= 3 and grey.shape[1] >= 3:
        centre = grey[1:-1, 1:-1]
        laplacian = grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4.0 * centre
        if opaque is not None:
            # Two pixels in from the cut-out's edge, so the edge itself does not count as detail.
            laplacian = laplacian[_erode(opaque, 2)[1:-1, 1:-1]]
        if laplacian.size:
            sharpness = float(laplacian.var())
    passed = sharpness >= threshold
    return QualityCheck(
        name=QualityCheckName.BLUR,
        passed=passed,
        value=round(sharpness, 2),
        threshold=threshold,
        advice=None if passed else ADVICE_BLUR,
    )


def _exposure_check(
    grey: NDArray[np.float32], opaque: NDArray[np.bool_] | None, thresholds: QualityThresholds
) -> QualityCheck:
    """Clipped fraction and mean brightness; the value reported is the one that decided.

    A pass reports the clipped fraction (UCUM "1"); a failure reports whichever measure failed,
    the clipped fraction first, else the mean grey level against the bound it crossed.
    """
    values = grey[opaque] if opaque is not None else grey.ravel()
    if values.size == 0:
        return QualityCheck(
            name=QualityCheckName.EXPOSURE,
            passed=False,
            value=1.0,
            threshold=thresholds.max_clipped_fraction,
            advice=ADVICE_DARK,
        )
    dark = float(np.count_nonzero(values <= CLIP_LOW)) / values.size
    bright = float(np.count_nonzero(values >= CLIP_HIGH)) / values.size
    clipped = dark + bright
    mean = float(values.mean())
    if clipped > thresholds.max_clipped_fraction:
        return QualityCheck(
            name=QualityCheckName.EXPOSURE,
            passed=False,
            value=round(clipped, 4),
            threshold=thresholds.max_clipped_fraction,
            advice=ADVICE_DARK if dark > bright else ADVICE_BRIGHT,
        )
    if mean < thresholds.min_mean_brightness or mean > thresholds.max_mean_brightness:
        too_dark = mean < thresholds.min_mean_brightness
        return QualityCheck(
            name=QualityCheckName.EXPOSURE,
            passed=False,
            value=round(mean, 1),
            threshold=thresholds.min_mean_brightness if too_dark else thresholds.max_mean_brightness,
            unit="{grey-level}",
            advice=ADVICE_DARK if too_dark else ADVICE_BRIGHT,
        )
    return QualityCheck(
        name=QualityCheckName.EXPOSURE,
        passed=True,
        value=round(clipped, 4),
        threshold=thresholds.max_clipped_fraction,
    )


def _resolution_check(photo: DecodedPhoto, thresholds: QualityThresholds, precropped: bool) -> QualityCheck:
    """Short side of the photo as taken (before any reduced-scale decode)."""
    threshold = thresholds.precropped_min_side_px if precropped else thresholds.min_side_px
    short_side = min(photo.original_size)
    passed = short_side >= threshold
    return QualityCheck(
        name=QualityCheckName.RESOLUTION,
        passed=passed,
        value=float(short_side),
        threshold=float(threshold),
        unit="{px}",
        advice=None if passed else ADVICE_RESOLUTION,
    )


def _content_check(
    rgb: NDArray[np.uint8],
    opaque: NDArray[np.bool_] | None,
    thresholds: QualityThresholds,
    expected: PhotoKind | None,
) -> tuple[QualityCheck, PhotoKind | None]:
    """Fraction of (opaque) pixels whose colour looks like the expected tissue."""
    # Colour fractions need no fine detail: every other pixel of the 512 copy is plenty and
    # quarters the cost of the Lab conversion, the gate's most expensive step.
    if max(rgb.shape[:2]) > CONTENT_LONG_SIDE:
        rgb = rgb[::2, ::2]
        opaque = opaque[::2, ::2] if opaque is not None else None
    pixels = rgb[opaque] if opaque is not None else rgb.reshape(-1, 3)
    fractions = tissue_fractions(pixels)
    minimum = thresholds.min_content_fraction
    skin, conjunctiva = fractions.skin, fractions.conjunctiva
    tissue = fractions.red_mucosa + fractions.skin_not_red

    found: PhotoKind | None
    if expected is not None:
        value = skin if expected == "skin" else conjunctiva
        other: PhotoKind = "conjunctiva" if expected == "skin" else "skin"
        other_value = conjunctiva if expected == "skin" else skin
        found = expected if value >= minimum else (other if other_value >= minimum else None)
    elif fractions.red_mucosa >= minimum and fractions.red_mucosa >= AUTO_CONJUNCTIVA_SHARE * tissue:
        found, value = "conjunctiva", conjunctiva
    elif skin >= minimum:
        found, value = "skin", skin
    elif conjunctiva >= minimum:
        found, value = "conjunctiva", conjunctiva
    else:
        found, value = None, max(skin, conjunctiva)
    passed = value >= minimum
    check = QualityCheck(
        name=QualityCheckName.CONTENT,
        passed=passed,
        value=round(value, 4),
        threshold=minimum,
        advice=None if passed else ADVICE_CONTENT[expected],
    )
    return check, found


def conjunctiva_found_check(found: bool, area_fraction: float, min_area_fraction: float) -> QualityCheck:
    """The localiser's verdict as a quality check: the share of the frame found to be conjunctiva.

    Made by ``models.hb.localise`` (the gate itself runs no network); a photo whose conjunctiva
    cannot be found is a photo to retake, not an Hb analysis that failed.
    """
    return QualityCheck(
        name=QualityCheckName.CONJUNCTIVA_FOUND,
        passed=found,
        value=round(area_fraction, 4),
        threshold=min_area_fraction,
        advice=None if found else ADVICE_CONJUNCTIVA_NOT_FOUND,
    )
