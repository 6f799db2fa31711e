"""Mottled eczema plaques painted into generated photos, for the lesion extractor's training set.

Why: an extractor trained on generated rashes (flat, evenly red drawings) beside *real* growths
(PAD-UFES-20 cut-outs pasted in) can learn "photo-like red texture = growth" and call a real
eczema plaque a growth (the candidate of issue 14 did so on ``examples/forearm-eczema.jpg``). A
plaque painted here looks less like a drawing: redness that is patchy, not even; a border that
fades out; raised papules lit from one side; scratch marks with crusts; whitish scale at the rim.
It is labelled rash. Like :func:`models.skin.real_lesions.paste`, it goes onto an already
generated scene, so ``photomarker generate skin`` itself draws exactly what it drew before.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter

from models.engine.reference_data import _value_noise

# The plaque's longest side as a share of the photo's side.
PLAQUE_SHARE = (0.15, 0.6)


def paint_plaque(
    image: NDArray[np.uint8], skin: NDArray[np.bool_], rng: np.random.Generator
) -> tuple[NDArray[np.uint8], NDArray[np.bool_]]:
    """One mottled plaque on ``skin`` pixels of a square ``image``; returns the photo and its mask."""
    size = image.shape[0]
    out = image.astype(np.float32)
    extent = rng.uniform(*PLAQUE_SHARE) * size
    where = np.argwhere(skin)
    if not len(where):
        return image.copy(), np.zeros(skin.shape, dtype=bool)
    cy, cx = where[rng.integers(len(where))].astype(np.float32)
    axis = np.arange(size, dtype=np.float32) + 0.5
    xs, ys = np.meshgrid(axis, axis)
    angle = rng.uniform(0, np.pi)
    u = (xs - cx) * np.cos(angle) + (ys - cy) * np.sin(angle)
    v = -(xs - cx) * np.sin(angle) + (ys - cy) * np.cos(angle)
    ry = extent / 2
    rx = ry * rng.uniform(0.45, 1.0)
    shape = (
        1.0
        - (u / ry) ** 2
        - (v / rx) ** 2
        + 0.25 * _value_noise(rng, size, max(extent / 3, 2.0))
        + 0.12 * _value_noise(rng, size, max(extent / 12, 1.5))
    )
    lesion = np.clip(shape * 1.6, 0.0, 1.0) * skin
    # A border that fades over a few per cent of the photo instead of stopping at a line.
    fade = max(0.8, size * rng.uniform(0.005, 0.02))
    blurred = Image.fromarray(np.rint(lesion * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(fade))
    lesion = np.asarray(blurred, dtype=np.float32) / 255
    lesion = (np.clip(lesion, 0.0, 1.0) * skin).astype(np.float32)
    tone = np.median(out[skin], axis=0)
    light = float(tone.mean()) / 255
    red = np.array([rng.uniform(165, 200), rng.uniform(60, 95), rng.uniform(55, 90)], dtype=np.float32)
    colour = red * light + tone * np.array([0.8, 0.5, 0.55], dtype=np.float32) * (1 - light)
    patchy = np.clip(
        rng.uniform(0.45, 0.8) + rng.uniform(0.1, 0.2) * _value_noise(rng, size, max(extent / 8, 2.0)),
        0.25,
        0.95,
    )
    out = _blend(out, colour, lesion * patchy)
    out = _papules(out, lesion, colour, rng, size)
    out = _scratches(out, lesion, extent, rng, size)
    rim = np.clip(1.0 - np.abs(lesion - 0.45) * 4.0, 0.0, 1.0)
    flakes = np.clip(_value_noise(rng, size, rng.uniform(1.2, 2.5)) - 1.2, 0.0, 1.0) * rim
    out = _blend(out, np.array([236, 222, 212], dtype=np.float32), flakes * rng.uniform(0.3, 0.8))
    out += rng.normal(0, rng.uniform(0.5, 2.5), (size, size, 1)) * (lesion > 0)[..., None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), lesion > 0.5


def _blend(
    image: NDArray[np.float32], colour: NDArray[np.float32], weight: NDArray[np.float32]
) -> NDArray[np.float32]:
    w = weight[..., None]
    return np.asarray(image * (1 - w) + colour * w, dtype=np.float32)


def _papules(
    image: NDArray[np.float32],
    lesion: NDArray[np.float32],
    colour: NDArray[np.float32],
    rng: np.random.Generator,
    size: int,
) -> NDArray[np.float32]:
    """Raised bumps, lit from one side: a darker body, a small highlight towards the light."""
    inside = np.argwhere(lesion > 0.5)
    if not len(inside):
        return image
    count = min(len(inside), int(rng.uniform(0.0, 0.004) * len(inside)) + 1)
    light = rng.uniform(0, 2 * np.pi)
    bumps = np.zeros(lesion.shape, dtype=np.float32)
    shine = np.zeros(lesion.shape, dtype=np.float32)
    scale = size / 256
    for index in rng.choice(len(inside), size=count, replace=False):
        py, px = inside[index]
        radius = rng.uniform(0.8, 2.0) * scale
        _disc(bumps, px, py, radius, 1.0)
        _disc(shine, px + np.cos(light) * radius * 0.4, py + np.sin(light) * radius * 0.4, radius * 0.4, 0.5)
    image = _blend(image, colour * 0.85, bumps * 0.5)
    return _blend(image, np.array([246, 214, 204], dtype=np.float32), shine)


def _disc(layer: NDArray[np.float32], cx: float, cy: float, radius: float, value: float) -> None:
    top, bottom = max(0, int(cy - radius - 2)), min(layer.shape[0], int(cy + radius + 3))
    left, right = max(0, int(cx - radius - 2)), min(layer.shape[1], int(cx + radius + 3))
    if top >= bottom or left >= right:
        return
    yy, xx = np.mgrid[top:bottom, left:right].astype(np.float32) + 0.5
    disc = np.clip(radius + 0.5 - np.hypot(xx - cx, yy - cy), 0.0, 1.0) * value
    np.maximum(layer[top:bottom, left:right], disc, out=layer[top:bottom, left:right])


def _scratches(
    image: NDArray[np.float32],
    lesion: NDArray[np.float32],
    extent: float,
    rng: np.random.Generator,
    size: int,
) -> NDArray[np.float32]:
    """Nail marks: two or three parallel dark-red lines, a bout or three, inside the plaque."""
    inside = np.argwhere(lesion > 0.6)
    bouts = int(rng.integers(0, 4))
    if not len(inside) or not bouts:
        return image
    layer = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(layer)
    width = max(1, round(size / 340))
    for _ in range(bouts):
        sy, sx = inside[rng.integers(len(inside))]
        angle = rng.uniform(0, np.pi)
        length = rng.uniform(0.15, 0.35) * extent
        gap = max(2.0, size / 110)
        for nail in range(int(rng.integers(2, 4))):
            ox, oy = nail * gap * np.sin(angle), -nail * gap * np.cos(angle)
            points = [
                (
                    float(sx + ox + k / 6 * length * np.cos(angle) + rng.normal(0, 0.4)),
                    float(sy + oy + k / 6 * length * np.sin(angle) + rng.normal(0, 0.4)),
                )
                for k in range(7)
            ]
            draw.line(points, fill=255, width=width)
    cover = (np.asarray(layer, dtype=np.float32) / 255 * (lesion > 0.3)).astype(np.float32)
    return _blend(image, np.array([142, 42, 40], dtype=np.float32), cover * rng.uniform(0.5, 0.8))
