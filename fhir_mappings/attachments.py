"""A FHIR Attachment's payload: its content type, inline bytes or Binary URL, size and hash.

Split out of ``fhir_mappings.inputs`` so the checks on what a photo *is* (which types, how big,
where it may be fetched from, whether its bytes are the ones declared) sit apart from the
reading of the Media or DocumentReference around it. Every refusal raises its own
``models.errors`` class, with the FHIRPath of the offending element as ``expression``.
Nothing here does I/O: a photo held in a ``Binary`` comes back as a reference to fetch, and
``check_declared_hash`` is called on the bytes once they have been fetched.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from fhir_mappings.photo import Photo
from models.errors import (
    BadBase64,
    EmptyPhoto,
    HashMismatch,
    InvalidResource,
    NoImageContent,
    PhotoTooLarge,
    UnsupportedMediaType,
    UrlNotAllowed,
    VideoTooLarge,
)

PHOTO_CONTENT_TYPES = frozenset({"image/jpeg", "image/png", "image/heic", "image/heif", "image/webp"})
# Videos of a lesion (issue 15): analysed frame by frame and accumulated into one verdict.
VIDEO_CONTENT_TYPES = frozenset({"video/mp4", "video/quicktime", "video/webm"})
ACCEPTED_CONTENT_TYPES = PHOTO_CONTENT_TYPES | VIDEO_CONTENT_TYPES

# A FHIR id (R4 2.24.0.1): 1–64 of [A-Za-z0-9-.].
# "." and ".." are legal by that pattern but are path segments to an HTTP client: refused.
_FHIR_ID = r"(?!\.{1,2}(?:/|$))[A-Za-z0-9\-.]{1,64}"
_BINARY_PATH = re.compile(rf"^Binary/({_FHIR_ID})(?:/_history/({_FHIR_ID}))?$")


# --- content type ----------------------------------------------------------------------------


def content_type_of(attachment: Mapping[str, Any], path: str) -> str | None:
    """The attachment's bare, normalised content type; None when undeclared; refused if unsupported."""
    raw = attachment.get("contentType")
    if raw is None:
        return None  # lenient: the bytes are sniffed when decoded
    # "image/jpeg; charset=…" and odd capitalisation are legal; compare the bare type.
    bare = str(raw).split(";", 1)[0].strip().lower()
    if bare == "image/jpg":
        bare = "image/jpeg"  # common misspelling, unambiguous
    if bare not in ACCEPTED_CONTENT_TYPES:
        raise UnsupportedMediaType(
            f"content type {bare!r} is not supported: send a photo (JPEG, PNG, HEIC/HEIF or "
            "WebP) or a video (MP4, QuickTime or WebM)",
            expression=f"{path}.contentType",
        )
    return bare


def is_picture_type(raw: Any) -> bool:
    """A declared type naming a photo or a video: what a DocumentReference is analysed for."""
    return str(raw or "").lower().startswith(("image/", "video/"))


def _what(content_type: str | None) -> str:
    return "video" if content_type in VIDEO_CONTENT_TYPES else "photo"


def _too_large(content_type: str | None) -> type[PhotoTooLarge] | type[VideoTooLarge]:
    return VideoTooLarge if content_type in VIDEO_CONTENT_TYPES else PhotoTooLarge


# --- the payload: inline base64 or a Binary to fetch -----------------------------------------


def payload(
    attachment: Mapping[str, Any],
    path: str,
    fhir_base: str | None,
    max_bytes: int | None,
    content_type: str | None,
) -> tuple[bytes | None, str | None]:
    """(decoded inline bytes, None) or (None, ``Binary/<id>`` to fetch from ``fhir_base``)."""
    data = attachment.get("data")
    if isinstance(data, str) and data.strip():
        return _decode_base64(data, f"{path}.data", max_bytes, content_type), None
    url = attachment.get("url")
    if isinstance(url, str) and url.strip():
        return None, binary_reference(url.strip(), fhir_base, f"{path}.url")
    if isinstance(data, str):
        # Data was sent, and it holds nothing: an empty photo, not a missing one.
        raise EmptyPhoto("the attachment's data is empty (0 bytes)", expression=f"{path}.data")
    raise NoImageContent("the attachment has neither data nor url", expression=path)


