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
import struct
import threading
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
    UnsupportedMediaType,
)

# Pillow logs EXIF tag values (Artist, descriptions …) at DEBUG: a patient's name must never
# reach our logs that way, whatever level the application runs at.
logging.getLogger("PIL").setLevel(logging.INFO)

PhotoFormat = Literal["JPEG", "PNG", "HEIF", "WEBP"]

ACCEPTED = "JPEG, PNG, HEIC/HEIF or WebP"

_DEFAULT_CONTENT_TYPE: Final[dict[PhotoFormat, str]] = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "HEIF": "image/heif",
    "WEBP": "image/webp",
}
# Declared types we accept; image/jpg and image/pjpeg are common misspellings of image/jpeg.
_DECLARED: Final[dict[str, PhotoFormat]] = {
    "image/jpeg": "JPEG",
    "image/jpg": "JPEG",
    "image/pjpeg": "JPEG",
    "image/png": "PNG",
    "image/heic": "HEIF",
    "image/heif": "HEIF",
    "image/webp": "WEBP",
}
# ISO-BMFF major/compatible brands that mean an HEVC-coded HEIF still image.
_HEIC_BRANDS: Final = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"})
_HEIF_GENERIC_BRANDS: Final = frozenset({b"mif1", b"msf1", b"mif2"})
_AVIF_BRANDS: Final = frozenset({b"avif", b"avis"})

