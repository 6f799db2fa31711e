"""Lesion extraction: the lesion segmenter on whole photos → lesion regions → full-resolution crops.

Each connected region of "rash" or "tumour-like growth" becomes a square crop at the photo's
full decoded resolution, so a lesion photographed from across the room is cut out as well as a
close-up (the Tohoku lesion extraction). A growth is handed on as a cut-out on transparency; a
photo that already is a cut-out is one lesion, the one the sender chose.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, cast

import numpy as np
import torch
from PIL import Image, ImageFilter

from models.engine.execution import Execution, autocast
from models.engine.stages import PreparedNetwork
from models.engine.tta import expand, invert_geometry, plan_from
from models.intake import DecodedPhoto
from models.registry import LoadedModel
from models.skin.dataset import components, square_box
from models.skin.training import NORMALISATION

LesionKind = Literal["rash", "tumour"]
# A photo cut out on transparency is one lesion the sender chose: every lesion analysis scores it.
FoundKind = Literal["rash", "tumour", "cut-out"]
Box = tuple[int, int, int, int]
# A region smaller than this share of the segmenter's map is noise, not a lesion (~9 px at 96²).
MIN_LESION_SHARE: Final = 0.001
# ...or one the segmenter is unsure of (mean probability of its class). Chosen on a separate
# generated validation set (`photomarker generate skin --out build/skin-synthetic/val --count 400
# --seed 3`): 0.6 raised "no lesion" on healthy skin from 0.87 to 0.92 for detection 0.944 → 0.931.
MIN_LESION_CONFIDENCE: Final = 0.6
MAX_LESIONS: Final = 8
# A growth whose one-pixel ring is at least this share rash is that rash's core (plaque_cores).
RINGED_BY_RASH: Final = 0.5
# A found lesion's crop: this share of the lesion's longest side added on each side. A rash's
# crop keeps the margin its networks were trained with (models.skin.dataset.square_box); a
# growth's (for the tumour classifier only) puts the lesion at the median share of its frame in
# the classifier's training photos (1 / (1 + 2 × 0.65) ≈ 0.44): held out, 0.25 lost 0.033
# [0.014, 0.053] malignant AUROC against the whole frame, 0.65 lost 0.017 [0.005, 0.029]
# (bench/crop_scale.py).
CROP_MARGIN: Final = 0.25
GROWTH_MARGIN: Final = 0.65
# A cut-out is scored as its sender framed it, the way PAD-UFES-20 frames the tumour classifier's
# training photos (the lesion's longest side a median 0.44 of the frame's, 5th percentile 0.17):
# on the cross-validation folds' held-out photos, a crop tight around the lesion (5 % margin, the
# lesion 0.91 of the side) lost malignant AUROC and balanced accuracy (bench/crop_scale.py). Only
# a lesion smaller than this share of its frame is cropped, to this share.
MIN_CUT_OUT_SHARE: Final = 0.17


@dataclass(frozen=True)
class FoundLesion:
    kind: FoundKind
    box: Box  # square crop box in photo pixels
    area: float  # share of the photo the region covers
    crop: DecodedPhoto
    # Where the segmenter marked it, on its own (map-sized) grid; None for a photo cut out on
    # transparency (the segmenter is not asked). Kept for evaluation: where exactly was it found.
    region: np.ndarray | None = field(default=None, compare=False, repr=False)


class LesionExtractor:
    """The segmenter on whole photos → lesion regions → full-resolution square crops.

    ``views``: the first that many test-time views of the package's plan (its manifest lists
    the identity and the mirror image), each map turned back before the views are averaged;
    None: all of them.
    """

    def __init__(self, loaded: LoadedModel, execution: Execution, *, views: int | None) -> None:
        manifest = loaded.manifest
        self.manifest = manifest
        self.network = PreparedNetwork(loaded.network(), execution)
        self.execution = execution
        self.size = manifest.input.size
        self.plan = plan_from(manifest.tta, views=views)
        self._mean = torch.tensor(NORMALISATION.mean).view(1, 3, 1, 1)
        self._std = torch.tensor(NORMALISATION.std).view(1, 3, 1, 1)

    def probabilities(self, photos: Sequence[DecodedPhoto]) -> torch.Tensor:
        """(N, C, S, S) class probabilities, members and views averaged."""
        arrays = [
            np.asarray(_rgb(photo).resize((self.size, self.size), Image.Resampling.BILINEAR))
            for photo in photos
        ]
        x01 = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(255)
        n = x01.shape[0]
        inputs = expand(x01, self.plan, self._mean, self._std)  # view-major (K·N, 3, S, S)
        total: torch.Tensor | None = None
        with torch.inference_mode(), autocast(self.execution):
            for index, view in enumerate(self.plan.views):
                chunk = inputs[index * n : (index + 1) * n].to(self.execution.device)
                for output in self.network.forward_only(chunk):
                    probabilities = invert_geometry(torch.softmax(output.float(), dim=1), view.geometry)
                    total = probabilities if total is None else total + probabilities
        if total is None:  # a package always has at least one member
            raise RuntimeError("the lesion model has no members")
        return (total / (len(self.plan) * len(self.network.runners))).cpu()

    def __call__(self, photos: Sequence[DecodedPhoto]) -> list[tuple[FoundLesion, ...]]:
        maps = self.probabilities(photos).numpy()
        return [self._lesions(photo, classes) for photo, classes in zip(photos, maps, strict=True)]

    def _lesions(self, photo: DecodedPhoto, probabilities: np.ndarray) -> tuple[FoundLesion, ...]:
        if photo.alpha is not None:
            return (cut_out_lesion(photo, photo.alpha),)
        size = probabilities.shape[-1]
        width, height = photo.pixels.size
        found: list[FoundLesion] = []
        for region in lesion_regions(probabilities):
            rows, cols = np.nonzero(region.mask)
            box = (
                int(cols.min() * width / size),
                int(rows.min() * height / size),
                int(np.ceil((cols.max() + 1) * width / size)),
                int(np.ceil((rows.max() + 1) * height / size)),
            )
            margin = GROWTH_MARGIN if region.kind == "tumour" else CROP_MARGIN
            square = square_box(box, (width, height), margin)
            # A growth is handed over as a cut-out (its surround transparent), the way the tumour
            # classifier's training photos (PAD-UFES-20) show lesions; a rash keeps its
            # surroundings, which its models were trained with.
            alpha = _cut_out(region.mask, (width, height), square) if region.kind == "tumour" else None
            crop = _crop(photo, square, alpha)
            found.append(FoundLesion(region.kind, square, region.share, crop, region.mask))
        found.sort(key=lambda lesion: lesion.area, reverse=True)
        return tuple(found[:MAX_LESIONS])


def cut_out_lesion(
    photo: DecodedPhoto, cut: Image.Image, min_share: float = MIN_CUT_OUT_SHARE
) -> FoundLesion:
    """A photo cut out on transparency (a lesion cut-out) is one lesion: the opaque part.

    Its kind is not asked of the segmenter (trained on whole photos, it has never seen a
    cut-out): the sender chose the lesion, and each lesion analysis scores it, in its frame
    made square (the square around a lesion under ``min_share`` of the frame's side).
    """
    width, height = photo.pixels.size
    left, top, right, bottom = cut.getbbox() or (0, 0, width, height)
    extent = max(right - left, bottom - top)
    side = max(width, height)
    if extent < min_share * side:
        side, centre = math.ceil(extent / min_share), ((left + right) / 2, (top + bottom) / 2)
    else:
        centre = (width / 2, height / 2)
    x, y = round(centre[0] - side / 2), round(centre[1] - side / 2)
    square = (x, y, x + side, y + side)  # outside the frame: transparent
    opaque = np.asarray(cut) >= 128
    share = float(opaque.mean()) if opaque.any() else 1.0
    return FoundLesion("cut-out", square, share, _crop(photo, square, cut.crop(square)))


@dataclass(frozen=True, eq=False)
class Region:
    """One lesion the segmenter marked, on its own (map-sized) grid."""

    kind: LesionKind
    mask: np.ndarray  # bool (S, S)
    share: float  # of the map
    confidence: float  # mean probability of its class over its pixels


def lesion_regions(probabilities: np.ndarray) -> list[Region]:
    """The connected regions of each lesion class that are big and sure enough to be lesions.

    A "growth" ringed by rash is the rash's own core, not a growth: its pixels join the rash
    around it (:func:`plaque_cores`). Shared by the pipeline and ``photomarker evaluate lesion``,
    so the figures describe what runs.
    """
    winner = probabilities.argmax(0)
    size = winner.shape[0]
    cores = plaque_cores(winner)
    rash = (winner == 1) | cores
    # A core is sure to be lesion, less sure which kind: it counts with both kinds' probability.
    rash_confidence = np.where(cores, probabilities[1] + probabilities[2], probabilities[1])
    regions: list[Region] = []
    for kind, pixels, confidence_map in (
        ("rash", rash, rash_confidence),
        ("tumour", (winner == 2) & ~cores, probabilities[2]),
    ):
        labels, count = components(pixels)
        for component in range(1, count + 1):
            mask = labels == component
            share = float(mask.sum()) / (size * size)
            confidence = float(confidence_map[mask].mean())
            if share >= MIN_LESION_SHARE and confidence >= MIN_LESION_CONFIDENCE:
                regions.append(Region(cast(LesionKind, kind), mask, share, confidence))
    return regions


def plaque_cores(winner: np.ndarray) -> np.ndarray:
    """Growth regions whose surrounding ring is mostly rash: the red middle of an eczema plaque.

    A segmenter that learnt real growths (photographs) beside generated rashes (drawings) may call
    the densest middle of a real-looking plaque a growth; a growth *beside* a rash shares only part
    of its border with it and stays a growth.
    """
    growth, rash = winner == 2, winner == 1
    labels, count = components(growth)
    cores: np.ndarray = np.zeros_like(growth)
    for component in range(1, count + 1):
        mask = labels == component
        ring = _grown(mask) & ~mask
        if ring.any() and float(rash[ring].mean()) >= RINGED_BY_RASH:
            cores |= mask
    return cores


def _grown(mask: np.ndarray) -> np.ndarray:
    """``mask`` grown by one pixel (8-neighbourhood)."""
    padded = np.pad(mask, 1)
    out = np.zeros_like(padded)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            out |= np.roll(np.roll(padded, dy, 0), dx, 1)
    grown: np.ndarray = out[1:-1, 1:-1]
    return grown


def _rgb(photo: DecodedPhoto) -> Image.Image:
    if photo.alpha is None:
        return photo.pixels
    canvas = Image.new("RGB", photo.pixels.size, (128, 128, 128))
    canvas.paste(photo.pixels, mask=photo.alpha)
    return canvas


def _cut_out(region: np.ndarray, size: tuple[int, int], box: Box) -> Image.Image:
    """The region (a map-sized boolean mask) as an 'L' alpha over the crop box, a little dilated."""
    mask = Image.fromarray(region.astype(np.uint8) * 255).resize(size, Image.Resampling.BILINEAR).crop(box)
    # Dilate by ~3 % of the crop's side: the segmenter's edge is coarse, the lesion's border matters.
    reach = max(3, (max(mask.size) // 32) | 1)
    return mask.point(lambda v: 255 if v >= 128 else 0).filter(ImageFilter.MaxFilter(reach))


def _crop(photo: DecodedPhoto, box: Box, alpha: Image.Image | None = None) -> DecodedPhoto:
    pixels = _rgb(photo).crop(box)
    return DecodedPhoto(
        pixels=pixels,
        alpha=alpha,
        format=photo.format,
        content_type=photo.content_type,
        original_size=pixels.size,
        sha256=photo.sha256,
        lossless=photo.lossless,
    )
