"""Generated eyelid photos with a real conjunctiva strip pasted in: training data for the segmenter.

No whole-eyelid photos with drawn outlines exist here, but CP-AnemiC's strips are real tissue
cut out with an exact alpha mask. So a scene is drawn around a strip the way an everted lower
lid looks in a phone photo, and the strip's own alpha becomes the ground truth — exact, with
no hand-drawn outline in between:

- skin of a random tone (very light to very dark) with mottling, sometimes a background
  (wall, cloth) beside the face, sometimes a finger pulling the lid down, sometimes red
  blotches on the skin (eczema, irritation) that are *not* conjunctiva;
- the eyeball above the strip (sclera with vessels, an iris looking up), the lid margin and
  lashes below it;
- then light: overall gain and colour cast, a gradient, vignetting, defocus blur, sensor
  noise and JPEG compression.

Negative scenes (``positive=False``) hold no conjunctiva: an eye with the lid not pulled down
(only a thin pink waterline), skin with red patches, a limb with an eczema patch in front of
a wall, or a wall. They teach the network to say
"nothing here" rather than mark the reddest thing in view.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter

from models.hb.strip import OPAQUE_ALPHA, Strip

FloatImage = NDArray[np.float32]

# (height, width) of generated scenes: phone photos are landscape 4:3 to 16:9 once the eye is
# framed; the network squashes every photo to one input size, so it must see several aspects.
SCENE_SIZES: Final = ((240, 320), (180, 320), (270, 320))
# Skin tones as sRGB, from very light to very dark (spanning the Monk scale's swatches).
SKIN_TONES: Final = (
    (246, 226, 210), (236, 200, 176), (222, 180, 150), (200, 150, 118), (176, 124, 92),
    (150, 100, 72), (120, 80, 58), (96, 64, 48), (72, 50, 40), (52, 38, 32),
)  # fmt: skip
IRIS_COLOURS: Final = ((70, 45, 30), (105, 70, 40), (40, 28, 22), (95, 110, 120), (90, 95, 60))
NEGATIVE_KINDS: Final = ("closed-eye", "red-skin", "limb", "wall")
NEGATIVE_WEIGHTS: Final = (0.3, 0.25, 0.3, 0.15)


@dataclass(frozen=True, eq=False)
class Scene:
    """One generated photo (H, W, 3 uint8) and its exact conjunctiva mask (H, W)."""

    rgb: NDArray[np.uint8]
    mask: NDArray[np.bool_]
    # Index of the strip pasted in (in the sequence the scenes were made from); None without one.
    source: int | None = None

    @property
    def positive(self) -> bool:
        return bool(self.mask.any())


def smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> FloatImage:
    """Unit-variance value noise with features about ``cell`` pixels across."""
    small = rng.standard_normal((max(2, math.ceil(height / cell) + 1), max(2, math.ceil(width / cell) + 1)))
    big = Image.fromarray(small.astype(np.float32)).resize((width, height), Image.Resampling.BICUBIC)
    out = np.asarray(big, dtype=np.float32)
    normalised: FloatImage = ((out - out.mean()) / (out.std() + 1e-6)).astype(np.float32)
    return normalised


def _blend(
    base: FloatImage, colour: FloatImage | tuple[float, float, float], weight: FloatImage
) -> FloatImage:
    w = np.clip(weight, 0.0, 1.0)[..., None]
    blended: FloatImage = (base * (1.0 - w) + np.asarray(colour, dtype=np.float32) * w).astype(np.float32)
    return blended


def _skin(rng: np.random.Generator, height: int, width: int) -> tuple[FloatImage, NDArray[np.float32]]:
    tone = np.asarray(SKIN_TONES[rng.integers(len(SKIN_TONES))], dtype=np.float32)
    tone = tone * rng.uniform(0.92, 1.08, 3).astype(np.float32)
    skin = np.broadcast_to(tone, (height, width, 3)).astype(np.float32).copy()
    skin *= (1.0 + 0.05 * smooth_noise(rng, height, width, 40))[..., None]
    skin *= (1.0 + 0.025 * smooth_noise(rng, height, width, 3))[..., None]
    return skin, tone


def _strip_layer(
    rng: np.random.Generator, strip: Strip, height: int, width: int
) -> tuple[NDArray[np.float32], FloatImage]:
    """The strip scaled, rotated and placed: (alpha 0–1 on the frame, RGB on the frame).

    A third of the scenes are close-ups: the lining spans the whole frame (cut off at its
    sides) and is two to three times thicker than CP-AnemiC's crops, as when the phone is held
    close to a well-everted lid; the rest show the whole crescent at 30–85 % of the width.
    """
    rgba = np.dstack([strip.rgb, strip.mask.astype(np.uint8) * 255])
    image = Image.fromarray(rgba, "RGBA")
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    close_up = rng.random() < 0.35
    target_w = rng.uniform(0.85, 1.5) * width if close_up else rng.uniform(0.3, 0.85) * width
    stretch = rng.uniform(1.3, 2.8) if close_up else rng.uniform(0.8, 1.4)
    scale = target_w / image.width
    size = (max(8, round(image.width * scale)), max(4, round(image.height * scale * stretch)))
    if size[1] > 0.7 * height:
        size = (size[0], round(0.7 * height))
    image = image.resize(size, Image.Resampling.BILINEAR)
    angle = rng.uniform(-8, 8) if close_up else rng.uniform(-18, 18)
    image = image.rotate(float(angle), Image.Resampling.BILINEAR, expand=True)
    sw, sh = image.size
    if sh > 0.8 * height:
        image = image.resize((sw, round(0.8 * height)), Image.Resampling.BILINEAR)
        sw, sh = image.size
    # Centre anywhere in the middle of the frame; a strip wider than the frame is cut at its sides.
    cx = (
        rng.uniform(0.4, 0.6) * width
        if close_up
        else rng.uniform(sw / 2 + 2, max(sw / 2 + 3, width - sw / 2 - 2))
    )
    cy = rng.uniform(
        max(0.3 * height, sh / 2 + 2), max(0.3 * height, sh / 2 + 2, min(0.7 * height, height - sh / 2 - 2))
    )
    left, top = round(cx - sw / 2), round(cy - sh / 2)
    layer = np.asarray(image, dtype=np.float32)
    alpha = np.zeros((height, width), np.float32)
    colour = np.zeros((height, width, 3), np.float32)
    x0, y0 = max(0, left), max(0, top)
    x1, y1 = min(width, left + sw), min(height, top + sh)
    alpha[y0:y1, x0:x1] = layer[y0 - top : y1 - top, x0 - left : x1 - left, 3] / 255.0
    colour[y0:y1, x0:x1] = layer[y0 - top : y1 - top, x0 - left : x1 - left, :3]
    return alpha, colour


def _boundaries(mask: NDArray[np.bool_]) -> tuple[NDArray[np.float32], NDArray[np.float32], int, int]:
    """Top and bottom edge row of the tissue in every column (extended flat past its ends)."""
    cols = np.flatnonzero(mask.any(axis=0))
    x0, x1 = int(cols[0]), int(cols[-1])
    h = mask.shape[0]
    rows = np.arange(h, dtype=np.float32)[:, None]
    top = np.where(mask, rows, np.inf).min(axis=0)
    bottom = np.where(mask, rows, -np.inf).max(axis=0)
    top[:x0] = top[x0]
    top[x1 + 1 :] = top[x1]
    bottom[:x0] = bottom[x0]
    bottom[x1 + 1 :] = bottom[x1]
    return top.astype(np.float32), bottom.astype(np.float32), x0, x1


def _eyeball(
    rng: np.random.Generator,
    image: FloatImage,
    centre: tuple[float, float],
    radii: tuple[float, float],
    below: NDArray[np.float32] | None,
) -> NDArray[np.bool_]:
    """Sclera and iris inside an ellipse, cut off below the row ``below`` gives per column."""
    height, width = image.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = centre
    rx, ry = radii
    inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
    if below is not None:
        inside &= yy <= below[None, :]
    shade = np.clip(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2, 0, 1)
    white = np.asarray((236, 230, 224), np.float32) * rng.uniform(0.8, 1.02) * rng.uniform(0.95, 1.05, 3)
    sclera = np.broadcast_to(white, image.shape).astype(np.float32) * (1.0 - 0.18 * shade)[..., None]
    vessels = np.clip(smooth_noise(rng, height, width, 4) - 2.0, 0, 1) * rng.uniform(0.2, 0.7)
    sclera = _blend(sclera, (200, 90, 90), vessels)
    iris_r = min(ry * rng.uniform(0.6, 1.0), rx * 0.45)
    ix, iy = cx + rng.uniform(-0.3, 0.3) * rx, cy - ry * rng.uniform(0.3, 0.9)
    dist = np.hypot(xx - ix, yy - iy)
    iris_colour = np.asarray(IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))], np.float32)
    fibres = 1.0 + 0.15 * smooth_noise(rng, height, width, 2.5)
    iris = np.clip((iris_r - dist) / 1.5, 0, 1)
    sclera = _blend(sclera, iris_colour * fibres[..., None], iris)
    sclera = _blend(sclera, (12, 10, 10), np.clip((iris_r * 0.45 - dist) / 1.5, 0, 1))
    image[inside] = sclera[inside]
    return np.asarray(inside, dtype=bool)


def _lashes(
    rng: np.random.Generator, image: Image.Image, root: NDArray[np.float32], span: tuple[int, int], down: bool
) -> None:
    draw = ImageDraw.Draw(image)
    x0, x1 = span
    count = int(rng.integers(8, 40))
    colour = tuple(int(c) for c in rng.integers(10, 45, 3))
    sign = 1.0 if down else -1.0
    for _ in range(count):
        x = float(rng.uniform(x0, x1))
        y = float(root[min(len(root) - 1, max(0, int(x)))])
        length = float(rng.uniform(5, 22))
        lean = (x - (x0 + x1) / 2) / max(1.0, (x1 - x0) / 2) * rng.uniform(0.2, 0.8)
        end = (x + lean * length, y + sign * length)
        draw.line([(x, y), end], fill=colour, width=int(rng.integers(1, 3)))


def _red_blotches(
    rng: np.random.Generator, image: FloatImage, count: int, rows: tuple[float, float] | None = None
) -> None:
    height, width = image.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    wobble = smooth_noise(rng, height, width, 12)
    low, high = rows or (0.0, float(height))
    for _ in range(count):
        cx, cy = rng.uniform(0, width), rng.uniform(low, high)
        r = rng.uniform(0.05, 0.2) * width
        stretch = rng.uniform(0.5, 2.0)
        d = np.hypot((xx - cx) / stretch, (yy - cy) * stretch) / r + 0.25 * wobble
        weight = np.clip(1.0 - d, 0, 1) ** 0.5 * rng.uniform(0.4, 0.9)
        red = np.asarray((rng.uniform(170, 215), rng.uniform(60, 110), rng.uniform(70, 110)), np.float32)
        image[:] = _blend(image, red, weight)


def _background(rng: np.random.Generator, image: FloatImage) -> None:
    """A wall or cloth beyond a curved edge of the face."""
    height, width = image.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    colour = rng.uniform(30, 230, 3).astype(np.float32)
    texture = 1.0 + rng.uniform(0.0, 0.12) * smooth_noise(rng, height, width, rng.uniform(3, 30))
    side = int(rng.integers(4))
    edge = rng.uniform(0.05, 0.25) + 0.05 * smooth_noise(rng, 1, max(height, width), 30)[0]
    coord = (xx / width, 1 - xx / width, yy / height, 1 - yy / height)[side]
    along = (yy if side < 2 else xx).astype(np.int64)
    weight = np.clip((edge[along] - coord) * 60.0, 0, 1)
    image[:] = _blend(image, colour * texture[..., None], weight)


def _finger(rng: np.random.Generator, image: FloatImage, tone: NDArray[np.float32], y_from: float) -> None:
    height, width = image.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = rng.uniform(0.2, 0.8) * width, rng.uniform(max(y_from, 0.7 * height), 1.1 * height)
    rx, ry = rng.uniform(0.12, 0.25) * width, rng.uniform(0.12, 0.25) * height
    d = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2
    colour = tone * rng.uniform(0.85, 1.12, 3).astype(np.float32)
    shading = (1.0 - 0.2 * np.clip(d, 0, 1))[..., None]
    image[:] = _blend(image, colour * shading, np.clip((1.0 - d) * 8.0, 0, 1))


def _light(rng: np.random.Generator, image: FloatImage) -> NDArray[np.uint8]:
    height, width = image.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    gain = rng.uniform(0.6, 1.25) * rng.uniform(0.88, 1.12, 3)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = ((xx / width - 0.5) * math.cos(angle) + (yy / height - 0.5) * math.sin(angle)) * rng.uniform(
        0, 0.5
    )
    vignette = 1.0 - rng.uniform(0, 0.35) * (((xx / width - 0.5) ** 2 + (yy / height - 0.5) ** 2) * 2)
    lit = image * gain.astype(np.float32) * ((1.0 + ramp) * vignette)[..., None]
    picture = Image.fromarray(np.clip(lit, 0, 255).astype(np.uint8))
    blur = rng.uniform(0, 2.0) if rng.random() < 0.7 else 0.0
    if blur > 0.3:
        picture = picture.filter(ImageFilter.GaussianBlur(blur))
    out = np.asarray(picture, dtype=np.float32) + rng.normal(0, rng.uniform(0, 6), (height, width, 3))
    result = np.clip(out, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        buffer = io.BytesIO()
        Image.fromarray(result).save(buffer, format="JPEG", quality=int(rng.integers(55, 95)))
        result = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), dtype=np.uint8)
    return result


def eyelid_scene(rng: np.random.Generator, strip: Strip) -> Scene:
    """A pulled-down lower eyelid with ``strip`` as its palpebral conjunctiva; mask = the strip's alpha."""
    height, width = SCENE_SIZES[rng.integers(len(SCENE_SIZES))]
    image, tone = _skin(rng, height, width)
    if rng.random() < 0.3:
        _background(rng, image)
    alpha, colour = _strip_layer(rng, strip, height, width)
    mask = alpha >= OPAQUE_ALPHA / 255.0
    top, bottom, x0, x1 = _boundaries(mask)
    span = max(1, x1 - x0)
    centre_x = (x0 + x1) / 2
    mid = round(centre_x)
    rx = span * rng.uniform(0.5, 0.65)
    ry = span * rng.uniform(0.2, 0.4)
    cy = (top[mid] + bottom[mid]) / 2 - ry * rng.uniform(0.4, 0.8)
    if rng.random() < 0.3:
        _red_blotches(rng, image, int(rng.integers(1, 3)))
    # Past the tissue's ends the eye closes towards its corners: no sclera below the tips.
    columns = np.arange(width)
    limit = np.where((columns >= x0) & (columns <= x1), bottom, top)
    _eyeball(rng, image, (centre_x, cy), (rx, ry), limit)
    # Lid margin: a darker, redder band just under the tissue, then lashes hanging from it.
    yy = np.arange(height, dtype=np.float32)[:, None]
    thickness = rng.uniform(2, 7)
    in_span = (np.arange(width) >= x0) & (np.arange(width) <= x1)
    band = (yy > bottom[None, :]) & (yy <= bottom[None, :] + thickness) & in_span[None, :]
    margin_colour = tone * np.asarray((0.8, 0.62, 0.62), np.float32) * rng.uniform(0.8, 1.05)
    image[band] = _blend(image[band], margin_colour, np.full(band.sum(), 0.8, np.float32))
    picture = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    if rng.random() < 0.85:
        _lashes(rng, picture, bottom + thickness, (x0, x1), down=True)
    image = np.asarray(picture, dtype=np.float32).copy()
    if rng.random() < 0.4:
        _finger(rng, image, tone, float(bottom[mid] + 15))
    image = _blend(image, colour, alpha)
    return Scene(_light(rng, image), mask)


