"""The synthetic example scenes: a forearm with an eczema-like patch (plus a phone-like EXIF block)
and a pulled-down lower eyelid, each drawn from a fixed seed.

Used by ``make_examples.py``, which encodes, writes and checks them.
"""

from __future__ import annotations

import math

import numpy as np
from drawing import blend, camera, line_layer, smooth_noise, streaks, wandering_lines
from PIL import ExifTags, Image, ImageFilter

# When the fake photo was "taken": a Japanese clinic's local time, so the offset shows.
TAKEN_LOCAL = "2025:01:15 10:30:00"
TAKEN_FHIR = "2025-01-15T10:30:00+09:00"


# --- the forearm ---------------------------------------------------------------------------------


def forearm_scene(seed: int = 20250115, width: int = 1024, height: int = 768) -> Image.Image:
    """An upright forearm on a pale-blue sheet with a red, papular, scratched eczema patch."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)

    # Background: a creased pale-blue examination sheet under soft light from the top left.
    light = 1.0 - 0.25 * (xx / width) * 0.5 - 0.2 * (yy / height)
    sheet = np.stack([150 * light, 170 * light, 192 * light], axis=-1)
    folds = smooth_noise(rng, height, width, 120) + 0.5 * smooth_noise(rng, height, width, 35)
    sheet *= (1.0 + 0.05 * folds)[..., None]
    sheet += smooth_noise(rng, height, width, 1.5)[..., None] * 2.0  # weave

    # The arm: a tapering band across the frame, wrist on the left, slightly curved.
    centre_y = 390 + 40 * np.sin((xx / width) * math.pi * 0.8) - 0.06 * (xx - width / 2)
    half = 215 + 55 * (xx / width)
    t = (yy - centre_y) / half  # −1 … 1 across the arm
    arm_cover = np.clip((1.0 - np.abs(t)) * half / 2.5, 0.0, 1.0)  # ~2.5 px soft edge

    # Shadow the arm casts on the sheet, below and to the right.
    shadow_t = (yy - centre_y - 18) / (half + 10)
    shadow = np.clip(1.0 - np.abs(shadow_t), 0.0, 1.0) ** 0.5 * 0.35
    sheet *= (1.0 - shadow * (1.0 - arm_cover))[..., None]

    # Skin: light-medium tone, rounded shading (a cylinder lit from above), redder at the rims.
    roundness = np.sqrt(np.clip(1.0 - t**2, 0.0, 1.0))
    shade = 0.55 + 0.45 * roundness + 0.1 * np.clip(-t, 0.0, 1.0) * roundness
    base = np.array([214, 166, 140], dtype=np.float32)
    skin = base * shade[..., None]
    skin = blend(skin, (170, 100, 90), (1.0 - roundness) * 0.35)
    blotch = smooth_noise(rng, height, width, 70)
    skin += np.stack([blotch * 4.0, blotch * 2.5, blotch * 2.5], axis=-1)
    mottle = smooth_noise(rng, height, width, 6)
    pores = smooth_noise(rng, height, width, 1.6)
    creases = streaks(rng, height, width, 21, 35) + streaks(rng, height, width, 21, -40)
    texture = 1.0 + 0.02 * mottle + 0.022 * pores - 0.008 * np.clip(creases, 0, None)
    skin *= texture[..., None]

    # Faint bluish superficial veins running along the arm.
    veins: list[list[tuple[float, float]]] = []
    for _ in range(3):
        vy, phase = rng.uniform(300, 480), rng.uniform(0, 6)
        veins.append(
            [(float(x), vy + 25 * math.sin(x / 180 + phase) + 0.04 * x) for x in range(0, width + 40, 40)]
        )
    vein_cover = (
        np.asarray(
            Image.fromarray((line_layer((width, height), veins, 9) * 255).astype(np.uint8)).filter(
                ImageFilter.GaussianBlur(6)
            ),
            dtype=np.float32,
        )
        / 255.0
    )
    skin = blend(skin, (150, 140, 150), vein_cover * 0.18)

    # The eczema patch: an irregular, poorly marginated red plaque on the outer forearm.
    lx, ly = 590.0, 360.0
    ellipse = ((xx - lx) / 230.0) ** 2 + ((yy - ly) / 120.0) ** 2
    shape = (
        1.0
        - ellipse
        + 0.22 * smooth_noise(rng, height, width, 70)
        + 0.12 * smooth_noise(rng, height, width, 18)
    )
    lesion = np.clip(shape * 1.6, 0.0, 1.0) * arm_cover
    # Poorly marginated: the redness fades out over ~20 px instead of stopping at a line.
    lesion = np.asarray(
        Image.fromarray(lesion.astype(np.float32))
        .resize((width // 8, height // 8))
        .resize((width, height), Image.Resampling.BICUBIC),
        dtype=np.float32,
    ).clip(0.0, 1.0)
    intensity = np.clip(0.68 + 0.16 * smooth_noise(rng, height, width, 22), 0.4, 0.9)
    skin = blend(skin, (186, 84, 78), lesion * intensity)
    # Lichenified skin: coarser, deeper creases inside the patch.
    skin *= (1.0 - 0.025 * lesion * np.clip(creases, 0, None))[..., None]

    # Papules: small raised red bumps, lit from the top left (highlight up-left, shade down-right).
    papule = np.zeros((height, width), dtype=np.float32)
    highlight = np.zeros((height, width), dtype=np.float32)
    inside = np.argwhere(lesion > 0.5)
    for idx in rng.choice(len(inside), size=min(110, len(inside)), replace=False):
        py, px = inside[idx]
        radius = float(rng.uniform(2.5, 6.0))
        d2 = ((xx - px) ** 2 + (yy - py) ** 2) / radius**2
        bump = np.exp(-d2 * 1.5)
        papule = np.maximum(papule, bump)
        hd2 = ((xx - px + radius * 0.35) ** 2 + (yy - py + radius * 0.35) ** 2) / (radius * 0.35) ** 2
        highlight = np.maximum(highlight, np.exp(-hd2) * 0.55)
    skin = blend(skin, (168, 52, 52), papule * 0.55)
    skin = blend(skin, (246, 214, 204), highlight)

    # Excoriations: short scratch lines with dark red crusts, and whitish scale at the rim.
    scratches: list[list[tuple[float, float]]] = []
    for _ in range(3):  # three bouts of scratching, each two or three parallel nail marks
        sx, sy = lx + rng.uniform(-150, 120), ly + rng.uniform(-50, 40)
        angle = rng.uniform(-0.4, 0.4) + math.pi / 2.6
        length = rng.uniform(70, 120)
        for nail in range(int(rng.integers(2, 4))):
            ox, oy = nail * 9 * math.sin(angle), -nail * 9 * math.cos(angle)
            scratches.append(
                [
                    (
                        sx + ox + k / 8 * length * math.cos(angle) + rng.normal(0, 0.8),
                        sy + oy + k / 8 * length * math.sin(angle) + rng.normal(0, 0.8),
                    )
                    for k in range(9)
                ]
            )
    scratch_cover = line_layer((width, height), scratches, 3)
    skin = blend(skin, (142, 42, 40), scratch_cover * 0.7)
    crusts = (smooth_noise(rng, height, width, 3) > 1.9) & (scratch_cover > 0.2)
    skin = blend(skin, (112, 60, 38), crusts.astype(np.float32) * 0.7)
    rim = np.clip(1.0 - np.abs(lesion - 0.45) * 4.0, 0.0, 1.0)
    flakes = np.clip(smooth_noise(rng, height, width, 2.2) - 1.2, 0.0, 1.0) * rim
    skin = blend(skin, (236, 222, 212), flakes * 0.8)

    # Fine forearm hairs, lying roughly along the arm towards the wrist.
    hairs: list[list[tuple[float, float]]] = []
    for _ in range(260):
        hx, hy = rng.uniform(0, width), rng.uniform(120, 680)
        tt = (hy - (390 + 40 * math.sin(hx / width * math.pi * 0.8) - 0.06 * (hx - width / 2))) / (
            215 + 55 * hx / width
        )
        if abs(tt) > 0.9:
            continue
        angle = math.pi + rng.normal(0.15, 0.3)
        length = rng.uniform(14, 34)
        bend = rng.normal(0, 0.06)
        hairs.append(
            [
                (
                    hx + k / 4 * length * math.cos(angle + bend * k),
                    hy + k / 4 * length * math.sin(angle + bend * k),
                )
                for k in range(5)
            ]
        )
    hair_cover = line_layer((width, height), hairs, 1) * arm_cover
    skin = blend(skin, (84, 62, 50), hair_cover * rng.uniform(0.3, 0.5))

    scene = sheet * (1.0 - arm_cover[..., None]) + skin * arm_cover[..., None]
    return camera(rng, scene.astype(np.float32), noise=2.2)


def forearm_exif() -> bytes:
    """An EXIF block like a phone's: make/model, times, orientation 6 and a (fake) GPS fix."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Photomarker"
    exif[ExifTags.Base.Model] = "Synthetic example (not a camera)"
    exif[ExifTags.Base.Software] = "examples/make_examples.py"
    exif[ExifTags.Base.DateTime] = TAKEN_LOCAL
    exif[ExifTags.Base.Orientation] = 6  # stored sideways: readers must rotate 90° clockwise
    details = exif.get_ifd(ExifTags.IFD.Exif)
    details[ExifTags.Base.DateTimeOriginal] = TAKEN_LOCAL
    details[ExifTags.Base.OffsetTimeOriginal] = "+09:00"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    # A made-up fix in central Tokyo, there to show that intake removes location data.
    gps[ExifTags.GPS.GPSVersionID] = b"\x02\x03\x00\x00"
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (35.0, 41.0, 22.2)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (139.0, 41.0, 30.1)
    return exif.tobytes()


