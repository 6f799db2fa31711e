"""FHIR in: Media (R4/R4B) and image DocumentReferences (R4 and R5) → ``Photo``.

Read leniently — real servers send odd but legal data, so the raw JSON is read field by field
(``fhir_mappings.readers``) rather than through a strict model (an R5 DocumentReference would
fail an R4 model) — but refuse clearly: every refusal in FHIR.md "Inputs" raises its own
``models.errors`` class. This module finds the photo's attachment, subject and clinical context
in each resource type; the checks on the attachment's payload itself (type, size, base64, hash,
Binary URL) live in ``fhir_mappings.attachments``.
Nothing here does I/O: a photo held in a ``Binary`` comes back as a reference to fetch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from fhir_mappings import readers
from fhir_mappings.attachments import (
    VIDEO_CONTENT_TYPES,
    content_type_of,
    declared_hash,
    declared_size,
    is_picture_type,
    payload,
)
from fhir_mappings.photo import Photo, SourceRef
from models.errors import (
    InvalidResource,
    MalformedJson,
    MissingSubject,
    NoImageContent,
    NotFhir,
    SubjectMismatch,
    UnsupportedResource,
)
from models.results import SNOMED, Concept, PatientFacts, PhotoKind

PHOTO_RESOURCE_TYPES = ("Media", "DocumentReference")

# Body sites that mean "this is a conjunctiva photo": conjunctival structure, palpebral
# conjunctiva, lower eyelid.
_CONJUNCTIVA_SITES = frozenset({"29445007", "53685003", "1255005"})


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


def photos_from_json(resource: Mapping[str, Any], ctx: InputContext) -> PhotoBatch:
    """A Media, an image DocumentReference, or a Bundle of them → the photos it carries.

    In a Bundle, Patient entries (e.g. from ``_include``) are kept for interpretation and
    other resource types are ignored; a Bundle with no photo resource at all is refused.
    """
    resource_type = resource.get("resourceType")
    if resource_type == "Bundle":
        photos: list[Photo] = []
        patients: dict[str, Mapping[str, Any]] = {}
        for entry in readers.bundle_resources(resource):
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
    body_site = readers.concepts(media.get("bodySite"))
    return _photo(
        resource=media,
        attachment=content,
        path="Media.content",
        ctx=ctx,
        encounter=readers.reference(media.get("encounter")),
        taken_at=readers.as_datetime(content.get("creation"))
        or readers.as_datetime(media.get("createdDateTime"))
        or readers.as_datetime(readers.get(media, "createdPeriod", "start")),
        body_site=body_site,
        body_site_text=readers.text_of(media.get("bodySite")),
        self_submitted=readers.is_patient(readers.reference(media.get("operator"))),
    )


# --- DocumentReference (R4 and R5) -----------------------------------------------------------


def _photo_from_document_reference(doc: Mapping[str, Any], ctx: InputContext) -> Photo:
    if doc.get("status") == "entered-in-error":
        raise InvalidResource(
            "the DocumentReference is marked entered-in-error", expression="DocumentReference.status"
        )
    attachments = [
        c["attachment"]
        for c in readers.as_list(doc.get("content"))
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
        encounter = readers.reference(readers.first(context.get("encounter")))
        period_start = readers.get(context, "period", "start")
    else:
        encounter = next(
            (r for r in map(readers.reference, readers.as_list(context)) if r and r.startswith("Encounter/")),
            None,
        )
        period_start = readers.get(doc, "period", "start")
    # R5 bodySite is a list of CodeableReference; R4 has none.
    body_site = tuple(
        concept
        for site in readers.as_list(doc.get("bodySite"))
        if isinstance(site, dict)
        for concept in readers.concepts(site.get("concept", site))
    )
    authors = [readers.reference(a) for a in readers.as_list(doc.get("author"))]
    return _photo(
        resource=doc,
        attachment=attachment,
        path=f"DocumentReference.content[{index}].attachment",
        ctx=ctx,
        encounter=encounter,
        taken_at=readers.as_datetime(attachment.get("creation")) or readers.as_datetime(period_start),
        body_site=body_site,
        body_site_text=next(
            (
                text
                for site in readers.as_list(doc.get("bodySite"))
                if isinstance(site, dict) and (text := readers.text_of(site.get("concept", site))) is not None
            ),
            None,
        ),
        self_submitted=any(readers.is_patient(a) for a in authors),
    )


# --- shared: the Photo, its kind, its subject ------------------------------------------------


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
    content_type = content_type_of(attachment, path)
    subject = _subject(resource, resource_type, ctx)
    max_bytes = ctx.byte_limit(content_type)
    data, binary = payload(attachment, path, ctx.fhir_base, max_bytes, content_type)
    size = declared_size(attachment, path, max_bytes, content_type)
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
        declared_sha1=declared_hash(attachment, path),
        declared_size=size,
        encounter=encounter,
        taken_at=taken_at,
        body_site=body_site,
        body_site_text=body_site_text,
        self_submitted=self_submitted,
        kind_hint=_kind_from_sites(body_site),
    )


def _kind_from_sites(sites: tuple[Concept, ...]) -> PhotoKind | None:
    snomed = {s.code for s in sites if s.system == SNOMED}
    if snomed & _CONJUNCTIVA_SITES:
        return "conjunctiva"
    return "skin" if snomed else None


def _subject(resource: Mapping[str, Any], resource_type: str, ctx: InputContext) -> str:
    subject = readers.reference(resource.get("subject"))
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
