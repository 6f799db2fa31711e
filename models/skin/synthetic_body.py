"""The body in a generated skin photo (:mod:`models.skin.synthetic`): what tells one part from another.

Each body part's silhouette and the landmarks painted on it (eyes and brows, nipples, knuckles,
toes…), the skin's tone (Fitzpatrick I–VI) and texture, and the healthy marks — freckles, hairs,
veins — that a lesion extractor must learn are not lesions.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

from models.engine.reference_data import _value_noise
from models.skin.synthetic_drawing import (
    Canvas,
    FloatImage,
    capsule,
    ellipse,
    line,
    soft,
    stamp,
    union,
)

# sRGB tones for Fitzpatrick I–VI (approximate; each drawn tone is nudged per channel).
FITZPATRICK_TONES: Final = np.array(
    [[242, 212, 190], [228, 186, 156], [204, 154, 118], [168, 116, 82], [120, 80, 56], [74, 50, 38]],
    dtype=np.float32,
)
_HAIR: Final = np.array([40, 28, 22], dtype=np.float32)


# --- body parts: silhouette (distance < 0 inside) and landmarks painted on top ---------------------


def silhouette(part: str, x: FloatImage, y: FloatImage) -> FloatImage:
    if part == "face":
        return ellipse(x, y, 0, 0, 0.62, 0.82)
    if part == "neck":
        column = np.maximum(np.abs(x) - 0.36, y - 0.6)
        return union(column.astype(np.float32) / 0.36, ellipse(x, y, 0, 1.05, 1.4, 0.55))
    if part in ("trunk-front", "trunk-back"):
        box = np.maximum(np.abs(x) - 0.85, np.abs(y) - 0.95)
        return np.asarray(np.maximum(box, ellipse(x, y, 0, 0.1, 1.05, 1.25)), dtype=np.float32) / 0.3
    if part == "upper-limb":
        half_width = 0.3 - 0.05 * (x + 1.4) / 2.8
        return np.asarray(np.maximum(np.abs(y) - half_width, np.abs(x) - 1.5) / 0.3, dtype=np.float32)
    if part == "hand":
        fingers = [
            capsule(x, y, (fx, -0.15), (fx * 1.1, -0.15 - length), 0.09)
            for fx, length in ((-0.3, 0.62), (-0.1, 0.75), (0.1, 0.7), (0.3, 0.55))
        ]
        thumb = capsule(x, y, (0.4, 0.3), (0.78, -0.12), 0.11)
        return union(ellipse(x, y, 0, 0.25, 0.46, 0.5), *fingers, thumb)
    if part == "lower-limb":
        half_width = 0.46 - 0.17 * (y + 1.5) / 3.0
        return np.asarray(np.maximum(np.abs(x) - half_width, np.abs(y) - 1.6) / 0.35, dtype=np.float32)
    if part == "foot":
        toes = [
            ellipse(x, y, tx, -0.72 + 0.05 * abs(i - 1), 0.08 - 0.008 * i, 0.1)
            for i, tx in enumerate((-0.28, -0.12, 0.03, 0.16, 0.27))
        ]
        return union(ellipse(x, y, 0, 0.12, 0.38, 0.78), *toes)
    raise ValueError(f"unknown body part {part!r}")


def landmarks(part: str, canvas: Canvas, rng: np.random.Generator) -> None:
    """The features that tell one body part from another (painted over skin only)."""
    x, y, edge, tone = canvas.x, canvas.y, canvas.edge, canvas.tone
    dark = tone * 0.55
    if part == "face":
        hair = soft(ellipse(x, y, 0, -0.95, 0.75, 0.45), edge) * canvas.skin
        canvas.paint(hair, _HAIR * rng.uniform(0.8, 1.6))
        for side in (-1, 1):
            canvas.paint(soft(ellipse(x, y, side * 0.25, -0.1, 0.12, 0.055), edge), (235, 235, 228))
            canvas.paint(soft(ellipse(x, y, side * 0.25, -0.1, 0.045, 0.045), edge), (60, 45, 35))
            brow = soft(ellipse(x, y, side * 0.25, -0.24, 0.13, 0.025), edge)
            canvas.paint(brow, _HAIR, 0.8)
        canvas.paint(soft(ellipse(x, y, 0, 0.42, 0.17, 0.045), edge), tone * np.array([0.8, 0.5, 0.5]), 0.8)
        canvas.shade(soft(ellipse(x, y, 0, 0.15, 0.06, 0.12), edge * 4), 0.9)
    elif part == "neck":
        canvas.shade(soft(ellipse(x, y, 0, -0.95, 0.55, 0.35), edge * 6), 0.8)
        canvas.shade(soft(ellipse(x, y, 0, 0.55, 0.14, 0.06), edge * 3), 0.85)  # jugular notch
    elif part == "trunk-front":
        for side in (-1, 1):
            canvas.paint(soft(ellipse(x, y, side * 0.38, -0.3, 0.085, 0.085), edge), dark * 1.2, 0.55)
            canvas.paint(soft(ellipse(x, y, side * 0.38, -0.3, 0.035, 0.035), edge), dark, 0.8)
        canvas.paint(soft(ellipse(x, y, 0, 0.5, 0.03, 0.05), edge), dark * 0.8, 0.9)
    elif part == "trunk-back":
        canvas.shade(soft(np.abs(x).astype(np.float32) - 0.035, edge * 4) * (np.abs(y) < 0.9), 0.82)
        for side in (-1, 1):
            ring = np.abs(ellipse(x, y, side * 0.42, -0.45, 0.25, 0.18)) - 0.08
            rim = soft(ring.astype(np.float32), edge * 3)
            canvas.shade(rim, 0.9)
    elif part == "upper-limb":
        canvas.shade(soft(ellipse(x, y, 0.0, 0.12, 0.16, 0.025), edge * 2), 0.82)
        canvas.shade(soft(ellipse(x, y, 0.0, -0.2, 0.12, 0.12), edge * 8), 1.06)
    elif part == "hand":
        for fx, length in ((-0.3, 0.62), (-0.1, 0.75), (0.1, 0.7), (0.3, 0.55)):
            tip = (fx * 1.1, -0.15 - length + 0.07)
            canvas.paint(soft(ellipse(x, y, tip[0], tip[1], 0.06, 0.08), edge), tone * 1.1 + 15, 0.7)
            canvas.shade(soft(ellipse(x, y, fx * 1.05, -0.45, 0.08, 0.012), edge), 0.85)
        canvas.paint(soft(ellipse(x, y, 0.7, -0.05, 0.06, 0.07), edge), tone * 1.1 + 15, 0.7)
        canvas.shade(soft(ellipse(x, y, 0, 0.2, 0.35, 0.012), edge), 0.86)
    elif part == "lower-limb":
        canvas.shade(soft(ellipse(x, y, 0, 0.05, 0.2, 0.16), edge * 6), 1.08)
        canvas.shade(soft(ellipse(x, y, 0, 0.25, 0.22, 0.03), edge * 3), 0.88)
    elif part == "foot":
        for i, tx in enumerate((-0.28, -0.12, 0.03, 0.16, 0.27)):
            ty = -0.72 + 0.05 * abs(i - 1)
            canvas.paint(
                soft(ellipse(x, y, tx, ty - 0.03, 0.05 - 0.005 * i, 0.05), edge), tone * 1.1 + 18, 0.7
            )
        canvas.shade(soft(ellipse(x, y, 0, -0.55, 0.33, 0.02), edge * 2), 0.85)


# --- skin tone, texture, and what healthy skin shows ----------------------------------------------


def skin_tone(rng: np.random.Generator, fitzpatrick: int) -> NDArray[np.float32]:
    tone = FITZPATRICK_TONES[fitzpatrick - 1] * rng.uniform(0.95, 1.05, 3).astype(np.float32)
    return np.asarray(tone * rng.uniform(0.95, 1.05), dtype=np.float32)


def skin_texture(rng: np.random.Generator, size: int, tone: NDArray[np.float32]) -> FloatImage:
    blotches = _value_noise(rng, size, size / rng.uniform(3, 6))
    pores = _value_noise(rng, size, rng.uniform(1.5, 3))
    image = tone * (1 + 0.04 * blotches[..., None]) + rng.uniform(1.5, 5) * pores[..., None]
    return np.asarray(image, dtype=np.float32)


def healthy_marks(canvas: Canvas, rng: np.random.Generator, size: int, zoom: float) -> None:
    """Freckles, hairs and veins: what healthy skin shows that is not a lesion."""
    for _ in range(rng.integers(0, 6)):
        cx, cy = rng.uniform(0, size, 2)
        radius = rng.uniform(0.7, 1.8) * zoom
        stamp(canvas.image, cx, cy, radius, canvas.tone * 0.7, 0.6 * rng.uniform(0.4, 1), canvas.skin)
    for _ in range(rng.integers(0, 5)):
        line(
            canvas.image,
            rng,
            size,
            _HAIR,
            rng.uniform(0.5, 1.2),
            0.7,
            canvas.skin,
            length=rng.uniform(0.05, 0.2),
        )
    if rng.uniform() < 0.3:
        vein = canvas.tone * np.array([0.75, 0.8, 1.0], dtype=np.float32)
        line(canvas.image, rng, size, vein, rng.uniform(1.0, 2.5) * zoom, 0.35, canvas.skin, length=0.5)