# JPEG start-of-frame markers (SOF0–SOF15 less DHT, JPG and DAC), which carry the dimensions.
_JPEG_SOF: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}

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
    format: PhotoFormat
    content_type: str
    original_size: tuple[int, int]
    sha256: str
    # True when the source coding was lossless (PNG, lossless WebP): decides how to re-encode.
    lossless: bool = False


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
    fmt = _sniff(data)
    content_type = _content_type(fmt, data, declared_content_type)
    width, height = _declared_size(fmt, data)
    _check_pixels(width, height, limits)

    pixels, alpha, original_size = _decode(data, fmt, limits, min_side)
    return DecodedPhoto(
        pixels=pixels,
        alpha=alpha,
        format=fmt,
        content_type=content_type,
        original_size=original_size,
        sha256=hashlib.sha256(data).hexdigest(),
        lossless=fmt == "PNG" or (fmt == "WEBP" and _webp_is_lossless(data)),
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


# --- sniffing ---------------------------------------------------------------------------------


def _sniff(data: bytes) -> PhotoFormat:
    """Name the format from magic bytes; refuse known non-photo formats by name."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp":
        return _sniff_isobmff(data)
    what = _name_unsupported(data)
    if what is not None:
        raise UnsupportedMediaType(f"The file is {what}, not a photo; send {ACCEPTED}.")
    raise UndecodablePhoto(f"The file is not a recognisable image; send {ACCEPTED}.")


def _sniff_isobmff(data: bytes) -> PhotoFormat:
    """HEIF, or name the other ISO-BMFF things phones send (AVIF, MP4/MOV video)."""
    brands = _isobmff_brands(data)
    if brands & _HEIC_BRANDS:
        return "HEIF"
    if brands & _AVIF_BRANDS:
        raise UnsupportedMediaType(f"The file is an AVIF image, which is not accepted; send {ACCEPTED}.")
    if brands & _HEIF_GENERIC_BRANDS:
        return "HEIF"
    raise UnsupportedMediaType(f"The file is a video (MP4/QuickTime), not a photo; send {ACCEPTED}.")


def _name_unsupported(data: bytes) -> str | None:
    """A plain name for formats we recognise but do not accept, or None."""
    head = data[:1024]
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "a GIF image"
    if data.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "a TIFF image (or a camera RAW file)"
    if data.startswith(b"BM") and len(data) >= 18 and data[14] in (12, 40, 52, 56, 64, 108, 124):
        return "a BMP image"
    if data.startswith(b"\x00\x00\x01\x00") and len(data) >= 6:
        return "an icon (ICO) file"
    if data.startswith((b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51")):
        return "a JPEG 2000 image"
    if data.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")):
        return "a JPEG XL image"
    if data.startswith(b"8BPS"):
        return "a Photoshop document"
    if data[128:132] == b"DICM":
        return "a DICOM file"
    if data.startswith(b"PK\x03\x04"):
        return "a ZIP archive (or an Office document)"
    if data.startswith(b"\x1f\x8b"):
        return "gzip-compressed data"
    if data.startswith(b"RIFF"):
        return "a RIFF file that is not WebP (audio or video)"
    if data.startswith(b"%!PS"):
        return "a PostScript document"
    if b"%PDF-" in head:
        return "a PDF document"
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    if text.startswith(b"<"):
        if b"<svg" in text:
            return "an SVG drawing"
        if text.startswith((b"<!doctype html", b"<html")):
            return "an HTML page"
        return "an XML document"
    if text.startswith((b"{", b"[")):
        return "JSON text"
    return None


def _content_type(fmt: PhotoFormat, data: bytes, declared: str | None) -> str:
    """The content type to record: the declared one when it agrees, else the sniffed one.

    A declared type outside the accepted set is refused; one that names another accepted
    format is overruled by the bytes (senders often label every photo image/jpeg).
    """
    if declared is not None and declared.strip():
        normalised = declared.split(";", 1)[0].strip().lower()
        declared_fmt = _DECLARED.get(normalised)
        if declared_fmt is None:
            raise UnsupportedMediaType(
                f"The declared content type {_printable(normalised)!r} is not accepted; send {ACCEPTED}."
            )
        if declared_fmt == fmt and fmt == "HEIF":
            return normalised
    if fmt == "HEIF":
        return "image/heic" if _isobmff_brands(data) & _HEIC_BRANDS else "image/heif"
    return _DEFAULT_CONTENT_TYPE[fmt]


def _isobmff_brands(data: bytes) -> set[bytes]:
    """Major and compatible brands of the leading ``ftyp`` box."""
    (box_size,) = struct.unpack(">I", data[0:4])
    end = min(len(data), box_size) if box_size >= 16 else 16
    return {data[8:12]} | {data[i : i + 4] for i in range(16, end - 3, 4)}


def _printable(text: str) -> str:
    """A declared value fit to quote in a message: printable ASCII, at most 60 characters."""
    cleaned = "".join(ch for ch in text if 32 <= ord(ch) < 127)
    return cleaned[:60] + ("…" if len(cleaned) > 60 else "")


# --- header-only size -------------------------------------------------------------------------


def _declared_size(fmt: PhotoFormat, data: bytes) -> tuple[int, int]:
    """(width, height) read from the header alone, so bombs are refused before any decode."""
    if fmt == "PNG":
        return _png_size(data)
    if fmt == "JPEG":
        return _jpeg_size(data)
    if fmt == "WEBP":
        return _webp_size(data)
    return _heif_size(data)


def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 33:
        raise TruncatedPhoto("The PNG file ends inside its header.")
    if data[12:16] != b"IHDR":
        raise UndecodablePhoto("The PNG file has no image header.")
    width, height = struct.unpack(">II", data[16:24])
    if width == 0 or height == 0:
        raise UndecodablePhoto("The PNG file declares an empty image.")
    return width, height


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """Walk the JPEG markers up to the first scan; the largest frame header wins.

    Taking the largest (not the first) frame means a file cannot show us a small frame and
    Pillow a huge one.
    """
    size: tuple[int, int] | None = None
    i, n = 2, len(data)
    while True:
        while i < n and data[i] != 0xFF:  # tolerate junk between segments, as decoders do
            i += 1
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            raise TruncatedPhoto("The JPEG file ends before its image data.")
        marker = data[i]
        i += 1
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # standalone markers carry no length
            continue
        if marker == 0xD9:
            raise UndecodablePhoto("The JPEG file ends before any image data.")
        if i + 2 > n:
            raise TruncatedPhoto("The JPEG file ends inside a header segment.")
        (length,) = struct.unpack(">H", data[i : i + 2])
        if length < 2:
            raise UndecodablePhoto("The JPEG file has a corrupt header segment.")
        if marker in _JPEG_SOF:
            if i + 7 > n:
                raise TruncatedPhoto("The JPEG file ends inside its frame header.")
            height, width = struct.unpack(">HH", data[i + 3 : i + 7])
            if width == 0 or height == 0:
                raise UndecodablePhoto("The JPEG file declares an empty image.")
            if size is None or width * height > size[0] * size[1]:
                size = (width, height)
        if marker == 0xDA:  # start of scan: the headers are over
            if size is None:
                raise UndecodablePhoto("The JPEG file has image data but no frame header.")
            return size
        i += length


def _webp_size(data: bytes) -> tuple[int, int]:
    if len(data) < 30:
        raise TruncatedPhoto("The WebP file ends inside its header.")
    (riff_size,) = struct.unpack("<I", data[4:8])
    if len(data) < riff_size + 8:
        raise TruncatedPhoto("The WebP file is shorter than its header says.")
    chunk = data[12:16]
    if chunk == b"VP8X":
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
    elif chunk == b"VP8L":
        if data[20] != 0x2F:
            raise UndecodablePhoto("The WebP file has a corrupt lossless header.")
        (bits,) = struct.unpack("<I", data[21:25])
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    elif chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise UndecodablePhoto("The WebP file has a corrupt lossy header.")
        width, height = (v & 0x3FFF for v in struct.unpack("<HH", data[26:30]))
    else:
        raise UndecodablePhoto("The WebP file has no image header.")
    if width == 0 or height == 0:
        raise UndecodablePhoto("The WebP file declares an empty image.")
    return width, height


def _webp_is_lossless(data: bytes) -> bool:
    """True when the first image chunk is VP8L (lossless) rather than VP8 (lossy)."""
    i = 12
    while i + 8 <= len(data):
        fourcc = data[i : i + 4]
        if fourcc == b"VP8L":
            return True
        if fourcc == b"VP8 ":
            return False
        (size,) = struct.unpack("<I", data[i + 4 : i + 8])
        i += 8 + size + (size & 1)
    return False


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


def _heif_size(data: bytes) -> tuple[int, int]:
    """Read the primary image's size from the HEIF container (libheif parses, does not decode)."""
    _register_heif()
    import pillow_heif

    try:
        heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
        width, height = heif.size
    except Exception as exc:
        if isinstance(exc, MemoryError):
            raise
        if "security limit" in str(exc).lower():
            raise PhotoTooManyPixels("The HEIF photo declares more pixels than libheif allows.") from None
        if _message_says_truncated(exc):
            raise TruncatedPhoto("The HEIF file is cut short.") from None
        raise UndecodablePhoto("The HEIF file could not be read.") from exc
    return int(width), int(height)


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
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as image:
            width, height = image.size
            # Belt and braces: our header walk and Pillow's must agree on the pixel budget.
            _check_pixels(width, height, limits)
            orientation = _orientation(image)
            if fmt == "JPEG" and min_side is not None and min(width, height) > min_side:
                scale = min_side / min(width, height)
                image.draft(None, (math.ceil(width * scale), math.ceil(height * scale)))
            image.load()
            rgb, alpha = _to_srgb(image)
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
        if _message_says_truncated(exc) or _missing_end(fmt, data):
            raise TruncatedPhoto(f"The {fmt} file is cut short; send the whole photo again.") from None
        raise UndecodablePhoto(f"The {fmt} file could not be decoded.") from exc

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