def _limb(rng: np.random.Generator, image: FloatImage) -> None:
    """A forearm or shin across the frame, the room behind it, often an eczema patch on it.

    The skin photos this network must not take for an everted lid: a light band (a wall, a
    sheet) above skin with a red patch looks, in colour alone, much like sclera above lining.
    """
    height, width = image.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    u = xx / width - 0.5
    bend = rng.uniform(-0.15, 0.15) * height
    top = rng.uniform(0.05, 0.35) * height + bend * u * 2 + 3 * smooth_noise(rng, 1, width, 40)[0][None, :]
    bottom = rng.uniform(0.65, 0.97) * height + bend * u * 2 + 3 * smooth_noise(rng, 1, width, 40)[0][None, :]
    across = np.clip((yy - top) / np.maximum(bottom - top, 1.0), 0.0, 1.0)
    # A limb is a cylinder: its skin darkens towards both edges.
    image *= (1.0 - 0.25 * (2.0 * across - 1.0) ** 4)[..., None]
    _red_blotches(rng, image, int(rng.integers(1, 4)), (float(top.mean()), float(bottom.mean())))
    pale = rng.random() < 0.5
    colour = rng.uniform(170, 235, 3) if pale else rng.uniform(30, 230, 3)
    texture = 1.0 + rng.uniform(0.0, 0.1) * smooth_noise(rng, height, width, rng.uniform(10, 60))
    behind = np.clip(np.maximum(top - yy, yy - bottom) + 0.5, 0.0, 1.0)
    image[:] = _blend(image, colour.astype(np.float32) * texture[..., None], behind)
    picture = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    for _ in range(int(rng.integers(0, 80))):  # body hair
        x, y = float(rng.uniform(0, width)), float(rng.uniform(top.mean(), bottom.mean()))
        length, angle = float(rng.uniform(3, 9)), float(rng.uniform(-0.6, 0.6))
        draw.line([(x, y), (x + length * math.cos(angle), y + length * math.sin(angle))], fill=(40, 30, 25))
    image[:] = np.asarray(picture, dtype=np.float32)