# --- the eyelid ----------------------------------------------------------------------------------


def eyelid_scene(seed: int = 7, width: int = 512, height: int = 384) -> Image.Image:
    """A close-up of a pulled-down lower eyelid: sclera, the pink-red palpebral conjunctiva, lashes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    u = (xx - width / 2) / (width / 2)  # −1 … 1 across

    # Boundaries (top to bottom): eyeball | fornix → conjunctiva → lid margin | lid skin.
    fornix = 92 + 58 * u**2 + 3 * smooth_noise(rng, height, width, 60)
    margin = 262 - 35 * u**2 + 5 * smooth_noise(rng, height, width, 80)
    margin_width = 9.0

    # Eyeball: white sclera, shaded towards the fold, with the iris at the top (looking up).
    ball = np.clip(yy / np.maximum(fornix, 1.0), 0.0, 1.0)
    sclera = np.stack([234 - 22 * ball**2, 228 - 30 * ball**2, 222 - 30 * ball**2], axis=-1)
    sclera *= (1.0 - 0.12 * u**2)[..., None]
    iris_r = np.hypot(xx - width * 0.52, yy + 95)
    iris = np.clip((165 - iris_r) / 2.0, 0.0, 1.0)
    angle = np.arctan2(yy + 95, xx - width * 0.52)
    fibres = 0.5 + 0.25 * np.sin(angle * 48 + 0.6 * smooth_noise(rng, height, width, 20))
    fibres += 0.25 * smooth_noise(rng, height, width, 2.5)
    iris_colour = np.stack([104 - 26 * fibres, 72 - 20 * fibres, 50 - 14 * fibres], axis=-1)
    limbus = np.clip(1.0 - np.abs(iris_r - 160) / 9.0, 0.0, 1.0)
    iris_colour *= (1.0 - 0.45 * limbus)[..., None]
    sclera = sclera * (1 - iris[..., None]) + iris_colour * iris[..., None]
    eye_vessels = line_layer((width, height), wandering_lines(rng, 9, (0, 40, width, 110), 14, 5, 0.25), 1)
    sclera = blend(sclera, (200, 92, 92), eye_vessels * 0.4)

    # Conjunctiva: deep red in the fold, pink-red on the tarsal plate, paler near the margin.
    depth = np.clip((yy - fornix) / np.maximum(margin - fornix, 1.0), 0.0, 1.0)
    conj = np.stack([176 + 42 * depth, 70 + 52 * depth, 76 + 46 * depth], axis=-1)
    conj += smooth_noise(rng, height, width, 30)[..., None] * np.array([7.0, 6.0, 6.0], dtype=np.float32)
    conj *= (1.0 + 0.03 * smooth_noise(rng, height, width, 2.0))[..., None]
    big_vessels = line_layer((width, height), wandering_lines(rng, 10, (0, 110, width, 240), 40, 6, 0.12), 2)
    small_vessels = line_layer(
        (width, height), wandering_lines(rng, 45, (0, 100, width, 255), 16, 4, 0.35), 1
    )
    conj = blend(conj, (156, 36, 48), big_vessels * 0.45 + small_vessels * 0.35)
    # Moist surface: a few small specular highlights.
    gloss = np.clip(smooth_noise(rng, height, width, 3) - 2.6, 0.0, 1.0) * 0.8
    conj = blend(conj, (252, 240, 238), gloss)

    # Lid margin, then skin of the lower lid and cheek (medium-brown tone, fine wrinkles).
    below = np.clip((yy - margin) / 120.0, 0.0, 1.0)
    skin_shade = (0.82 + 0.18 * np.sin(below * math.pi * 0.9)) * (1.0 - 0.12 * u**2)
    skin = np.array([172, 118, 92], dtype=np.float32) * skin_shade[..., None]
    skin += smooth_noise(rng, height, width, 40)[..., None] * 5.0
    wrinkles = streaks(rng, height, width, 40, 4) + streaks(rng, height, width, 30, -8)
    skin *= (1.0 + 0.03 * smooth_noise(rng, height, width, 1.7) - 0.025 * np.clip(wrinkles, 0, None))[
        ..., None
    ]
    rim_band = np.clip(1.0 - np.abs(yy - margin - margin_width / 2) / (margin_width / 2), 0.0, 1.0)
    skin = blend(skin, (192, 116, 102), rim_band * 0.8)

    # Layer the regions with soft boundaries; the fold itself sits in shadow.
    into_conj = np.clip((yy - fornix) / 1.5 + 0.5, 0.0, 1.0)
    into_skin = np.clip((yy - margin) / 1.5 + 0.5, 0.0, 1.0)
    fold_shadow = np.exp(-(((yy - fornix) / 8.0) ** 2)) * 0.3
    scene = sclera * (1 - into_conj[..., None]) + conj * into_conj[..., None]
    scene *= (1.0 - fold_shadow)[..., None]
    scene = scene * (1 - into_skin[..., None]) + skin * into_skin[..., None]

    # Lower lashes: tapered dark curves from the margin, pointing down and outwards, unevenly.
    thick: list[list[tuple[float, float]]] = []
    thin: list[list[tuple[float, float]]] = []
    for x0 in np.sort(rng.uniform(15, width - 15, 52)):
        m = float(262 - 35 * ((x0 - width / 2) / (width / 2)) ** 2) + margin_width - 2
        outward = (x0 - width / 2) / (width / 2) + rng.normal(0, 0.25)
        length = rng.uniform(22, 58)
        curl = rng.normal(0, 4)
        points = [(x0 + (outward * 22 + curl) * (k / 6) ** 1.6, m + length * k / 6) for k in range(7)]
        thick.append(points[:4])
        thin.append(points[3:])
    lash_cover = np.maximum(line_layer((width, height), thick, 2), line_layer((width, height), thin, 1) * 0.8)
    scene = blend(scene, (38, 28, 24), lash_cover * 0.85)
    return camera(rng, scene.astype(np.float32), noise=1.6)
