"""Generated photos for the reference model's task: is there a blue marker dot on this skin patch?

The task is deliberately non-clinical — a round blue sticker or pen dot, the kind placed beside a
lesion for scale — and its ground truth is exact because the generator draws it. Skin patches
span light to dark tones with blotches, pores, sensor grain, uneven light, hairs and brown
moles; markers range from bold to small and faded, and half the patches carry a purple-grey
decoy (a bruise- or vein-like blot) — so the task is easy but not trivially separable, and
calibration and spread have something to measure. The out-of-distribution sets —
RGB noise and blank painted walls — are never used for training; the engine must abstain on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from models.intake import DecodedPhoto

FloatImage = NDArray[np.float32]
Uint8Image = NDArray[np.uint8]

LABEL_ABSENT: Final = 0
LABEL_PRESENT: Final = 1
# Light to very dark skin, sRGB; a tone is drawn along this line, then nudged per channel.
_SKIN_ANCHORS: Final = np.array(
    [[241, 206, 182], [226, 174, 140], [196, 134, 98], [150, 92, 64], [100, 62, 44], [64, 42, 32]],
    dtype=np.float32,
)
_WALL_COLOURS: Final = np.array(
    [[244, 244, 240], [226, 224, 218], [200, 200, 200], [160, 162, 165], [236, 222, 196], [214, 226, 236]],
    dtype=np.float32,
)
OodKind = Literal["noise", "wall"]


def _value_noise(rng: np.random.Generator, size: int, cell: float) -> FloatImage:
    """Smooth unit noise with features about ``cell`` pixels across, (size, size)."""
    coarse_side = max(2, int(np.ceil(size / cell)) + 2)
    coarse = rng.standard_normal((coarse_side, coarse_side)).astype(np.float32)
    side = max(size, round(coarse_side * cell))
    big = Image.fromarray(coarse).resize((side, side), Image.Resampling.BICUBIC)
    return np.asarray(big, dtype=np.float32)[:size, :size]


def _grid(size: int) -> tuple[FloatImage, FloatImage]:
    axis = np.arange(size, dtype=np.float32) + 0.5
    return np.meshgrid(axis, axis)


def _disc(image: FloatImage, centre: tuple[float, float], radius: float, colour: NDArray[np.float32]) -> None:
    """Paint an anti-aliased disc in place."""
    xs, ys = _grid(image.shape[0])
    distance = np.hypot(xs - centre[0], ys - centre[1])
    alpha = np.clip(radius - distance + 0.5, 0.0, 1.0)[..., None]
    image *= 1 - alpha
    image += alpha * colour


def _hair(image: FloatImage, rng: np.random.Generator) -> None:
    size = image.shape[0]
    xs, ys = _grid(size)
    angle = rng.uniform(0, np.pi)
    offset = rng.uniform(0.1, 0.9) * size
    distance = np.abs((xs - size / 2) * np.sin(angle) - (ys - size / 2) * np.cos(angle) - (offset - size / 2))
    alpha = np.clip(0.9 - distance / rng.uniform(0.5, 1.0), 0, 0.8)[..., None]
    image *= 1 - alpha
    image += alpha * np.array([40, 28, 22], dtype=np.float32)


def skin_patch(rng: np.random.Generator, size: int) -> FloatImage:
    """A close-up of skin: tone, blotches, pores, grain, a lighting gradient, maybe hairs and moles."""
    position = rng.uniform(0, len(_SKIN_ANCHORS) - 1)
    index = min(int(position), len(_SKIN_ANCHORS) - 2)
    fraction = position - index
    tone = _SKIN_ANCHORS[index] * (1 - fraction) + _SKIN_ANCHORS[index + 1] * fraction
    tone = tone * rng.uniform(0.94, 1.06, 3).astype(np.float32)
    blotches = _value_noise(rng, size, size / rng.uniform(3, 6))
    pores = _value_noise(rng, size, rng.uniform(2, 3))
    grain = rng.normal(0, rng.uniform(1.5, 4.0), (size, size, 1)).astype(np.float32)
    image = tone * (1 + 0.05 * blotches[..., None]) + rng.uniform(2, 6) * pores[..., None] + grain
    xs, ys = _grid(size)
    angle = rng.uniform(0, 2 * np.pi)
    light = 1 + rng.uniform(-0.12, 0.12) * ((xs * np.cos(angle) + ys * np.sin(angle)) / size - 0.5)
    image = np.asarray(image * light[..., None], dtype=np.float32)
    for _ in range(rng.integers(0, 3)):
        _hair(image, rng)
    for _ in range(rng.integers(0, 3)):
        radius = rng.uniform(0.02, 0.06) * size
        centre = (rng.uniform(radius, size - radius), rng.uniform(radius, size - radius))
        brown = np.array([rng.uniform(60, 110), rng.uniform(35, 60), rng.uniform(20, 40)], dtype=np.float32)
        _disc(image, centre, radius, brown)
    return image


def add_marker(
    image: FloatImage,
    rng: np.random.Generator,
    centre: tuple[float, float] | None = None,
    *,
    radius: float | None = None,
    opacity: float | None = None,
) -> tuple[float, float]:
    """Paint the blue marker dot; returns its centre. Unset size and ink vary from bold to faint."""
    size = image.shape[0]
    radius = (radius if radius is not None else rng.uniform(0.03, 0.09)) * size
    if centre is None:
        centre = (rng.uniform(radius + 1, size - radius - 1), rng.uniform(radius + 1, size - radius - 1))
    blue = np.array([rng.uniform(20, 70), rng.uniform(70, 140), rng.uniform(160, 235)], dtype=np.float32)
    ink = opacity if opacity is not None else rng.uniform(0.35, 1.0)  # faded pen ink is see-through
    patch = image.copy()
    _disc(patch, centre, radius, blue)
    glint = (centre[0] - radius * 0.35, centre[1] - radius * 0.35)
    _disc(patch, glint, radius * 0.2, np.minimum(blue + 60, 255).astype(np.float32))
    image *= 1 - ink
    image += ink * patch
    return centre


def add_decoy(image: FloatImage, rng: np.random.Generator) -> None:
    """A dot that is not a marker: a purple-grey bruise or vein-like blot (red ≈ blue, low contrast)."""
    size = image.shape[0]
    radius = rng.uniform(0.03, 0.09) * size
    centre = (rng.uniform(radius + 1, size - radius - 1), rng.uniform(radius + 1, size - radius - 1))
    grey = rng.uniform(80, 150)
    red, green, blue = grey + rng.uniform(-5, 20), grey - rng.uniform(10, 30), grey + rng.uniform(0, 25)
    colour = np.array([red, green, blue], np.float32)
    ink = rng.uniform(0.3, 0.8)
    patch = image.copy()
    _disc(patch, centre, radius, colour)
    image *= 1 - ink
    image += ink * patch


def to_uint8(image: FloatImage) -> Uint8Image:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def ood_photo(rng: np.random.Generator, size: int, kind: OodKind) -> Uint8Image:
    """Something the model was never shown: RGB noise, or a blank painted wall."""
    if kind == "noise":
        return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    colour = _WALL_COLOURS[rng.integers(len(_WALL_COLOURS))] * rng.uniform(0.9, 1.05)
    xs, ys = _grid(size)
    light = 1 + rng.uniform(-0.06, 0.06) * (xs / size - 0.5) + rng.uniform(-0.06, 0.06) * (ys / size - 0.5)
    wall = colour * light[..., None] + rng.normal(0, 1.2, (size, size, 1))
    return to_uint8(wall.astype(np.float32))


@dataclass(frozen=True)
class ReferenceSet:
    images: Uint8Image  # (N, S, S, 3)
    labels: NDArray[np.int64]  # (N,) LABEL_ABSENT / LABEL_PRESENT


def reference_set(seed: int, count: int, size: int) -> ReferenceSet:
    """``count`` patches, alternating absent/present, from one seed (same seed → same pixels)."""
    rng = np.random.default_rng(seed)
    images = np.empty((count, size, size, 3), dtype=np.uint8)
    labels = np.empty(count, dtype=np.int64)
    for index in range(count):
        image = skin_patch(rng, size)
        label = index % 2
        if rng.uniform() < 0.5:
            add_decoy(image, rng)
        if label == LABEL_PRESENT:
            add_marker(image, rng)
        images[index] = to_uint8(image)
        labels[index] = label
    return ReferenceSet(images, labels)


def as_photo(pixels: Uint8Image | Image.Image) -> DecodedPhoto:
    """Wrap generated pixels as intake would hand them to the engine (no file round trip)."""
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    return DecodedPhoto(
        pixels=image.convert("RGB"),
        alpha=None,
        format="PNG",
        content_type="image/png",
        original_size=image.size,
        sha256="0" * 64,
        lossless=True,
    )
