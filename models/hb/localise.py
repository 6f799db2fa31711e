"""Finding the palpebral conjunctiva in a whole photo of a pulled-down lower eyelid.

Three ways, tried in this order:

1. **Pre-cropped strip** (transparent background, as CP-AnemiC ships them): the alpha mask
   *is* the tissue; nothing is searched.
2. **The segmentation network** (``models.hb.segmenter``, package ``hb-conjunctiva-localiser``,
   reference — trained on generated composites): its largest confident component.
3. **The classical localiser** — the fallback, used when no segmenter package is installed
   (a site may remove it). It is not asked when the network is unsure: on validation
   composites every photo the network was unsure of held no conjunctiva, and the colour rule,
   which marks red skin and red objects as conjunctiva far more often (over 40 % of held-out
   composites without any, against a few per cent for the network), turned them into
   detections (figures in the segmenter's model card). It looks for the pink-red mucosa band
   an everted lower lid shows between the eye and the lid skin:

   a. reduce the photo to a long side of 384 px; convert to CIELAB;
   b. a pixel is a candidate when the conjunctiva colour rule of the quality gate accepts it
      *and* it is redder (a*) than the photo's own skin by a margin — the lid skin around the
      conjunctiva is the reference, which keeps the rule working across skin tones and light;
   c. clean the mask (a 3×3 opening), take its 8-connected components, and pick the largest
      one that is wider than tall and covers at least 1 % of the frame: the everted palpebral
      conjunctiva is a horizontal crescent.

When nothing qualifies the result says why; the photo must not be scored, and the quality
result says the conjunctiva was not found (:func:`conjunctiva_found_check`).
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from models.hb.components import label_components
from models.hb.segmenter import ConjunctivaSegmenter, installed_segmenter
from models.hb.strip import MIN_TISSUE_PIXELS, Strip, precropped_mask, strip_from_mask
from models.intake import DecodedPhoto
from models.quality import conjunctiva_found_check as _found_check
from models.results import QualityCheck
from models.tissue_colour import srgb_to_lab, tissue_masks

WORK_LONG_SIDE: Final = 384
# a* units the conjunctiva must exceed the photo's skin by; pale (anaemic) mucosa is still
# redder than the lid skin next to it, by ≥ 6 on the synthetic eyelid and on CP-AnemiC strips
# set against typical Ghanaian skin tones.
REDNESS_MARGIN: Final = 6.0
MIN_AREA_FRACTION: Final = 0.01
MIN_ASPECT: Final = 1.3  # width / height of the component's bounding box

Method = Literal["precropped", "network", "classical"]
# "installed": the segmenter package the registry finds (shipped or the site's own), if any.
SegmenterChoice = ConjunctivaSegmenter | None | Literal["installed"]


@dataclass(frozen=True, eq=False)
class Localisation:
    """Where the conjunctiva is: its mask on the photo (full size), or why it was not found.

    ``fallback`` says why the classical method was asked (no network installed);
    ``confidence`` is the network's (mean probability in its best component), when it ran.
    """

    mask: NDArray[np.bool_] | None
    method: Method
    reason: str | None = None
    box: tuple[int, int, int, int] | None = None  # (left, top, right, bottom) on the photo
    fallback: str | None = None
    confidence: float | None = None

    @property
    def found(self) -> bool:
        return self.mask is not None

    @property
    def area_fraction(self) -> float:
        """Share of the frame localised as conjunctiva (0 when none was found)."""
        return 0.0 if self.mask is None else float(np.count_nonzero(self.mask)) / self.mask.size


# One localisation per photo object: the quality gate's check and the Hb pipeline ask for the
# same photo in one analysis, and the network should run once.
_CACHE: weakref.WeakKeyDictionary[DecodedPhoto, tuple[object, Localisation]] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def localise_conjunctiva(photo: DecodedPhoto, segmenter: SegmenterChoice = "installed") -> Localisation:
    """The palpebral conjunctiva of ``photo``; a pre-cropped strip's alpha mask is used as it is."""
    mask = precropped_mask(photo)
    if mask is not None:
        if np.count_nonzero(mask) < MIN_TISSUE_PIXELS:
            return Localisation(None, "precropped", "the cut-out holds too little tissue")
        return Localisation(mask, "precropped", box=_box(mask))
    network = installed_segmenter() if segmenter == "installed" else segmenter
    with _CACHE_LOCK:
        cached = _CACHE.get(photo)
    if cached is not None and cached[0] is network:
        return cached[1]
    where = _network_then_classical(photo, network)
    with _CACHE_LOCK:
        _CACHE[photo] = (network, where)
    return where


