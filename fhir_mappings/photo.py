"""``Photo``: the internal form of a photo that arrived as a Media or an image DocumentReference."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from models.results import Concept, PhotoKind


@dataclass(frozen=True)
class SourceRef:
    """The FHIR resource a photo came from, down to its version (idempotency keys on it)."""

    resource_type: str  # "Media" or "DocumentReference"
    id: str | None
    version_id: str | None = None

    @property
    def reference(self) -> str | None:
        """Versioned reference (``Media/1/_history/2``) when known, else ``Media/1``."""
        if self.id is None:
            return None
        base = f"{self.resource_type}/{self.id}"
        return f"{base}/_history/{self.version_id}" if self.version_id else base


@dataclass(frozen=True)
class Photo:
    """A photo to analyse and everything the FHIR resource said about it.

    Exactly one of ``data`` (inline bytes, already base64-decoded) and ``binary_reference``
    (``Binary/<id>`` on the configured FHIR server, still to be fetched) is set.
    """

    source: SourceRef | None
    subject: str | None  # "Patient/123"
    content_type: str | None
    data: bytes | None = None
    binary_reference: str | None = None
    # content.hash: SHA-1 of the raw bytes, as the resource declared it (decoded from base64).
    declared_sha1: bytes | None = None
    declared_size: int | None = None
    encounter: str | None = None
    taken_at: datetime | None = None
    body_site: tuple[Concept, ...] = field(default_factory=tuple)
    # The sender's own words for the site (bodySite.text), e.g. "Left forearm": the laterality
    # and detail a clinician wrote, which the code alone ("Upper limb structure") loses.
    body_site_text: str | None = None
    # Media.operator (or DocumentReference.author) is a Patient: the patient sent it in.
    self_submitted: bool = False
    kind_hint: PhotoKind | None = None
