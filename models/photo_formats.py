"""What a photo's bytes are: the accepted formats by their magic bytes, known non-photos named,
and the content type to record given what the sender declared.

Sniffing trusts the bytes, never the declared type or a file name. Messages name the format and
never echo the bytes.
"""

from __future__ import annotations

import struct
from typing import Final, Literal

from models.errors import UndecodablePhoto, UnsupportedMediaType

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


def sniff(data: bytes) -> PhotoFormat:
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


def content_type_for(fmt: PhotoFormat, data: bytes, declared: str | None) -> str:
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


def webp_is_lossless(data: bytes) -> bool:
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
