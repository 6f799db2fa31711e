"""Drawing primitives of the generated skin photos (:mod:`models.skin.synthetic`).

Shapes as signed distances (< 0 inside) in body coordinates, turned into anti-aliased masks by
:func:`soft`; the :class:`Canvas` a scene is painted on (the image, where skin shows, the body
coordinates of each pixel, the skin tone); and small dots and lines stamped in a local window,
fast enough for the hundreds of papules, hairs and crusts a scene may hold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatImage = NDArray[np.float32]
Mask = NDArray[np.float32]


# --- geometry -------------------------------------------------------------------------------------


def body_coords(
    size: int, zoom: float, angle: float, offset: tuple[float, float]
) -> tuple[FloatImage, FloatImage]:
    """Pixel grid → body coordinates (about −1…1 across the part at zoom 1)."""
    axis = (np.arange(size, dtype=np.float32) + 0.5 - size / 2) / (size / 2) / zoom
    x, y = np.meshgrid(axis, axis)
    cos, sin = np.cos(angle), np.sin(angle)
    return (x * cos - y * sin + offset[0]).astype(np.float32), (x * sin + y * cos + offset[1]).astype(
        np.float32
    )


def soft(distance: FloatImage, edge: float) -> Mask:
    """Inside (distance < 0) → 1, outside → 0, with an anti-aliased edge ``edge`` wide."""
    return np.asarray(np.clip(0.5 - distance / edge, 0.0, 1.0), dtype=np.float32)


def ellipse(x: FloatImage, y: FloatImage, cx: float, cy: float, rx: float, ry: float) -> FloatImage:
    return np.asarray(np.hypot((x - cx) / rx, (y - cy) / ry) - 1.0, dtype=np.float32)


def capsule(
    x: FloatImage, y: FloatImage, a: tuple[float, float], b: tuple[float, float], r: float
) -> FloatImage:
    ax, ay = a
    bx, by = b
    dx, dy = bx - ax, by - ay
    t = np.clip(((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy), 0, 1)
    return np.asarray(np.hypot(x - ax - t * dx, y - ay - t * dy) / r - 1.0, dtype=np.float32)


def union(*distances: FloatImage) -> FloatImage:
    return np.asarray(np.minimum.reduce(distances), dtype=np.float32)


# --- the canvas, and dots and lines painted on it -------------------------------------------------


@dataclass
class Canvas:
    image: FloatImage
    skin: Mask  # where skin is visible (lesions may go there)
    x: FloatImage
    y: FloatImage
    edge: float
    tone: NDArray[np.float32]

    def paint(
        self, mask: Mask, colour: NDArray[np.float32] | tuple[float, float, float], amount: float = 1.0
    ) -> None:
        alpha = (mask * amount)[..., None]
        self.image *= 1 - alpha
        self.image += alpha * np.asarray(colour, dtype=np.float32)

    def shade(self, mask: Mask, factor: float) -> None:
        self.image *= (1 + (factor - 1) * mask)[..., None]


def stamp(
    image: FloatImage,
    cx: float,
    cy: float,
    radius: float,
    colour: NDArray[np.float32],
    opacity: float,
    where: Mask,
) -> None:
    """A small anti-aliased disc painted in a local window (fast for hundreds of dots)."""
    size = image.shape[0]
    x0, x1 = max(0, int(cx - radius - 2)), min(size, int(cx + radius + 3))
    y0, y1 = max(0, int(cy - radius - 2)), min(size, int(cy + radius + 3))
    if x0 >= x1 or y0 >= y1:
        return
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
    alpha = np.clip(radius - np.hypot(xs - cx, ys - cy) + 0.5, 0, 1) * opacity * where[y0:y1, x0:x1]
    window = image[y0:y1, x0:x1]
    window *= 1 - alpha[..., None]
    window += alpha[..., None] * colour


def line(
    image: FloatImage,
    rng: np.random.Generator,
    size: int,
    colour: NDArray[np.float32],
    width: float,
    opacity: float,
    where: Mask,
    *,
    length: float,
    centre: tuple[float, float] | None = None,
) -> tuple[float, float, float, float]:
    cx, cy = centre if centre is not None else tuple(rng.uniform(0, size, 2))
    angle = rng.uniform(0, np.pi)
    half = length * size / 2
    ax, ay = cx - half * np.cos(angle), cy - half * np.sin(angle)
    bx, by = cx + half * np.cos(angle), cy + half * np.sin(angle)
    x0, x1 = max(0, int(min(ax, bx) - width - 2)), min(size, int(max(ax, bx) + width + 3))
    y0, y1 = max(0, int(min(ay, by) - width - 2)), min(size, int(max(ay, by) + width + 3))
    if x0 < x1 and y0 < y1:
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
        dx, dy = bx - ax, by - ay
        t = np.clip(((xs - ax) * dx + (ys - ay) * dy) / max(dx * dx + dy * dy, 1e-6), 0, 1)
        distance = np.hypot(xs - ax - t * dx, ys - ay - t * dy)
        alpha = np.clip(width / 2 - distance + 0.5, 0, 1) * opacity * where[y0:y1, x0:x1]
        window = image[y0:y1, x0:x1]
        window *= 1 - alpha[..., None]
        window += alpha[..., None] * colour
    return float(ax), float(ay), float(bx), float(by)
