"""The lesions painted into generated skin photos (:mod:`models.skin.synthetic`), one condition each.

Atopic dermatitis with its Three Item Severity items (erythema, oedema/papulation, excoriation,
each 0–3), its complications, the look-alikes and pigmented tumours: each painter returns the
lesion's ground-truth mask. What each condition looks like is listed in :mod:`models.skin.synthetic`.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

from models.engine.reference_data import _value_noise
from models.skin.labels import DEFAULT_DIAGNOSIS_KEYS
from models.skin.synthetic_drawing import Canvas, FloatImage, Mask, line, soft, stamp

TUMOUR: Final = "pigmented-tumour"
CONDITIONS: Final[tuple[str, ...]] = (*DEFAULT_DIAGNOSIS_KEYS, TUMOUR)


# --- lesions ---------------------------------------------------------------------------------------


def blob(
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
    canvas: Canvas,
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
            stamp(canvas.image, xs[i] + 0.4 * r, ys[i] + 0.4 * r, r, shadow, 0.6, canvas.skin)
            stamp(canvas.image, xs[i], ys[i], r, bump, 0.9, canvas.skin)
            stamp(
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
            ax, ay, bx, by = line(
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
                stamp(
                    canvas.image,
                    ax + t * (bx - ax),
                    ay + t * (by - ay),
                    rng.uniform(0.8, 1.5) * zoom,
                    crust,
                    0.9,
                    canvas.skin,
                )
    del centre


def paint_condition(
    canvas: Canvas,
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
        mask = soft(field_, soft_edge) * canvas.skin
        _paint_dermatitis(canvas, rng, mask, centre, radius, tis or random_tis(rng), zoom)
        return mask
    if condition == "impetigo":
        mask = soft(field_, soft_edge) * canvas.skin
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
        mask = soft(field_, soft_edge) * canvas.skin
        canvas.paint(mask, _erythema_colour(tone), 0.22)
        ys, xs = np.nonzero(mask > 0.5)
        r = rng.uniform(1.4, 2.2) * zoom
        for i in rng.integers(0, max(len(xs), 1), rng.integers(15, 40)) if len(xs) else []:
            stamp(canvas.image, xs[i], ys[i], r * 1.5, _erythema_colour(tone) * 1.05, 0.8, canvas.skin)
            stamp(canvas.image, xs[i], ys[i], r, np.array([110, 35, 35], dtype=np.float32), 0.95, canvas.skin)
        return mask
    if condition == "mycosis-fungoides":
        mask = soft(field_, sharp_edge) * canvas.skin
        salmon = np.array([225, 140, 120], dtype=np.float32) * float(tone.mean() / 200) ** 0.5
        canvas.paint(mask, np.minimum(salmon, 255), rng.uniform(0.45, 0.65))
        angle = rng.uniform(0, np.pi)
        wrinkles = np.sin((canvas.x * np.cos(angle) + canvas.y * np.sin(angle)) * rng.uniform(60, 90))
        canvas.shade(mask * (wrinkles > 0.6), 0.93)
        return mask
    if condition == "psoriasis":
        mask = soft(field_, sharp_edge) * canvas.skin
        canvas.paint(mask, _erythema_colour(tone) * 1.02, 0.65)
        scale = (_value_noise(rng, canvas.image.shape[0], rng.uniform(1.5, 3)) > rng.uniform(-0.2, 0.4)) * (
            field_ < -0.1
        )
        canvas.paint((mask * scale).astype(np.float32), (228, 226, 230), rng.uniform(0.6, 0.85))
        return mask
    if condition == "tinea-corporis":
        outer = soft(field_, sharp_edge)
        inner_scale = rng.uniform(0.55, 0.75)
        inner = soft((field_ + 1.0) / inner_scale - 1.0, sharp_edge)
        ring = np.clip(outer - inner, 0, 1) * canvas.skin
        canvas.paint(ring, _erythema_colour(tone), 0.6)
        specks = _value_noise(rng, canvas.image.shape[0], 1.5) > 0.8
        canvas.paint((ring * specks).astype(np.float32), (230, 220, 215), 0.5)
        canvas.paint(inner * canvas.skin, tone * 1.04, 0.3)
        return outer * canvas.skin
    if condition == "urticaria":
        mask = soft(field_, soft_edge) * canvas.skin
        halo = np.clip(soft(field_ - 0.35, soft_edge) - mask, 0, 1) * canvas.skin
        canvas.paint(halo, _erythema_colour(tone), 0.35)
        canvas.paint(mask, np.minimum(tone * 1.08 + np.array([20, 5, 8]), 255).astype(np.float32), 0.55)
        return mask
    if condition == "vitiligo":
        mask = soft(field_, sharp_edge) * canvas.skin
        canvas.paint(mask, (246, 230, 218), rng.uniform(0.75, 0.92))
        return mask
    if condition == TUMOUR:
        mask = soft(field_, sharp_edge * 2) * canvas.skin
        variegation = _value_noise(rng, canvas.image.shape[0], max(radius / 3, 1.5))
        brown = np.array([95, 60, 40], dtype=np.float32) * rng.uniform(0.5, 1.1)
        canvas.paint(mask, brown, 0.92)
        canvas.paint(mask * np.clip(variegation, 0, 1), brown * 0.5, 0.8)
        return mask
    raise ValueError(f"unknown condition {condition!r}")


RADIUS: Final = {"mycosis-fungoides": 1.6, "vitiligo": 1.2, TUMOUR: 0.5, "eczema-herpeticum": 1.1}


def random_tis(rng: np.random.Generator) -> tuple[int, int, int]:
    """Each item 0–3 uniformly, total at least 1 (a lesion with nothing to score is no lesion)."""
    while True:
        items = tuple(int(v) for v in rng.integers(0, 4, 3))
        if sum(items):
            return items  # type: ignore[return-value]
