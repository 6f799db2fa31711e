"""Generated skin photos with known ground truth, for the reference skin models and for tests.

Each :class:`SkinScene` is a photo of one body part (face, neck, trunk front/back, upper limb,
hand, lower limb, foot — or no skin at all) on a background, at a distance from close-up to
arm's length, in a Fitzpatrick I–VI tone, under varied light and focus, with zero to three
lesions of one condition painted into it. Everything the models are asked is planted, so it
is known exactly:

- the body part, and a lesion mask (for lesion extraction, and "no lesion" on healthy skin
  with freckles, hairs and veins);
- for atopic dermatitis, the Three Item Severity items: erythema (redness — shown as a darker,
  violaceous shift on dark skin rather than bright red), oedema/papulation (raised papules, and
  puffiness at 3) and excoriation (scratch lines with crusts), each 0–3;
- the condition: atopic dermatitis and its complications (impetigo: honey-coloured crusts;
  eczema herpeticum: clustered punched-out erosions; mycosis fungoides: large salmon-brown
  patches with fine wrinkling) and four look-alikes (psoriasis: sharp red plaques with silvery
  scale; tinea: a scaly red ring with central clearing; urticaria: pale raised wheals with a red
  flare; vitiligo: depigmented patches), plus pigmented tumours for lesion extraction.

These are cartoons of the diseases, good for checking that the pipeline learns and recovers
what was planted; weights trained on them are reference models, never clinical ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageFilter

from models.engine.reference_data import _value_noise
from models.skin.labels import BODY_PART_KEYS, DEFAULT_DIAGNOSIS_KEYS, NOT_SKIN

FloatImage = NDArray[np.float32]
Uint8Image = NDArray[np.uint8]
Mask = NDArray[np.float32]

TUMOUR: Final = "pigmented-tumour"
CONDITIONS: Final[tuple[str, ...]] = (*DEFAULT_DIAGNOSIS_KEYS, TUMOUR)
# sRGB tones for Fitzpatrick I–VI (approximate; each drawn tone is nudged per channel).
FITZPATRICK_TONES: Final = np.array(
    [[242, 212, 190], [228, 186, 156], [204, 154, 118], [168, 116, 82], [120, 80, 56], [74, 50, 38]],
    dtype=np.float32,
)
_BACKGROUNDS: Final = np.array(
    [
        [235, 235, 230],
        [200, 205, 210],
        [90, 110, 140],
        [60, 60, 65],
        [150, 170, 150],
        [210, 200, 170],
        [120, 80, 60],
        [40, 70, 60],
        [230, 230, 240],
        [170, 40, 50],
    ],
    dtype=np.float32,
)
_HAIR: Final = np.array([40, 28, 22], dtype=np.float32)


@dataclass(frozen=True)
class PlantedLesion:
    condition: str
    box: tuple[int, int, int, int]  # left, top, right, bottom in pixels


@dataclass(frozen=True)
class SkinScene:
    """One generated photo and everything planted in it."""

    image: Uint8Image  # (S, S, 3)
    lesion_mask: NDArray[np.bool_]  # (S, S) True on lesion pixels
    body_part: str
    fitzpatrick: int  # 1–6
    condition: str | None  # None: healthy skin or no skin
    tis: tuple[int, int, int] | None  # erythema, oedema/papulation, excoriation (AD only)
    lesions: tuple[PlantedLesion, ...] = field(default_factory=tuple)
    zoom: float = 1.0
    blur: float = 0.0
    # (S, S) True where skin fills the pixel (nothing on a not-skin photo): where a lesion may go.
    skin_mask: NDArray[np.bool_] | None = None


# --- geometry -------------------------------------------------------------------------------------


def _body_coords(
    size: int, zoom: float, angle: float, offset: tuple[float, float]
) -> tuple[FloatImage, FloatImage]:
    """Pixel grid → body coordinates (about −1…1 across the part at zoom 1)."""
    axis = (np.arange(size, dtype=np.float32) + 0.5 - size / 2) / (size / 2) / zoom
    x, y = np.meshgrid(axis, axis)
    cos, sin = np.cos(angle), np.sin(angle)
    return (x * cos - y * sin + offset[0]).astype(np.float32), (x * sin + y * cos + offset[1]).astype(
        np.float32
    )


def _soft(distance: FloatImage, edge: float) -> Mask:
    """Inside (distance < 0) → 1, outside → 0, with an anti-aliased edge ``edge`` wide."""
    return np.asarray(np.clip(0.5 - distance / edge, 0.0, 1.0), dtype=np.float32)


def _ellipse(x: FloatImage, y: FloatImage, cx: float, cy: float, rx: float, ry: float) -> FloatImage:
    return np.asarray(np.hypot((x - cx) / rx, (y - cy) / ry) - 1.0, dtype=np.float32)


def _capsule(
    x: FloatImage, y: FloatImage, a: tuple[float, float], b: tuple[float, float], r: float
) -> FloatImage:
    ax, ay = a
    bx, by = b
    dx, dy = bx - ax, by - ay
    t = np.clip(((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy), 0, 1)
    return np.asarray(np.hypot(x - ax - t * dx, y - ay - t * dy) / r - 1.0, dtype=np.float32)


def _union(*distances: FloatImage) -> FloatImage:
    return np.asarray(np.minimum.reduce(distances), dtype=np.float32)


# --- body parts: silhouette (distance < 0 inside) and landmarks painted on top ---------------------


@dataclass
class _Canvas:
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


def _silhouette(part: str, x: FloatImage, y: FloatImage) -> FloatImage:
    if part == "face":
        return _ellipse(x, y, 0, 0, 0.62, 0.82)
    if part == "neck":
        column = np.maximum(np.abs(x) - 0.36, y - 0.6)
        return _union(column.astype(np.float32) / 0.36, _ellipse(x, y, 0, 1.05, 1.4, 0.55))
    if part in ("trunk-front", "trunk-back"):
        box = np.maximum(np.abs(x) - 0.85, np.abs(y) - 0.95)
        return np.asarray(np.maximum(box, _ellipse(x, y, 0, 0.1, 1.05, 1.25)), dtype=np.float32) / 0.3
    if part == "upper-limb":
        half_width = 0.3 - 0.05 * (x + 1.4) / 2.8
        return np.asarray(np.maximum(np.abs(y) - half_width, np.abs(x) - 1.5) / 0.3, dtype=np.float32)
    if part == "hand":
        fingers = [
            _capsule(x, y, (fx, -0.15), (fx * 1.1, -0.15 - length), 0.09)
            for fx, length in ((-0.3, 0.62), (-0.1, 0.75), (0.1, 0.7), (0.3, 0.55))
        ]
        thumb = _capsule(x, y, (0.4, 0.3), (0.78, -0.12), 0.11)
        return _union(_ellipse(x, y, 0, 0.25, 0.46, 0.5), *fingers, thumb)
    if part == "lower-limb":
        half_width = 0.46 - 0.17 * (y + 1.5) / 3.0
        return np.asarray(np.maximum(np.abs(x) - half_width, np.abs(y) - 1.6) / 0.35, dtype=np.float32)
    if part == "foot":
        toes = [
            _ellipse(x, y, tx, -0.72 + 0.05 * abs(i - 1), 0.08 - 0.008 * i, 0.1)
            for i, tx in enumerate((-0.28, -0.12, 0.03, 0.16, 0.27))
        ]
        return _union(_ellipse(x, y, 0, 0.12, 0.38, 0.78), *toes)
    raise ValueError(f"unknown body part {part!r}")


def _landmarks(part: str, canvas: _Canvas, rng: np.random.Generator) -> None:
    """The features that tell one body part from another (painted over skin only)."""
    x, y, edge, tone = canvas.x, canvas.y, canvas.edge, canvas.tone
    dark = tone * 0.55
    if part == "face":
        hair = _soft(_ellipse(x, y, 0, -0.95, 0.75, 0.45), edge) * canvas.skin
        canvas.paint(hair, _HAIR * rng.uniform(0.8, 1.6))
        for side in (-1, 1):
            canvas.paint(_soft(_ellipse(x, y, side * 0.25, -0.1, 0.12, 0.055), edge), (235, 235, 228))
            canvas.paint(_soft(_ellipse(x, y, side * 0.25, -0.1, 0.045, 0.045), edge), (60, 45, 35))
            brow = _soft(_ellipse(x, y, side * 0.25, -0.24, 0.13, 0.025), edge)
            canvas.paint(brow, _HAIR, 0.8)
        canvas.paint(_soft(_ellipse(x, y, 0, 0.42, 0.17, 0.045), edge), tone * np.array([0.8, 0.5, 0.5]), 0.8)
        canvas.shade(_soft(_ellipse(x, y, 0, 0.15, 0.06, 0.12), edge * 4), 0.9)
    elif part == "neck":
        canvas.shade(_soft(_ellipse(x, y, 0, -0.95, 0.55, 0.35), edge * 6), 0.8)
        canvas.shade(_soft(_ellipse(x, y, 0, 0.55, 0.14, 0.06), edge * 3), 0.85)  # jugular notch
    elif part == "trunk-front":
        for side in (-1, 1):
            canvas.paint(_soft(_ellipse(x, y, side * 0.38, -0.3, 0.085, 0.085), edge), dark * 1.2, 0.55)
            canvas.paint(_soft(_ellipse(x, y, side * 0.38, -0.3, 0.035, 0.035), edge), dark, 0.8)
        canvas.paint(_soft(_ellipse(x, y, 0, 0.5, 0.03, 0.05), edge), dark * 0.8, 0.9)
    elif part == "trunk-back":
        canvas.shade(_soft(np.abs(x).astype(np.float32) - 0.035, edge * 4) * (np.abs(y) < 0.9), 0.82)
        for side in (-1, 1):
            ring = np.abs(_ellipse(x, y, side * 0.42, -0.45, 0.25, 0.18)) - 0.08
            rim = _soft(ring.astype(np.float32), edge * 3)
            canvas.shade(rim, 0.9)
    elif part == "upper-limb":
        canvas.shade(_soft(_ellipse(x, y, 0.0, 0.12, 0.16, 0.025), edge * 2), 0.82)
        canvas.shade(_soft(_ellipse(x, y, 0.0, -0.2, 0.12, 0.12), edge * 8), 1.06)
    elif part == "hand":
        for fx, length in ((-0.3, 0.62), (-0.1, 0.75), (0.1, 0.7), (0.3, 0.55)):
            tip = (fx * 1.1, -0.15 - length + 0.07)
            canvas.paint(_soft(_ellipse(x, y, tip[0], tip[1], 0.06, 0.08), edge), tone * 1.1 + 15, 0.7)
            canvas.shade(_soft(_ellipse(x, y, fx * 1.05, -0.45, 0.08, 0.012), edge), 0.85)
        canvas.paint(_soft(_ellipse(x, y, 0.7, -0.05, 0.06, 0.07), edge), tone * 1.1 + 15, 0.7)
        canvas.shade(_soft(_ellipse(x, y, 0, 0.2, 0.35, 0.012), edge), 0.86)
    elif part == "lower-limb":
        canvas.shade(_soft(_ellipse(x, y, 0, 0.05, 0.2, 0.16), edge * 6), 1.08)
        canvas.shade(_soft(_ellipse(x, y, 0, 0.25, 0.22, 0.03), edge * 3), 0.88)
    elif part == "foot":
        for i, tx in enumerate((-0.28, -0.12, 0.03, 0.16, 0.27)):
            ty = -0.72 + 0.05 * abs(i - 1)
            canvas.paint(
                _soft(_ellipse(x, y, tx, ty - 0.03, 0.05 - 0.005 * i, 0.05), edge), tone * 1.1 + 18, 0.7
            )
        canvas.shade(_soft(_ellipse(x, y, 0, -0.55, 0.33, 0.02), edge * 2), 0.85)


# --- backgrounds, skin texture ---------------------------------------------------------------------


def _background(rng: np.random.Generator, size: int) -> FloatImage:
    colour = _BACKGROUNDS[rng.integers(len(_BACKGROUNDS))] * rng.uniform(0.8, 1.1, 3).astype(np.float32)
    image = np.broadcast_to(colour, (size, size, 3)).astype(np.float32)
    style = rng.integers(4)
    if style == 1:  # stripes: fabric, blinds
        axis = np.arange(size, dtype=np.float32)
        period = rng.uniform(6, 30)
        stripes = (np.sin(axis / period * 2 * np.pi) > 0).astype(np.float32)
        image = image * (
            1 - 0.25 * (stripes[None, :, None] if rng.uniform() < 0.5 else stripes[:, None, None])
        )
    elif style == 2:  # wood grain / marble
        image = image * (1 + 0.12 * _value_noise(rng, size, size / rng.uniform(4, 12))[..., None])
    elif style == 3:  # objects on a table
        for _ in range(rng.integers(1, 4)):
            other = _BACKGROUNDS[rng.integers(len(_BACKGROUNDS))]
            x0, y0 = rng.integers(0, size, 2)
            w, h = rng.integers(size // 8, size // 2, 2)
            image[y0 : y0 + h, x0 : x0 + w] = other
    return image + rng.normal(0, 2.0, (size, size, 1)).astype(np.float32)


def _skin_tone(rng: np.random.Generator, fitzpatrick: int) -> NDArray[np.float32]:
    tone = FITZPATRICK_TONES[fitzpatrick - 1] * rng.uniform(0.95, 1.05, 3).astype(np.float32)
    return np.asarray(tone * rng.uniform(0.95, 1.05), dtype=np.float32)


def _skin_texture(rng: np.random.Generator, size: int, tone: NDArray[np.float32]) -> FloatImage:
    blotches = _value_noise(rng, size, size / rng.uniform(3, 6))
    pores = _value_noise(rng, size, rng.uniform(1.5, 3))
    image = tone * (1 + 0.04 * blotches[..., None]) + rng.uniform(1.5, 5) * pores[..., None]
    return np.asarray(image, dtype=np.float32)


def _healthy_marks(canvas: _Canvas, rng: np.random.Generator, size: int, zoom: float) -> None:
    """Freckles, hairs and veins: what healthy skin shows that is not a lesion."""
    for _ in range(rng.integers(0, 6)):
        cx, cy = rng.uniform(0, size, 2)
        radius = rng.uniform(0.7, 1.8) * zoom
        _stamp(canvas.image, cx, cy, radius, canvas.tone * 0.7, 0.6 * rng.uniform(0.4, 1), canvas.skin)
    for _ in range(rng.integers(0, 5)):
        _line(
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
        _line(canvas.image, rng, size, vein, rng.uniform(1.0, 2.5) * zoom, 0.35, canvas.skin, length=0.5)


def _stamp(
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


def _line(
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


# --- lesions ---------------------------------------------------------------------------------------


def _blob(
    rng: np.random.Generator, size: int, cx: float, cy: float, radius: float, roughness: float
) -> FloatImage:
    """Signed distance-like field of an irregular blob (< 0 inside), in units of ``radius``."""
    axis = np.arange(size, dtype=np.float32) + 0.5
    xs, ys = np.meshgrid(axis, axis)
    wobble = _value_noise(rng, size, max(radius / 1.5, 2.0))
    return np.asarray(np.hypot(xs - cx, ys - cy) / radius - 1.0 - roughness * wobble, dtype=np.float32)


def _erythema_colour(tone: NDArray[np.float32]) -> NDArray[np.float32]:
    """Redness as it shows on this tone: bright red on light skin, dusky violaceous-brown on dark."""
    lightness = float(tone.mean()) / 255
    light_red = np.array([205, 70, 70], dtype=np.float32)
    dusky = tone * np.array([0.8, 0.5, 0.58], dtype=np.float32)
    return np.asarray(light_red * lightness + dusky * (1 - lightness), dtype=np.float32)


_ERYTHEMA_AMOUNT: Final = (0.0, 0.25, 0.45, 0.68)
_PAPULES_PER_AREA: Final = (0.0, 0.0025, 0.007, 0.014)  # per lesion pixel
_SCRATCHES: Final = (0, 2, 5, 9)


def _paint_dermatitis(
    canvas: _Canvas,
    rng: np.random.Generator,
    mask: Mask,
    centre: tuple[float, float],
    radius: float,
    tis: tuple[int, int, int],
    zoom: float,
) -> None:
    erythema, papulation, excoriation = tis
    redness = _erythema_colour(canvas.tone)
    canvas.paint(mask, redness, _ERYTHEMA_AMOUNT[erythema])
    area = float(mask.sum())
    ys, xs = np.nonzero(mask > 0.6)
    if papulation and len(xs):
        count = max(2, int(area * _PAPULES_PER_AREA[papulation]))
        picks = rng.integers(0, len(xs), count)
        bump = (
            canvas.tone * 0.92 * (1 - _ERYTHEMA_AMOUNT[max(erythema, 1)])
            + redness * _ERYTHEMA_AMOUNT[max(erythema, 1)]
        )
        for i in picks:
            r = rng.uniform(0.9, 1.6) * zoom
            shadow = np.asarray(bump * 0.75, dtype=np.float32)
            _stamp(canvas.image, xs[i] + 0.4 * r, ys[i] + 0.4 * r, r, shadow, 0.6, canvas.skin)
            _stamp(canvas.image, xs[i], ys[i], r, bump, 0.9, canvas.skin)
            _stamp(
                canvas.image,
                xs[i] - 0.35 * r,
                ys[i] - 0.35 * r,
                r * 0.35,
                np.minimum(bump * 1.25, 255),
                0.6,
                canvas.skin,
            )
        if papulation == 3:  # oedema: the whole plaque swells and catches the light
            canvas.image *= (1 + 0.07 * mask)[..., None]
    if excoriation and len(xs):
        size = canvas.image.shape[0]
        crust = np.array([95, 35, 30], dtype=np.float32)
        for _ in range(_SCRATCHES[excoriation]):
            i = rng.integers(len(xs))
            ax, ay, bx, by = _line(
                canvas.image,
                rng,
                size,
                np.array([150, 40, 40], dtype=np.float32),
                rng.uniform(0.8, 1.6) * zoom,
                0.85,
                canvas.skin * (mask > 0.3),
                length=rng.uniform(0.3, 0.8) * radius / size,
                centre=(xs[i], ys[i]),
            )
            for t in rng.uniform(0, 1, rng.integers(1, 2 + excoriation)):
                _stamp(
                    canvas.image,
                    ax + t * (bx - ax),
                    ay + t * (by - ay),
                    rng.uniform(0.8, 1.5) * zoom,
                    crust,
                    0.9,
                    canvas.skin,
                )
    del centre


def _paint_condition(
    canvas: _Canvas,
    rng: np.random.Generator,
    condition: str,
    field_: FloatImage,
    centre: tuple[float, float],
    radius: float,
    tis: tuple[int, int, int] | None,
    zoom: float,
) -> Mask:
    """Paint one lesion; returns its ground-truth mask (0–1)."""
    soft_edge = 0.35  # ill-defined borders (eczema)
    sharp_edge = 0.08
    tone = canvas.tone
    if condition == "atopic-dermatitis":
        mask = _soft(field_, soft_edge) * canvas.skin
        _paint_dermatitis(canvas, rng, mask, centre, radius, tis or random_tis(rng), zoom)
        return mask
    if condition == "impetigo":
        mask = _soft(field_, soft_edge) * canvas.skin
        canvas.paint(mask, _erythema_colour(tone), rng.uniform(0.3, 0.5))
        crusts = _value_noise(rng, canvas.image.shape[0], max(radius / 3, 2)) > rng.uniform(0.1, 0.5)
        honey = np.array(
            [rng.uniform(200, 230), rng.uniform(150, 180), rng.uniform(40, 80)], dtype=np.float32
        )
        crust_mask = mask * crusts * (field_ < -0.15)
        canvas.paint(crust_mask.astype(np.float32), honey, 0.9)
        glint = crust_mask * (_value_noise(rng, canvas.image.shape[0], 1.5) > 1.2)
        canvas.paint(glint.astype(np.float32), (250, 235, 170), 0.7)
        return mask
    if condition == "eczema-herpeticum":
        mask = _soft(field_, soft_edge) * canvas.skin
        canvas.paint(mask, _erythema_colour(tone), 0.22)
        ys, xs = np.nonzero(mask > 0.5)
        r = rng.uniform(1.4, 2.2) * zoom
        for i in rng.integers(0, max(len(xs), 1), rng.integers(15, 40)) if len(xs) else []:
            _stamp(canvas.image, xs[i], ys[i], r * 1.5, _erythema_colour(tone) * 1.05, 0.8, canvas.skin)
            _stamp(
                canvas.image, xs[i], ys[i], r, np.array([110, 35, 35], dtype=np.float32), 0.95, canvas.skin
            )
        return mask
    if condition == "mycosis-fungoides":
        mask = _soft(field_, sharp_edge) * canvas.skin
        salmon = np.array([225, 140, 120], dtype=np.float32) * float(tone.mean() / 200) ** 0.5
        canvas.paint(mask, np.minimum(salmon, 255), rng.uniform(0.45, 0.65))
        angle = rng.uniform(0, np.pi)
        wrinkles = np.sin((canvas.x * np.cos(angle) + canvas.y * np.sin(angle)) * rng.uniform(60, 90))
        canvas.shade(mask * (wrinkles > 0.6), 0.93)
        return mask
    if condition == "psoriasis":
        mask = _soft(field_, sharp_edge) * canvas.skin
        canvas.paint(mask, _erythema_colour(tone) * 1.02, 0.65)
        scale = (_value_noise(rng, canvas.image.shape[0], rng.uniform(1.5, 3)) > rng.uniform(-0.2, 0.4)) * (
            field_ < -0.1
        )
        canvas.paint((mask * scale).astype(np.float32), (228, 226, 230), rng.uniform(0.6, 0.85))
        return mask
    if condition == "tinea-corporis":
        outer = _soft(field_, sharp_edge)
        inner_scale = rng.uniform(0.55, 0.75)
        inner = _soft((field_ + 1.0) / inner_scale - 1.0, sharp_edge)
        ring = np.clip(outer - inner, 0, 1) * canvas.skin
        canvas.paint(ring, _erythema_colour(tone), 0.6)
        specks = _value_noise(rng, canvas.image.shape[0], 1.5) > 0.8
        canvas.paint((ring * specks).astype(np.float32), (230, 220, 215), 0.5)
        canvas.paint(inner * canvas.skin, tone * 1.04, 0.3)
        return outer * canvas.skin
    if condition == "urticaria":
        mask = _soft(field_, soft_edge) * canvas.skin
        halo = np.clip(_soft(field_ - 0.35, soft_edge) - mask, 0, 1) * canvas.skin
        canvas.paint(halo, _erythema_colour(tone), 0.35)
        canvas.paint(mask, np.minimum(tone * 1.08 + np.array([20, 5, 8]), 255).astype(np.float32), 0.55)
        return mask
    if condition == "vitiligo":
        mask = _soft(field_, sharp_edge) * canvas.skin
        canvas.paint(mask, (246, 230, 218), rng.uniform(0.75, 0.92))
        return mask
    if condition == TUMOUR:
        mask = _soft(field_, sharp_edge * 2) * canvas.skin
        variegation = _value_noise(rng, canvas.image.shape[0], max(radius / 3, 1.5))
        brown = np.array([95, 60, 40], dtype=np.float32) * rng.uniform(0.5, 1.1)
        canvas.paint(mask, brown, 0.92)
        canvas.paint(mask * np.clip(variegation, 0, 1), brown * 0.5, 0.8)
        return mask
    raise ValueError(f"unknown condition {condition!r}")


_RADIUS: Final = {"mycosis-fungoides": 1.6, "vitiligo": 1.2, TUMOUR: 0.5, "eczema-herpeticum": 1.1}


# --- the scene ------------------------------------------------------------------------------------


def random_tis(rng: np.random.Generator) -> tuple[int, int, int]:
    """Each item 0–3 uniformly, total at least 1 (a lesion with nothing to score is no lesion)."""
    while True:
        items = tuple(int(v) for v in rng.integers(0, 4, 3))
        if sum(items):
            return items  # type: ignore[return-value]


def generate_scene(
    rng: np.random.Generator,
    *,
    size: int = 256,
    body_part: str | None = None,
    condition: str | None = "random",
    fitzpatrick: int | None = None,
    tis: tuple[int, int, int] | None = None,
    zoom: float | None = None,
    blur: float | None = None,
    lesion_count: int | None = None,
) -> SkinScene:
    """One photo. ``condition`` None plants no lesion; "random" draws one (or none, 1 in 8)."""
    part = body_part or BODY_PART_KEYS[rng.integers(len(BODY_PART_KEYS))]
    fitz = fitzpatrick or int(rng.integers(1, 7))
    zoom = zoom if zoom is not None else float(np.exp(rng.uniform(np.log(0.7), np.log(2.6))))
    if condition == "random":
        condition = None if rng.uniform() < 0.125 else CONDITIONS[rng.integers(len(CONDITIONS))]
    if part == NOT_SKIN:
        condition = None
    if condition == "atopic-dermatitis" and tis is None:
        tis = random_tis(rng)
    if condition != "atopic-dermatitis":
        tis = None

    image = _background(rng, size)
    tone = _skin_tone(rng, fitz)
    skin = np.zeros((size, size), dtype=np.float32)
    x = y = np.zeros((size, size), dtype=np.float32)
    edge = 2.0 / size / zoom * 2
    if part != NOT_SKIN:
        offset = (float(rng.uniform(-0.25, 0.25)), float(rng.uniform(-0.25, 0.25)))
        x, y = _body_coords(size, zoom, float(rng.uniform(-0.5, 0.5)), offset)
        skin = _soft(_silhouette(part, x, y), edge * 4)
        texture = _skin_texture(rng, size, tone)
        # Side light on a rounded body: darker towards the silhouette's edges.
        roundness = np.clip(-_silhouette(part, x, y), 0, 1) ** 0.4
        texture *= (0.82 + 0.18 * roundness)[..., None]
        image = image * (1 - skin[..., None]) + texture * skin[..., None]
    canvas = _Canvas(image, skin, x, y, edge, tone)
    if part != NOT_SKIN:
        _landmarks(part, canvas, rng)
        _healthy_marks(canvas, rng, size, zoom)

    lesions: list[PlantedLesion] = []
    truth = np.zeros((size, size), dtype=np.float32)
    if condition is not None:
        count = lesion_count or int(rng.integers(1, 4))
        inside = np.argwhere(skin > 0.99)
        margin = size * 0.08
        inside = inside[
            (inside[:, 0] > margin)
            & (inside[:, 0] < size - margin)
            & (inside[:, 1] > margin)
            & (inside[:, 1] < size - margin)
        ]
        for _ in range(count if len(inside) else 0):
            cy, cx = inside[rng.integers(len(inside))].astype(np.float32)
            radius = float(rng.uniform(0.05, 0.11) * size * min(zoom, 2.0) * _RADIUS.get(condition, 1.0))
            field_ = _blob(rng, size, float(cx), float(cy), radius, rng.uniform(0.15, 0.4))
            mask = _paint_condition(canvas, rng, condition, field_, (float(cx), float(cy)), radius, tis, zoom)
            truth = np.maximum(truth, mask)
            rows, cols = np.nonzero(mask > 0.5)
            if len(rows):
                lesions.append(
                    PlantedLesion(
                        condition,
                        (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1),
                    )
                )
        if not lesions:
            condition, tis = None, None

    image = _photograph(canvas.image, rng)
    blur = blur if blur is not None else (float(rng.uniform(0.3, 1.8)) if rng.uniform() < 0.35 else 0.0)
    pil = Image.fromarray(_to_uint8(image))
    if blur > 0:
        pil = pil.filter(ImageFilter.GaussianBlur(blur))
    return SkinScene(
        image=np.asarray(pil),
        lesion_mask=truth > 0.5,
        body_part=part,
        fitzpatrick=fitz,
        condition=condition,
        tis=tis,
        lesions=tuple(lesions),
        zoom=zoom,
        blur=blur,
        skin_mask=skin > 0.99,
    )


def _photograph(image: FloatImage, rng: np.random.Generator) -> FloatImage:
    """The camera and the room: exposure, white balance, a light gradient, vignetting, sensor noise."""
    size = image.shape[0]
    gain = rng.uniform(0.8, 1.15)
    cast = rng.uniform(0.93, 1.07, 3).astype(np.float32)
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    xs, ys = np.meshgrid(axis, axis)
    angle = rng.uniform(0, 2 * np.pi)
    gradient = 1 + rng.uniform(-0.15, 0.15) * (xs * np.cos(angle) + ys * np.sin(angle))
    vignette = 1 - rng.uniform(0, 0.25) * (xs**2 + ys**2) * 2
    lit = image * (gain * cast) * (gradient * vignette)[..., None]
    return np.asarray(lit + rng.normal(0, rng.uniform(1, 4), (size, size, 1)), dtype=np.float32)


def _to_uint8(image: FloatImage) -> Uint8Image:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)