def _decode_base64(text: str, expression: str, max_bytes: int | None, content_type: str | None) -> bytes:
    compact = "".join(text.split())  # line breaks inside base64 are common and harmless
    if max_bytes is not None and len(compact) * 3 // 4 > max_bytes + 3:
        raise _too_large(content_type)(
            f"the inline {_what(content_type)} is about {len(compact) * 3 // 4} bytes; "
            f"the limit is {max_bytes}",
            expression=expression,
        )
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise BadBase64("the photo data is not valid base64", expression=expression) from None


def binary_reference(url: str, fhir_base: str | None, expression: str = "url") -> str:
    """``content.url`` → ``Binary/<id>`` on the configured server; anything else is refused.

    Only a relative ``Binary/<id>`` or an absolute URL under the FHIR base is accepted, so a
    resource can never make us fetch ``file://``, link-local metadata services or other hosts.
    """
    if _BINARY_PATH.match(url):
        return url
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and fhir_base:
        base = urlsplit(fhir_base.rstrip("/"))
        same_origin = (parts.scheme, _port(parts), (parts.hostname or "").lower()) == (
            base.scheme,
            _port(base),
            (base.hostname or "").lower(),
        )
        prefix = base.path.rstrip("/") + "/"
        no_extras = not (parts.query or parts.fragment or parts.username or parts.password)
        if same_origin and no_extras and parts.path.startswith(prefix):
            relative = parts.path[len(prefix) :]
            if _BINARY_PATH.match(relative):
                return relative
    where = parts.scheme + "://" + (parts.hostname or "") if parts.scheme else "a relative path"
    raise UrlNotAllowed(
        f"content.url must be a Binary on the configured FHIR server; refusing to fetch from {where}",
        expression=expression,
    )


def _port(parts: Any) -> int | None:
    try:
        port: int | None = parts.port
    except ValueError:
        return -1
    if port is None:
        return {"http": 80, "https": 443}.get(parts.scheme)
    return port


# --- what the sender declared: size and hash -------------------------------------------------


def declared_size(
    attachment: Mapping[str, Any], path: str, max_bytes: int | None, content_type: str | None
) -> int | None:
    """``size`` as declared (None when absent or not a number); refused when past ``max_bytes``."""
    size = attachment.get("size")
    text = str(size) if isinstance(size, int | str) else ""
    # Parse at most 18 digits (10^18 bytes is already absurd): int() of a 5000-digit string is
    # refused by Python itself, and such a size can only mean "too large" anyway.
    declared = int(text[:18]) * (10 ** max(0, len(text) - 18)) if text.isdigit() else None
    if max_bytes is not None and declared is not None and declared > max_bytes:
        shown = text[:20] + ("…" if len(text) > 20 else "")
        raise _too_large(content_type)(
            f"the {_what(content_type)} declares {shown} bytes; the limit is {max_bytes}",
            expression=f"{path}.size",
        )
    return declared


def declared_hash(attachment: Mapping[str, Any], path: str) -> bytes | None:
    """``hash`` decoded to its digest (None when absent), for ``check_declared_hash`` later."""
    raw = attachment.get("hash")
    if not isinstance(raw, str) or not raw.strip():
        return None
    try:
        digest = base64.b64decode("".join(raw.split()), validate=True)
    except (binascii.Error, ValueError):
        raise BadBase64("content.hash is not valid base64", expression=f"{path}.hash") from None
    # FHIR says SHA-1 (20 bytes); some senders use SHA-256 (32), which we can check just as well.
    if len(digest) not in (20, 32):
        raise InvalidResource(
            f"content.hash is {len(digest)} bytes; a SHA-1 hash is 20", expression=f"{path}.hash"
        )
    return digest


def check_declared_hash(photo: Photo, data: bytes) -> None:
    """Refuse bytes whose digest differs from ``content.hash`` (when the resource gave one)."""
    if photo.declared_sha1 is None:
        return
    algorithm = "sha1" if len(photo.declared_sha1) == 20 else "sha256"
    if hashlib.new(algorithm, data).digest() != photo.declared_sha1:
        raise HashMismatch(
            f"the photo's bytes do not match content.hash ({algorithm.upper()}); "
            "it may have been altered or truncated in transit",
            expression="content.hash",
        )