def negative_scene(rng: np.random.Generator) -> Scene:
    """A photo with no palpebral conjunctiva in view (the mask is empty)."""
    height, width = SCENE_SIZES[rng.integers(len(SCENE_SIZES))]
    image, tone = _skin(rng, height, width)
    if rng.random() < 0.3:
        _background(rng, image)
    kind = NEGATIVE_KINDS[rng.choice(len(NEGATIVE_KINDS), p=NEGATIVE_WEIGHTS)]
    if kind == "closed-eye":
        span = rng.uniform(0.35, 0.8) * width
        cx, cy = rng.uniform(0.3, 0.7) * width, rng.uniform(0.35, 0.6) * height
        rx, ry = span / 2, span * rng.uniform(0.12, 0.25)
        xs = np.arange(width, dtype=np.float32)
        lower = cy + ry * np.sqrt(np.clip(1 - ((xs - cx) / rx) ** 2, 0, 1))
        _eyeball(rng, image, (cx, cy), (rx, ry), None)
        # The waterline of a lid that is not pulled down: a thin pink rim, not the lining.
        yy = np.arange(height, dtype=np.float32)[:, None]
        rim = (
            (yy > lower[None, :] - 2)
            & (yy <= lower[None, :] + rng.uniform(1, 3))
            & (np.abs(xs - cx) < rx)[None]
        )
        image[rim] = _blend(image[rim], (205, 120, 125), np.full(rim.sum(), 0.7, np.float32))
        picture = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
        _lashes(rng, picture, lower + 2, (int(cx - rx * 0.9), int(cx + rx * 0.9)), down=True)
        image = np.asarray(picture, dtype=np.float32).copy()
        if rng.random() < 0.3:
            _red_blotches(rng, image, 1)
    elif kind == "red-skin":
        _red_blotches(rng, image, int(rng.integers(1, 5)))
    elif kind == "limb":
        _limb(rng, image)
    else:
        colour = rng.uniform(40, 230, 3).astype(np.float32)
        texture = 1.0 + rng.uniform(0.0, 0.15) * smooth_noise(rng, height, width, rng.uniform(2, 40))
        image = (np.broadcast_to(colour, image.shape) * texture[..., None]).astype(np.float32)
    if rng.random() < 0.3:
        _finger(rng, image, tone, 0.5 * height)
    return Scene(_light(rng, image), np.zeros((height, width), dtype=bool))
