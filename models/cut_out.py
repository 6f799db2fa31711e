"""Photos that already are a cut-out on black: their black surround is read as transparency.

PAD-UFES-20 ships its lesions this way, and cropping tools make them too: one lesion, every
other pixel set to black. Judged as a whole photo, the black is a dark, mostly empty frame: the
quality gate asked for a retake of every one of the repository's 36 PAD-UFES-20 test cut-outs
("too dark", or too little skin), so the skin-tumour classifier, trained on exactly such
cut-outs, never saw them. With the black as transparency a cut-out is what a cut-out on
transparency already was: the gate judges its opaque pixels (``models.quality``), the body-part
model is not asked about a frame with no surroundings, and the lesion extractor hands on the one
lesion the sender chose, in the sender's frame (``models.skin.lesions.cut_out_lesion``).

A surround counts as black only when it is near-exact black (JPEG ringing aside), reaches the
frame's edge, and covers a good share of the frame: the shadows of a dim room carry sensor noise
well above a few levels, so a dark photo stays a photo.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageFilter

from models.intake import DecodedPhoto
from models.quality import ANALYSIS_LONG_SIDE

# Brightest channel at or below this: part of a black surround (JPEG ringing into the black).
DARK: Final = 30
# Most of a surround is this close to exact black; a dim photo's shadows are not.
BLACK: Final = 4
MIN_BLACK_SHARE: Final = 0.9
# The surround's share of the frame, of the frame's edge, and the least the cut-out itself holds.
MIN_SURROUND: Final = 0.25
MIN_EDGE: Final = 0.5
MIN_INSIDE: Final = 0.01


def inside_black_surround(pixels: NDArray[np.uint8]) -> NDArray[np.bool_]:
    """What a black surround encloses: every pixel but the dark ones reached from the frame's edge.

    Dark spots inside the cut-out (a pigmented lesion's darkest parts) stay inside; an opening
    first drops JPEG specks on the black, which would otherwise wall the flood off.
    """
    bright = Image.fromarray(((pixels.max(axis=2) > DARK) * 255).astype(np.uint8))
    opened = bright.filter(ImageFilter.MinFilter(3)).filter(ImageFilter.MaxFilter(3))
    dark = np.asarray(opened) == 0
    reached = np.zeros_like(dark)
    for edge in (np.s_[0, :], np.s_[-1, :], np.s_[:, 0], np.s_[:, -1]):
        reached[edge] = dark[edge]
    # A flood fill (4-connected) in whole-array steps: each step spreads along every row's dark
    # runs, then every column's, until nothing more is reached. PIL's floodfill does the same
    # pixel by pixel in Python: 0.3 s on a 512-px cut-out, too slow for a gate every photo meets.
    while True:
        grown = _along_rows(dark, reached)
        grown = _along_rows(dark.T, grown.T).T
        if np.array_equal(grown, reached):
            break
        reached = grown
    inside: NDArray[np.bool_] = ~reached
    return inside


def _along_rows(dark: NDArray[np.bool_], reached: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """``reached`` spread to the whole of each horizontal run of ``dark`` pixels that it touches."""
    dark = np.ascontiguousarray(dark)
    starts = dark.copy()
    starts[:, 1:] &= ~dark[:, :-1]
    runs = np.cumsum(starts.ravel()).reshape(dark.shape) * dark  # run number; 0 off the runs
    hit = np.zeros(int(runs.max()) + 1, dtype=bool)
    hit[runs[reached & dark]] = True
    hit[0] = False
    spread: NDArray[np.bool_] = hit[runs]
    return spread


def cut_out_mask(pixels: NDArray[np.uint8]) -> NDArray[np.bool_] | None:
    """The cut-out's own pixels when ``pixels`` (H, W, 3) are a cut-out on black, else None."""
    inside = inside_black_surround(pixels)
    surround = ~inside
    if surround.mean() < MIN_SURROUND or inside.mean() < MIN_INSIDE:
        return None
    if (pixels.max(axis=2)[surround] <= BLACK).mean() < MIN_BLACK_SHARE:
        return None
    edge = np.concatenate([surround[0], surround[-1], surround[:, 0], surround[:, -1]])
    if edge.mean() < MIN_EDGE:
        return None
    return inside


def as_cut_out(photo: DecodedPhoto) -> DecodedPhoto:
    """``photo`` with its black surround as its alpha mask, when it is a cut-out on black."""
    if photo.alpha is not None:
        return photo
    width, height = photo.pixels.size
    # Recognised on a copy the size of the quality gate's own analysis copy.
    scale = min(1.0, ANALYSIS_LONG_SIDE / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Nearest neighbour keeps the black exact, which averaging would not at the cut-out's edge.
    small = photo.pixels if scale == 1.0 else photo.pixels.resize(size, Image.Resampling.NEAREST)
    inside = cut_out_mask(np.asarray(small.convert("RGB"), dtype=np.uint8))
    if inside is None:
        return photo
    alpha = Image.fromarray(inside.astype(np.uint8) * 255)
    if alpha.size != photo.pixels.size:
        alpha = alpha.resize(photo.pixels.size, Image.Resampling.NEAREST)
    return replace(photo, alpha=alpha)
