"""Photo intake: raw bytes from a phone → clean, upright RGB pixels, or a named refusal.

This is the one image decoder in Photomarker. It accepts JPEG, PNG, HEIC/HEIF and WebP, checks
size and declared pixel count *before* decoding (decompression bombs), applies the EXIF
orientation, converts to sRGB and drops every piece of metadata (EXIF, GPS, ICC, XMP, text
chunks) so nothing identifying travels further than this module. Every failure is one of the
``models.errors`` intake errors; messages say what was wrong and never echo the bytes.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final, Literal, Protocol

import numpy as np
from PIL import ExifTags, Image, ImageCms, UnidentifiedImageError

from models.errors import (
    EmptyPhoto,
    PhotomarkerError,
    PhotoTooLarge,
    PhotoTooManyPixels,
    TruncatedPhoto,
    UndecodablePhoto,
)
from models.photo_formats import PhotoFormat, content_type_for, sniff, webp_is_lossless

# Pillow logs EXIF tag values (Artist, descriptions …) at DEBUG: a patient's name must never
# reach our logs that way, whatever level the application runs at.
logging.getLogger("PIL").setLevel(logging.INFO)

# EXIF orientation → the transpose that makes the image upright (as ImageOps.exif_transpose).
_ORIENTATION_FIX: Final[dict[int, Image.Transpose]] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class _IntakeSettings(Protocol):
    """The two settings fields intake needs (satisfied by ``plugin.settings.Settings``)."""

    @property
    def max_photo_bytes(self) -> int: ...

    @property
    def max_photo_pixels(self) -> int: ...


@dataclass(frozen=True)
class IntakeLimits:
    """How big a photo may be, in bytes and in declared pixels (width × height).

    Pillow's own decompression-bomb ceiling (``Image.MAX_IMAGE_PIXELS``, 89.5 MP unless changed)
    caps ``max_pixels``: above it Pillow would warn or refuse by itself, so we refuse first.
    """

    max_bytes: int = 25 * 1024 * 1024
    max_pixels: int = 60_000_000

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.max_pixels <= 0:
            raise ValueError("intake limits must be positive")

    @classmethod
    def from_settings(cls, settings: _IntakeSettings) -> IntakeLimits:
        return cls(max_bytes=settings.max_photo_bytes, max_pixels=settings.max_photo_pixels)

    @property
    def effective_max_pixels(self) -> int:
        ceiling = Image.MAX_IMAGE_PIXELS
        return self.max_pixels if ceiling is None else min(self.max_pixels, int(ceiling))


# Where a DecodedPhoto's pixels came from: a photo file, or a frame sampled from a video.
SourceFormat = PhotoFormat | Literal["VIDEO"]


@dataclass(frozen=True, eq=False)
class DecodedPhoto:
    """A photo ready for analysis: upright sRGB pixels and nothing else from the file.

    ``pixels`` is RGB with an empty ``info`` (no EXIF, GPS, ICC, XMP). ``alpha`` is the opacity
    mask ('L') when the file had real transparency — e.g. a conjunctiva strip cropped onto a
    transparent background — else None. ``original_size`` is (width, height) after orientation
    and before any reduced-scale decoding. ``sha256`` is of the raw bytes as received.
    """

    pixels: Image.Image
    alpha: Image.Image | None
    format: SourceFormat
    content_type: str
    original_size: tuple[int, int]
    sha256: str
    # True when the source coding was lossless (PNG, lossless WebP): decides how to re-encode.
    lossless: bool = False


# Pillow image memory kept for reuse between decodes: four of its 16 MB blocks, enough for a 12 MP
# RGBA photo. Without it every full-size decode maps a fresh 36-48 MB buffer and page-faults it in,
# which made the same decode twice as slow in a fresh process as in one whose glibc heap had
# grown (bench/inference.py: 97 vs 48 ms for a 12 MP JPEG).
DECODE_BUFFER_BLOCKS: Final = 4


def keep_decode_buffers(blocks: int = DECODE_BUFFER_BLOCKS) -> None:
    """Let Pillow reuse image memory across decodes in this process (a worker calls it at start)."""
    # Pillow's documented block allocator knob (also the PILLOW_BLOCKS_MAX environment variable).
    Image.core.set_blocks_max(blocks)  # type: ignore[attr-defined]


def decode_photo(
    data: bytes,
    *,
    limits: IntakeLimits,
    declared_content_type: str | None = None,
    min_side: int | None = None,
) -> DecodedPhoto:
    """Decode ``data`` into a :class:`DecodedPhoto` or raise the intake error that says why not.

    Checks run cheapest first: empty, byte size, magic bytes, declared content type, declared
    pixel count from the header, and only then the decode. ``min_side`` lets a JPEG be decoded
    at 1/2, 1/4 or 1/8 scale while its short side stays at least ``min_side`` pixels.
    """
    if min_side is not None and min_side <= 0:
        raise ValueError("min_side must be positive")
    if not data:
        raise EmptyPhoto("The photo is empty (0 bytes).")
    if len(data) > limits.max_bytes:
        raise PhotoTooLarge(f"The photo is {len(data):,} bytes; the limit is {limits.max_bytes:,} bytes.")
    fmt = sniff(data)
    content_type = content_type_for(fmt, data, declared_content_type)
    _check_pixels(*_header_size(fmt, data), limits)

    pixels, alpha, original_size = _decode(data, fmt, limits, min_side)
    return DecodedPhoto(
        pixels=pixels,
        alpha=alpha,
        format=fmt,
        content_type=content_type,
        original_size=original_size,
        sha256=hashlib.sha256(data).hexdigest(),
        lossless=fmt == "PNG" or (fmt == "WEBP" and webp_is_lossless(data)),
    )


def strip_to_bytes(decoded: DecodedPhoto) -> tuple[bytes, str]:
    """Re-encode the cleaned pixels for storage: (bytes, content type), with no metadata at all.

    PNG when there is an alpha mask or the source was lossless (re-encoding those as JPEG
    would lose the mask or add artefacts), else JPEG quality 95 with 4:4:4 chroma so colour
    (which the Hb and erythema models read) is not subsampled.
    """
    buffer = io.BytesIO()
    if decoded.alpha is not None or decoded.lossless:
        image = decoded.pixels if decoded.alpha is None else _with_alpha(decoded.pixels, decoded.alpha)
        image.save(buffer, format="PNG", optimize=False)
        return buffer.getvalue(), "image/png"
    decoded.pixels.save(buffer, format="JPEG", quality=95, subsampling=0)
    return buffer.getvalue(), "image/jpeg"


# --- header-only size -------------------------------------------------------------------------


def check_declared_pixels(data: bytes, limits: IntakeLimits) -> tuple[int, int]:
    """(width, height) that the photo's header declares, read by Pillow's own parser for its
    format without decoding a pixel, refused when over ``limits`` — so that a decompression bomb
    is turned away before anything else (the jobs API does, before queueing)."""
    if not data:
        raise EmptyPhoto("The photo is empty (0 bytes).")
    width, height = _header_size(sniff(data), data)
    _check_pixels(width, height, limits)
    return width, height


def _header_size(fmt: PhotoFormat, data: bytes) -> tuple[int, int]:
    """The size Pillow will decode, from its format plugin's header parse.

    The plugin is called directly rather than through ``Image.open``, whose own bomb check would
    refuse a huge declaration with Pillow's message instead of ours (which names the size).
    """
    if fmt == "HEIF":
        _register_heif()
    Image.init()
    factory, _accept = Image.OPEN[fmt]
    with _pillow_errors(fmt, data), factory(io.BytesIO(data), "") as header:
        width, height = header.size
    if width <= 0 or height <= 0:
        raise UndecodablePhoto(f"The {fmt} file declares an empty image.")
    return int(width), int(height)


_heif_lock = threading.Lock()
_heif_registered = False


def _register_heif() -> None:
    """Teach Pillow HEIF once, on first use, so importing this module stays side-effect free."""
    global _heif_registered
    with _heif_lock:
        if not _heif_registered:
            import pillow_heif

            pillow_heif.register_heif_opener()
            _heif_registered = True


def _check_pixels(width: int, height: int, limits: IntakeLimits) -> None:
    pixels = width * height
    if pixels > limits.effective_max_pixels:
        raise PhotoTooManyPixels(
            f"The photo declares {width}×{height} = {pixels:,} pixels; "
            f"the limit is {limits.effective_max_pixels:,}."
        )


# --- decoding ---------------------------------------------------------------------------------


def _decode(
    data: bytes, fmt: PhotoFormat, limits: IntakeLimits, min_side: int | None
) -> tuple[Image.Image, Image.Image | None, tuple[int, int]]:
    """Decode with Pillow, mapping every Pillow failure onto our errors."""
    if fmt == "HEIF":
        _register_heif()
    with _pillow_errors(fmt, data), Image.open(io.BytesIO(data), formats=[fmt]) as image:
        width, height = image.size
        # Belt and braces: the header was read by the same plugin, but this is what gets decoded.
        _check_pixels(width, height, limits)
        orientation = _orientation(image)
        if fmt == "JPEG" and min_side is not None and min(width, height) > min_side:
            scale = min_side / min(width, height)
            image.draft(None, (math.ceil(width * scale), math.ceil(height * scale)))
        image.load()
        rgb, alpha = _to_srgb(image)

    transpose = _ORIENTATION_FIX.get(orientation)
    if transpose is not None:
        rgb = rgb.transpose(transpose)
        alpha = alpha.transpose(transpose) if alpha is not None else None
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    # Derived images copy ``info`` from their source; emptying it drops EXIF/GPS/ICC/XMP/text.
    rgb.info.clear()
    if alpha is not None:
        alpha.info.clear()
    return rgb, alpha, (width, height)


@contextmanager
def _pillow_errors(fmt: PhotoFormat, data: bytes) -> Iterator[None]:
    """Every way Pillow (or libheif) says no, as the intake error that names it."""
    try:
        yield
    except PhotomarkerError:
        raise
    except Image.DecompressionBombError:
        raise PhotoTooManyPixels(f"The {fmt} photo declares more pixels than allowed.") from None
    except UnidentifiedImageError as exc:
        if _missing_end(fmt, data):
            raise TruncatedPhoto(f"The {fmt} file is cut short.") from None
        raise UndecodablePhoto(f"The {fmt} file could not be decoded.") from exc
    except MemoryError:
        raise
    except Exception as exc:
        # Pillow raises OSError, SyntaxError, ValueError, struct.error … on damaged files.
        if "security limit" in str(exc).lower():  # libheif's own pixel ceiling
            raise PhotoTooManyPixels(f"The {fmt} photo declares more pixels than allowed.") from None
        if _message_says_truncated(exc) or _missing_end(fmt, data):
            raise TruncatedPhoto(f"The {fmt} file is cut short; send the whole photo again.") from None
        raise UndecodablePhoto(f"The {fmt} file could not be decoded.") from exc


def _orientation(image: Image.Image) -> int:
    """EXIF (or XMP) orientation 1–8; a corrupt EXIF block counts as upright, not as a refusal."""
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _to_srgb(image: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """8-bit sRGB pixels plus an alpha mask when the image has real transparency."""
    mode = image.mode
    icc = image.info.get("icc_profile")
    if mode.startswith("I;16") or mode == "I":
        # Pillow clips 16-bit values at 255 when converting to 8-bit; scale them instead.
        values = np.asarray(image).astype(np.float32)
        if mode.startswith("I;16") or float(values.max(initial=0.0)) > 255.0:
            values = values / 257.0
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB"), None
    if mode == "CMYK":
        return _apply_icc(image, icc) or image.convert("RGB"), None
    alpha: Image.Image | None = None
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        mask = rgba.getchannel("A")
        lowest = mask.getextrema()[0]
        # A fully opaque alpha channel is no mask at all (many PNG exporters add one).
        if isinstance(lowest, (int, float)) and lowest < 255:
            alpha = mask
        rgb = rgba.convert("RGB")
    else:
        rgb = image.convert("RGB")
    return _apply_icc(rgb, icc) or rgb, alpha


@functools.cache
def _srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _apply_icc(image: Image.Image, icc: object) -> Image.Image | None:
    """Convert from the embedded colour profile to sRGB; None when there is nothing to do.

    Phones embed Display P3 (iPhone) or similar; dropping the profile without converting would
    shift the colours the Hb and erythema models read. A broken profile is ignored, not fatal.
    """
    if not isinstance(icc, bytes) or not icc:
        return None
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        space = source.profile.xcolor_space.strip()
        if space != ("CMYK" if image.mode == "CMYK" else "RGB"):
            return None
        if image.mode == "RGB" and "srgb" in ImageCms.getProfileDescription(source).lower():
            return None
        converted = ImageCms.profileToProfile(
            image,
            source,
            _srgb_profile(),
            renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
            outputMode="RGB",
        )
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None
    return converted


def _with_alpha(rgb: Image.Image, alpha: Image.Image) -> Image.Image:
    red, green, blue = rgb.split()
    return Image.merge("RGBA", (red, green, blue, alpha))


def _message_says_truncated(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, EOFError) or any(
        hint in text for hint in ("truncated", "end of file", "premature end", "unexpected end")
    )


def _missing_end(fmt: PhotoFormat, data: bytes) -> bool:
    """True when the file lacks the end marker its format requires (a cut-off upload)."""
    if fmt == "JPEG":
        return b"\xff\xd9" not in data[-1024:]
    if fmt == "PNG":
        return b"IEND" not in data[-64:]
    return False
