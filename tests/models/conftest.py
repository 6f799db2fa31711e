"""Fixtures for photo intake and the quality gate: photos made on the spot, and real strips."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from models.intake import DecodedPhoto, IntakeLimits, decode_photo
from models.quality import QualityThresholds
from tests.datasets import CP_ANEMIC_SUBSET

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
CP_ANEMIC = CP_ANEMIC_SUBSET / "images"


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    """The bytes a phone or app would send for ``image`` in ``fmt``."""
    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def value_noise(rng: np.random.Generator, size: tuple[int, int], cell: int) -> NDArray[np.float32]:
    """Smooth unit noise with blobs about ``cell`` pixels across, shaped (height, width, 1)."""
    width, height = size
    coarse = rng.normal(0.0, 1.0, (height // cell + 2, width // cell + 2)).astype(np.float32)
    grid = (coarse.shape[1] * cell, coarse.shape[0] * cell)
    big = Image.fromarray(coarse).resize(grid, Image.Resampling.BICUBIC)
    return np.asarray(big, dtype=np.float32)[:height, :width, None]


def textured(
    colour: tuple[int, int, int], size: tuple[int, int], seed: int = 0, grain: float = 7.0
) -> Image.Image:
    """A sharp, evenly lit patch of ``colour``: blotches, pore-sized detail and sensor grain."""
    rng = np.random.default_rng(seed)
    width, height = size
    blotches = value_noise(rng, size, 32)
    # Detail a few pixels across, relative to the frame, as pores are in a phone close-up.
    pores = value_noise(rng, size, max(2, max(size) // 300))
    fine = rng.normal(0.0, grain, (height, width, 1))
    pixels = np.asarray(colour, dtype=np.float32) * (1.0 + 0.04 * blotches) + grain * 1.5 * pores + fine
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


def decoded(image: Image.Image, alpha: Image.Image | None = None) -> DecodedPhoto:
    """Wrap pixels as intake would, without a file round trip."""
    return DecodedPhoto(
        pixels=image.convert("RGB"),
        alpha=alpha,
        format="PNG",
        content_type="image/png",
        original_size=image.size,
        sha256="0" * 64,
        lossless=True,
    )


def png_declaring(width: int, height: int) -> bytes:
    """A tiny, valid-looking PNG whose header claims ``width`` × ``height`` (a bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    # A few KiB of zlib that would inflate to gigabytes if anyone decoded it.
    body = zlib.compress(b"\x00" * 1_000_000, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def lab_to_srgb(lightness: float, a: float, b: float) -> tuple[int, int, int]:
    """CIELAB (D65) → 8-bit sRGB, for skin colours that the literature gives in Lab."""
    fy = (lightness + 16.0) / 116.0
    fx, fz = fy + a / 500.0, fy - b / 200.0

    def finv(t: float) -> float:
        return t**3 if t > 6.0 / 29.0 else 3 * (6.0 / 29.0) ** 2 * (t - 4.0 / 29.0)

    xyz = np.array([0.95047 * finv(fx), finv(fy), 1.08883 * finv(fz)])
    matrix = np.array(
        [
            [3.2404542, -1.5371385, -0.4985314],
            [-0.9692660, 1.8760108, 0.0415560],
            [0.0556434, -0.2040259, 1.0572252],
        ]
    )
    linear: NDArray[np.float64] = np.clip(matrix @ xyz, 0.0, 1.0)
    srgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    red, green, blue = (round(float(v) * 255) for v in srgb)
    return red, green, blue


@pytest.fixture
def limits() -> IntakeLimits:
    return IntakeLimits()


@pytest.fixture
def thresholds() -> QualityThresholds:
    return QualityThresholds()


@pytest.fixture
def skin_photo() -> Image.Image:
    """A sharp, well-lit, light-medium skin close-up at phone-ish size."""
    return textured((205, 158, 132), (1200, 900), seed=1)


@pytest.fixture
def example_bytes() -> dict[str, bytes]:
    names = ("forearm-eczema.jpg", "eyelid.png", "blurry.jpg")
    missing = [name for name in names if not (EXAMPLES / name).is_file()]
    if missing:
        pytest.fail(f"examples missing (run examples/make_examples.py): {missing}")
    return {name: (EXAMPLES / name).read_bytes() for name in names}


# Red, pink and pale (anaemic-looking) strips, small and large, from the real data set.
CP_STRIPS = (
    "Image_001.png",
    "Image_099.png",
    "Image_211.png",
    "Image_363.png",
    "Image_551.png",
    "Image_041.png",
)


@pytest.fixture(params=CP_STRIPS)
def cp_strip(request: pytest.FixtureRequest, limits: IntakeLimits) -> DecodedPhoto:
    return decode_photo((CP_ANEMIC / str(request.param)).read_bytes(), limits=limits)
