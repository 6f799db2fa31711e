"""Drawing helpers for the synthetic example photos: value noise, streaks, colour blending,
anti-aliased lines, random-walk vessels and what a phone camera adds.

Used by ``scenes.py``; ``make_examples.py`` writes and checks the photos.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw

FloatImage = NDArray[np.float32]


def smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> FloatImage:
    """Unit-variance value noise with features about ``cell`` pixels across."""
    small_h, small_w = max(2, math.ceil(height / cell) + 2), max(2, math.ceil(width / cell) + 2)
    coarse = rng.standard_normal((small_h, small_w)).astype(np.float32)
    big = Image.fromarray(coarse).resize(
        (round(small_w * cell), round(small_h * cell)), Image.Resampling.BICUBIC
    )
    out: FloatImage = np.asarray(big, dtype=np.float32)[:height, :width]
    normalised: FloatImage = ((out - out.mean()) / (out.std() + 1e-6)).astype(np.float32)
    return normalised


def streaks(rng: np.random.Generator, height: int, width: int, length: int, angle: float) -> FloatImage:
    """Fine line texture (skin creases): noise smeared along ``angle`` degrees."""
    pad = int(math.hypot(height, width)) + 2
    noise = rng.standard_normal((pad, pad)).astype(np.float32)
    kernel = np.ones(length, dtype=np.float32) / length
    smeared = np.apply_along_axis(lambda row: np.convolve(row, kernel, mode="same"), 1, noise)
    rotated = np.asarray(Image.fromarray(smeared).rotate(angle, Image.Resampling.BILINEAR), dtype=np.float32)
    top, left = (pad - height) // 2, (pad - width) // 2
    out: FloatImage = rotated[top : top + height, left : left + width]
    normalised: FloatImage = ((out - out.mean()) / (out.std() + 1e-6)).astype(np.float32)
    return normalised


def blend(base: FloatImage, colour: tuple[float, float, float], weight: FloatImage) -> FloatImage:
    """Mix ``colour`` (0–255) into an H×W×3 float image with a per-pixel weight in 0–1."""
    w: FloatImage = np.clip(weight, 0.0, 1.0)[..., None]
    mixed: FloatImage = (base * (1.0 - w) + np.asarray(colour, dtype=np.float32) * w).astype(np.float32)
    return mixed


def line_layer(
    size: tuple[int, int], lines: list[list[tuple[float, float]]], width: int, supersample: int = 3
) -> FloatImage:
    """Anti-aliased coverage (0–1) of polylines, drawn at 3× and box-reduced."""
    big = Image.new("L", (size[0] * supersample, size[1] * supersample), 0)
    draw = ImageDraw.Draw(big)
    for points in lines:
        scaled = [(x * supersample, y * supersample) for x, y in points]
        draw.line(scaled, fill=255, width=width * supersample, joint="curve")
    return np.asarray(big.reduce(supersample), dtype=np.float32) / 255.0


def camera(rng: np.random.Generator, rgb: FloatImage, noise: float) -> Image.Image:
    """What a phone adds: vignetting, a little warmth, sensor noise; then 8-bit."""
    height, width = rgb.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r2 = ((xx - width / 2) / (width / 2)) ** 2 + ((yy - height / 2) / (height / 2)) ** 2
    vignette = 1.0 - 0.12 * r2
    out = rgb * vignette[..., None] * np.array([1.02, 1.0, 0.97], dtype=np.float32)
    luma_noise = rng.standard_normal((height, width, 1)).astype(np.float32) * noise
    chroma_noise = rng.standard_normal((height, width, 3)).astype(np.float32) * (noise * 0.4)
    out = out + luma_noise + chroma_noise
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))


def wandering_lines(
    rng: np.random.Generator,
    count: int,
    box: tuple[float, float, float, float],
    steps: int,
    step: float,
    turn: float,
) -> list[list[tuple[float, float]]]:
    """Smooth random walks (vessels) starting inside ``box`` = (x0, y0, x1, y1)."""
    lines = []
    for _ in range(count):
        x, y = rng.uniform(box[0], box[2]), rng.uniform(box[1], box[3])
        heading = rng.uniform(-0.6, 0.6) + (math.pi if rng.random() < 0.5 else 0.0)
        points = []
        for _ in range(steps):
            points.append((x, y))
            heading += rng.normal(0, turn)
            x += step * math.cos(heading)
            y += step * math.sin(heading)
        lines.append(points)
    return lines
