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

The drawing primitives are in :mod:`models.skin.synthetic_drawing`, body parts and skin in
:mod:`models.skin.synthetic_body`, the lesions in :mod:`models.skin.synthetic_lesions`; this
module puts them together with the background and the camera.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageFilter

from models.engine.reference_data import _value_noise
from models.skin.labels import BODY_PART_KEYS, NOT_SKIN
from models.skin.synthetic_body import healthy_marks, landmarks, silhouette, skin_texture, skin_tone
from models.skin.synthetic_drawing import Canvas, FloatImage, body_coords, soft
from models.skin.synthetic_lesions import CONDITIONS, RADIUS, blob, paint_condition, random_tis

Uint8Image = NDArray[np.uint8]

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


# --- backgrounds ----------------------------------------------------------------------------------


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


# --- the scene ------------------------------------------------------------------------------------


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
    tone = skin_tone(rng, fitz)
    skin = np.zeros((size, size), dtype=np.float32)
    x = y = np.zeros((size, size), dtype=np.float32)
    edge = 2.0 / size / zoom * 2
    if part != NOT_SKIN:
        offset = (float(rng.uniform(-0.25, 0.25)), float(rng.uniform(-0.25, 0.25)))
        x, y = body_coords(size, zoom, float(rng.uniform(-0.5, 0.5)), offset)
        skin = soft(silhouette(part, x, y), edge * 4)
        texture = skin_texture(rng, size, tone)
        # Side light on a rounded body: darker towards the silhouette's edges.
        roundness = np.clip(-silhouette(part, x, y), 0, 1) ** 0.4
        texture *= (0.82 + 0.18 * roundness)[..., None]
        image = image * (1 - skin[..., None]) + texture * skin[..., None]
    canvas = Canvas(image, skin, x, y, edge, tone)
    if part != NOT_SKIN:
        landmarks(part, canvas, rng)
        healthy_marks(canvas, rng, size, zoom)

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
            radius = float(rng.uniform(0.05, 0.11) * size * min(zoom, 2.0) * RADIUS.get(condition, 1.0))
            field_ = blob(rng, size, float(cx), float(cy), radius, rng.uniform(0.15, 0.4))
            mask = paint_condition(canvas, rng, condition, field_, (float(cx), float(cy)), radius, tis, zoom)
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