def _network_then_classical(photo: DecodedPhoto, network: ConjunctivaSegmenter | None) -> Localisation:
    if network is None:
        return _classical(photo, fallback="no conjunctiva segmentation network is installed")
    rgb = np.asarray(photo.pixels.convert("RGB"), dtype=np.uint8)
    seen = network.segment(rgb)
    if seen.mask is not None:
        return Localisation(seen.mask, "network", box=_box(seen.mask), confidence=seen.confidence)
    # The network's "no" stands: handing its unsure cases to the colour rule found no conjunctiva
    # it had missed on validation composites and turned photos without one into detections.
    return Localisation(
        None, "network", "no palpebral conjunctiva was found in the photo", confidence=seen.confidence
    )


def conjunctiva_strip(
    photo: DecodedPhoto, segmenter: SegmenterChoice = "installed"
) -> tuple[Strip | None, Localisation]:
    """The strip both estimators read, or None with the localisation that says why not."""
    where = localise_conjunctiva(photo, segmenter)
    if where.mask is None:
        return None, where
    strip = strip_from_mask(photo, where.mask)
    if strip.tissue_pixels < MIN_TISSUE_PIXELS:
        return None, Localisation(None, where.method, "too little conjunctiva is visible")
    return strip, where


def conjunctiva_found_check(photo: DecodedPhoto, model_dir: Path | None = None) -> QualityCheck:
    """The quality gate's "conjunctiva found" check for a photo meant for the Hb analysis."""
    strip, where = conjunctiva_strip(photo, installed_segmenter(model_dir))
    return _found_check(strip is not None, where.area_fraction, MIN_AREA_FRACTION)


def _classical(photo: DecodedPhoto, fallback: str | None = None) -> Localisation:
    width, height = photo.pixels.size
    scale = min(1.0, WORK_LONG_SIDE / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = np.asarray(photo.pixels.convert("RGB").resize(size, Image.Resampling.BOX), dtype=np.uint8)
    flat = small.reshape(-1, 3)
    skin, _red, conjunctiva = tissue_masks(flat)
    _, a, _ = srgb_to_lab(flat)
    reference = skin & ~conjunctiva
    # With no lid skin in view to compare with, use a redness lid skin rarely reaches.
    enough_skin = np.count_nonzero(reference) >= 0.02 * flat.shape[0]
    skin_a = float(np.median(a[reference])) if enough_skin else 12.0
    candidate = (conjunctiva & (a >= skin_a + REDNESS_MARGIN)).reshape(small.shape[:2])
    candidate = _open(candidate)
    best = _best_component(candidate)
    if best is None:
        return Localisation(
            None, "classical", "no palpebral conjunctiva was found in the photo", fallback=fallback
        )
    full = Image.fromarray(best.astype(np.uint8) * 255).resize((width, height), Image.Resampling.NEAREST)
    mask = np.asarray(full) > 0
    return Localisation(mask, "classical", box=_box(mask), fallback=fallback)


def _box(mask: NDArray[np.bool_]) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


def _shifted_stack(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    padded = np.pad(mask, 1, mode="constant", constant_values=False)
    h, w = mask.shape
    return np.stack([padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)])


def _open(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """3×3 erosion then dilation: removes specks (vessels on skin, single red pixels)."""
    eroded = np.asarray(_shifted_stack(mask).all(axis=0))
    return np.asarray(_shifted_stack(eroded).any(axis=0))


def _best_component(mask: NDArray[np.bool_]) -> NDArray[np.bool_] | None:
    labels, count = label_components(mask)
    if count == 0:
        return None
    min_area = MIN_AREA_FRACTION * mask.size
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    best_label, best_area = 0, 0
    for label in np.argsort(areas[1:])[::-1] + 1:
        area = int(areas[label])
        if area < min_area:
            break
        rows, cols = np.nonzero(labels == label)
        aspect = (cols.max() - cols.min() + 1) / (rows.max() - rows.min() + 1)
        if aspect >= MIN_ASPECT and area > best_area:
            best_label, best_area = int(label), area
            break  # components are visited largest first
    return None if best_label == 0 else np.asarray(labels == best_label)
