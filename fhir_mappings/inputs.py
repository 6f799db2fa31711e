"""FHIR in: Media (R4/R4B) and image DocumentReferences (R4 and R5) → ``Photo``.

Read leniently — real servers send odd but legal data, so the raw JSON is read field by field
rather than through a strict model (an R5 DocumentReference would fail an R4 model) — but refuse
clearly: every refusal in FHIR.md "Inputs" raises its own ``models.errors`` class.
Nothing here does I/O: a photo held in a ``Binary`` comes back as a reference to fetch.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from urllib.parse import urlsplit

from fhir_mappings.photo import Photo, SourceRef
from models.errors import (
    BadBase64,
    EmptyPhoto,
    HashMismatch,
    InvalidResource,
    MalformedJson,
    MissingSubject,
    NoImageContent,
    NotFhir,
    PhotoTooLarge,
    SubjectMismatch,
    UnsupportedMediaType,
    UnsupportedResource,
    UrlNotAllowed,
    VideoTooLarge,
)
from models.results import SNOMED, Concept, PatientFacts, PhotoKind

PHOTO_CONTENT_TYPES = frozenset({"image/jpeg", "image/png", "image/heic", "image/heif", "image/webp"})
# Videos of a lesion (issue 15): analysed frame by frame and accumulated into one verdict.
VIDEO_CONTENT_TYPES = frozenset({"video/mp4", "video/quicktime", "video/webm"})
ACCEPTED_CONTENT_TYPES = PHOTO_CONTENT_TYPES | VIDEO_CONTENT_TYPES
PHOTO_RESOURCE_TYPES = ("Media", "DocumentReference")

# Body sites that mean "this is a conjunctiva photo": conjunctival structure, palpebral
# conjunctiva, lower eyelid.
_CONJUNCTIVA_SITES = frozenset({"29445007", "53685003", "1255005"})

# A FHIR id (R4 2.24.0.1): 1–64 of [A-Za-z0-9-.].
# "." and ".." are legal by that pattern but are path segments to an HTTP client: refused.
_FHIR_ID = r"(?!\.{1,2}(?:/|$))[A-Za-z0-9\-.]{1,64}"
_BINARY_PATH = re.compile(rf"^Binary/({_FHIR_ID})(?:/_history/({_FHIR_ID}))?$")
_REFERENCE = re.compile(
    r"^(?:.*/)?([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$"
)


@dataclass(frozen=True)
class InputContext:
    """What the caller knows that decides whether a resource may be accepted."""

    fhir_base: str | None = None  # the only server a Binary may be fetched from
    expected_patient: str | None = None  # "Patient/123": the launch patient, when there is one
    max_bytes: int | None = None  # refuse inline photos past this before decoding base64
    max_video_bytes: int | None = None  # the same for videos; None: as for photos

    def byte_limit(self, content_type: str | None) -> int | None:
        """The size limit for content of this type (the larger one while the type is unknown)."""
        if self.max_video_bytes is None or self.max_bytes is None:
            return self.max_bytes if self.max_video_bytes is None else self.max_video_bytes
        if content_type is None:
            return max(self.max_bytes, self.max_video_bytes)
        return self.max_video_bytes if content_type in VIDEO_CONTENT_TYPES else self.max_bytes


@dataclass(frozen=True)
class PhotoBatch:
    """The photos found in one JSON document, plus the Patients it happened to carry."""

    photos: tuple[Photo, ...]
    # "Patient/<id>" → the Patient resource (e.g. from _include), for interpretation.
    patients: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


# --- JSON → resource(s) ----------------------------------------------------------------------


def load_json(raw: bytes | str) -> dict[str, Any]:
    """Parse JSON text into a FHIR resource object, or say precisely why it is not one."""
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedJson(f"not valid JSON: {_json_problem(exc)}") from None
    if not isinstance(value, dict):
        raise NotFhir(f"JSON {type(value).__name__} is not a FHIR resource (expected an object)")
    resource_type = value.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        raise NotFhir("JSON object has no resourceType, so it is not a FHIR resource")
    if not _is_fhir_resource_type(resource_type):
        raise NotFhir(f"resourceType {resource_type!r} is not a FHIR resource type")
    return value


def photos_from_json(resource: Mapping[str, Any], ctx: InputContext) -> PhotoBatch:
    """A Media, an image DocumentReference, or a Bundle of them → the photos it carries.

    In a Bundle, Patient entries (e.g. from ``_include``) are kept for interpretation and
    other resource types are ignored; a Bundle with no photo resource at all is refused.
    """
    resource_type = resource.get("resourceType")
    if resource_type == "Bundle":
        photos: list[Photo] = []
        patients: dict[str, Mapping[str, Any]] = {}
        for entry in _bundle_resources(resource):
            entry_type = entry.get("resourceType")
            if entry_type in PHOTO_RESOURCE_TYPES:
                photos.append(photo_from_resource(entry, ctx))
            elif entry_type == "Patient" and isinstance(entry.get("id"), str):
                patients[f"Patient/{entry['id']}"] = entry
        if not photos:
            raise NoImageContent("the Bundle holds no Media or DocumentReference")
        return PhotoBatch(tuple(photos), patients)
    return PhotoBatch((photo_from_resource(resource, ctx),))


def photo_from_resource(resource: Mapping[str, Any], ctx: InputContext) -> Photo:
    resource_type = resource.get("resourceType")
    if resource_type == "Media":
        return _photo_from_media(resource, ctx)
    if resource_type == "DocumentReference":
        return _photo_from_document_reference(resource, ctx)
    raise UnsupportedResource(
        f"a {resource_type} does not carry a photo; send a Media or an image DocumentReference"
    )


# --- Media -----------------------------------------------------------------------------------


def _photo_from_media(media: Mapping[str, Any], ctx: InputContext) -> Photo:
    if media.get("status") == "entered-in-error":
        raise InvalidResource("the Media is marked entered-in-error", expression="Media.status")
    content = media.get("content")
    if not isinstance(content, dict):
        raise NoImageContent("the Media has no content", expression="Media.content")
    body_site = _concepts(media.get("bodySite"))
    return _photo(
        resource=media,
        attachment=content,
        path="Media.content",
        ctx=ctx,
        encounter=_reference(media.get("encounter")),
        taken_at=_datetime(content.get("creation"))
        or _datetime(media.get("createdDateTime"))
        or _datetime(_get(media, "createdPeriod", "start")),
        body_site=body_site,
        body_site_text=_text_of(media.get("bodySite")),
        self_submitted=_is_patient(_reference(media.get("operator"))),
    )


# --- DocumentReference (R4 and R5) -----------------------------------------------------------


def _photo_from_document_reference(doc: Mapping[str, Any], ctx: InputContext) -> Photo:
    if doc.get("status") == "entered-in-error":
        raise InvalidResource(
            "the DocumentReference is marked entered-in-error", expression="DocumentReference.status"
        )
    attachments = [
        c["attachment"]
        for c in _list(doc.get("content"))
        if isinstance(c, dict) and isinstance(c.get("attachment"), dict)
    ]
    if not attachments:
        raise NoImageContent(
            "the DocumentReference has no attachment", expression="DocumentReference.content"
        )
    images = [a for a in attachments if is_picture_type(a.get("contentType"))]
    # A DocumentReference may carry a PDF and a photo (or video) side by side; only those are analysed.
    attachment = images[0] if images else attachments[0]
    index = attachments.index(attachment)
    # R4 keeps encounter and period under `context`; R5 made `context` a list of references.
    context = doc.get("context")
    if isinstance(context, dict):
        encounter = _reference(_first(context.get("encounter")))
        period_start = _get(context, "period", "start")
    else:
        encounter = next(
            (r for r in map(_reference, _list(context)) if r and r.startswith("Encounter/")), None
        )
        period_start = _get(doc, "period", "start")
    # R5 bodySite is a list of CodeableReference; R4 has none.
    body_site = tuple(
        concept
        for site in _list(doc.get("bodySite"))
        if isinstance(site, dict)
        for concept in _concepts(site.get("concept", site))
    )
    authors = [_reference(a) for a in _list(doc.get("author"))]
    return _photo(
        resource=doc,
        attachment=attachment,
        path=f"DocumentReference.content[{index}].attachment",
        ctx=ctx,
        encounter=encounter,
        taken_at=_datetime(attachment.get("creation")) or _datetime(period_start),
        body_site=body_site,
        body_site_text=next(
            (
                text
                for site in _list(doc.get("bodySite"))
                if isinstance(site, dict) and (text := _text_of(site.get("concept", site))) is not None
            ),
            None,
        ),
        self_submitted=any(_is_patient(a) for a in authors),
    )


# --- shared: the attachment, the subject -----------------------------------------------------


def _photo(
    *,
    resource: Mapping[str, Any],
    attachment: Mapping[str, Any],
    path: str,
    ctx: InputContext,
    encounter: str | None,
    taken_at: datetime | None,
    body_site: tuple[Concept, ...],
    body_site_text: str | None,
    self_submitted: bool,
) -> Photo:
    resource_type = str(resource["resourceType"])
    content_type = _content_type(attachment, path)
    subject = _subject(resource, resource_type, ctx)
    max_bytes = ctx.byte_limit(content_type)
    data, binary = _payload(attachment, path, ctx, max_bytes, content_type)
    size = attachment.get("size")
    text = str(size) if isinstance(size, int | str) else ""
    # Parse at most 18 digits (10^18 bytes is already absurd): int() of a 5000-digit string is
    # refused by Python itself, and such a size can only mean "too large" anyway.
    declared_size = int(text[:18]) * (10 ** max(0, len(text) - 18)) if text.isdigit() else None
    if max_bytes is not None and declared_size is not None and declared_size > max_bytes:
        shown = text[:20] + ("…" if len(text) > 20 else "")
        raise _too_large(content_type)(
            f"the {_what(content_type)} declares {shown} bytes; the limit is {max_bytes}",
            expression=f"{path}.size",
        )
    meta = resource.get("meta")
    version = meta.get("versionId") if isinstance(meta, dict) else None
    resource_id = resource.get("id")
    return Photo(
        source=SourceRef(
            resource_type=resource_type,
            id=resource_id if isinstance(resource_id, str) else None,
            version_id=version if isinstance(version, str) else None,
        ),
        subject=subject,
        content_type=content_type,
        data=data,
        binary_reference=binary,
        declared_sha1=_hash(attachment, path),
        declared_size=declared_size,
        encounter=encounter,
        taken_at=taken_at,
        body_site=body_site,
        body_site_text=body_site_text,
        self_submitted=self_submitted,
        kind_hint=_kind_from_sites(body_site),
    )


def _content_type(attachment: Mapping[str, Any], path: str) -> str | None:
    raw = attachment.get("contentType")
    if raw is None:
        return None  # lenient: the bytes are sniffed when decoded
    # "image/jpeg; charset=…" and odd capitalisation are legal; compare the bare type.
    content_type = str(raw).split(";", 1)[0].strip().lower()
    if content_type == "image/jpg":
        content_type = "image/jpeg"  # common misspelling, unambiguous
    if content_type not in ACCEPTED_CONTENT_TYPES:
        raise UnsupportedMediaType(
            f"content type {content_type!r} is not supported: send a photo (JPEG, PNG, HEIC/HEIF or "
            "WebP) or a video (MP4, QuickTime or WebM)",
            expression=f"{path}.contentType",
        )
    return content_type


def is_picture_type(raw: Any) -> bool:
    """A declared type naming a photo or a video: what a DocumentReference is analysed for."""
    return str(raw or "").lower().startswith(("image/", "video/"))


def _what(content_type: str | None) -> str:
    return "video" if content_type in VIDEO_CONTENT_TYPES else "photo"


def _too_large(content_type: str | None) -> type[PhotoTooLarge] | type[VideoTooLarge]:
    return VideoTooLarge if content_type in VIDEO_CONTENT_TYPES else PhotoTooLarge


def _payload(
    attachment: Mapping[str, Any],
    path: str,
    ctx: InputContext,
    max_bytes: int | None,
    content_type: str | None,
) -> tuple[bytes | None, str | None]:
    data = attachment.get("data")
    if isinstance(data, str) and data.strip():
        return _decode_base64(data, f"{path}.data", max_bytes, content_type), None
    url = attachment.get("url")
    if isinstance(url, str) and url.strip():
        return None, binary_reference(url.strip(), ctx.fhir_base, f"{path}.url")
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


def _hash(attachment: Mapping[str, Any], path: str) -> bytes | None:
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


def _subject(resource: Mapping[str, Any], resource_type: str, ctx: InputContext) -> str:
    subject = _reference(resource.get("subject"))
    if subject is None:
        raise MissingSubject(
            f"the {resource_type} has no subject, so results could not be filed to a patient",
            expression=f"{resource_type}.subject",
        )
    if not subject.startswith("Patient/"):
        raise MissingSubject(
            f"the {resource_type}'s subject is a {subject.split('/')[0]}, not a Patient",
            expression=f"{resource_type}.subject",
        )
    if ctx.expected_patient and subject != ctx.expected_patient:
        raise SubjectMismatch(
            f"the {resource_type} belongs to another patient than the one in context",
            expression=f"{resource_type}.subject",
        )
    return subject


# --- Patient → the facts interpretation needs ------------------------------------------------


def patient_facts(patient: Mapping[str, Any], on: date | None = None) -> PatientFacts:
    """Age (months, on ``on`` or the birthDate's own reference), sex, pregnancy — all optional."""
    gender = patient.get("gender")
    sex = gender if gender in ("female", "male") else None
    age_months = None
    birth = patient.get("birthDate")
    if isinstance(birth, str) and on is not None:
        try:
            born = date.fromisoformat(birth[:10])
        except ValueError:
            born = None  # partial dates ("1980") give no age in months
        if born is not None:
            age_months = (on.year - born.year) * 12 + (on.month - born.month) - (on.day < born.day)
    return PatientFacts(age_months=age_months, sex=sex)


# --- small lenient readers -------------------------------------------------------------------


def _bundle_resources(bundle: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for entry in _list(bundle.get("entry")):
        if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
            yield entry["resource"]


def _reference(value: Any) -> str | None:
    """A Reference's ``reference`` as ``Type/id`` (absolute URLs and _history trimmed)."""
    if not isinstance(value, dict):
        return None
    ref = value.get("reference")
    if not isinstance(ref, str):
        return None
    match = _REFERENCE.match(ref.strip())
    return f"{match.group(1)}/{match.group(2)}" if match else None


def _is_patient(reference: str | None) -> bool:
    return bool(reference and reference.startswith("Patient/"))


def _concepts(value: Any) -> tuple[Concept, ...]:
    if not isinstance(value, dict):
        return ()
    found = []
    for coding in _list(value.get("coding")):
        if isinstance(coding, dict) and isinstance(coding.get("code"), str):
            found.append(
                Concept(
                    code=coding["code"],
                    display=str(coding.get("display") or value.get("text") or coding["code"]),
                    system=coding.get("system") if isinstance(coding.get("system"), str) else None,
                )
            )
    return tuple(found)


def _kind_from_sites(sites: tuple[Concept, ...]) -> PhotoKind | None:
    snomed = {s.code for s in sites if s.system == SNOMED}
    if snomed & _CONJUNCTIVA_SITES:
        return "conjunctiva"
    return "skin" if snomed else None


def _datetime(value: Any) -> datetime | None:
    """A FHIR dateTime with a time part; partial dates ("2026-03") give None, not a guess."""
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _get(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _text_of(codeable: Any) -> str | None:
    """A CodeableConcept's text, trimmed and capped (it is free text from the sender)."""
    text = codeable.get("text") if isinstance(codeable, dict) else None
    return (text.strip()[:200] or None) if isinstance(text, str) else None


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _first(value: Any) -> Any:
    items = _list(value)
    return items[0] if items else None


def _json_problem(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return "the bytes are not UTF-8 text"


def _is_fhir_resource_type(name: str) -> bool:
    """Known as a resource (not a data type like Address) in R4B or R5."""
    from fhir.resources import get_fhir_model_class as r5_class
    from fhir.resources.R4B import get_fhir_model_class as r4b_class
    from fhir.resources.R4B.resource import Resource as R4BResource
    from fhir.resources.resource import Resource as R5Resource

    for lookup, base in ((r4b_class, R4BResource), (r5_class, R5Resource)):
        try:
            model = lookup(name)
        except (ValueError, KeyError):
            continue
        if isinstance(model, type) and issubclass(model, base):
            return True
    return False


def check_declared_hash(photo: Photo, data: bytes) -> None:
    """Refuse bytes whose digest differs from ``content.hash`` (when the resource gave one)."""
    import hashlib

    if photo.declared_sha1 is None:
        return
    algorithm = "sha1" if len(photo.declared_sha1) == 20 else "sha256"
    if hashlib.new(algorithm, data).digest() != photo.declared_sha1:
        raise HashMismatch(
            f"the photo's bytes do not match content.hash ({algorithm.upper()}); "
            "it may have been altered or truncated in transit",
            expression="content.hash",
        )
