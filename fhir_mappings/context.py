"""``ResultContext``: everything about one write-back that is not the result itself.

Builders stay pure because time, ids and settings arrive here as values: the caller reads the
clock once (``issued``), knows who asked (``requester``) and where the photo lives
(``derived_from``). Also the one place datetimes become FHIR strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from fhir_mappings import idempotency
from fhir_mappings.photo import Photo
from models.results import PatientFacts


def fhir_instant(moment: datetime) -> str:
    """FHIR ``instant``: needs a zone; the caller's offset is kept (no conversion to UTC)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment.isoformat()} has no time zone; FHIR instants need one")
    return moment.isoformat(timespec="milliseconds" if moment.microsecond else "seconds")


def fhir_datetime(moment: datetime) -> str:
    """FHIR ``dateTime`` keeping the photo's own offset.

    A time without a zone is not a legal FHIR dateTime, and guessing a zone could move the
    photo to another day, so a naive datetime (EXIF without OffsetTime) keeps only its date.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment.date().isoformat()
    return fhir_instant(moment)


@dataclass(frozen=True)
class Requester:
    """Who asked for the analysis: a ``fhirUser`` reference, or a named service."""

    reference: str | None = None  # "Practitioner/7" or an absolute fhirUser URL
    display: str | None = None  # "Photomarker inbox", "cli:alice"

    def __post_init__(self) -> None:
        if not (self.reference or self.display):
            raise ValueError("a requester needs a reference or a display name")

    def as_reference(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.reference:
            out["reference"] = self.reference
        if self.display:
            out["display"] = self.display
        return out


@dataclass(frozen=True)
class ResultContext:
    """One photo's write-back: where results point, when they were issued, and by whom.

    ``derived_from`` is what ``Observation.derivedFrom`` and ``Provenance.entity`` point at:
    the photo's versioned reference (``Media/1/_history/2``) or, for a file, the
    ``urn:uuid:`` of the Media written in the same Bundle. Use ``for_fhir_photo`` /
    ``for_file`` rather than filling it by hand.
    """

    canonical: str  # PHOTOMARKER_CANONICAL_BASE without a trailing slash
    photo: Photo
    derived_from: str
    issued: datetime
    software_version: str
    requester: Requester
    file_sha256: str | None = None  # set when the photo came from a file
    patient_facts: PatientFacts = field(default_factory=PatientFacts)
    hb_add_loinc_718_7: bool = False  # site setting: also code the Hb estimate as LOINC 718-7
    # A photo series analysed as one lesion: the other photos results derive from, and the key
    # (``idempotency.series_photo_key``) that stands for the whole series.
    also_derived_from: tuple[str, ...] = ()
    series_key: str | None = None

    def __post_init__(self) -> None:
        if self.canonical.endswith("/"):
            raise ValueError("canonical must not end with '/'")
        fhir_instant(self.issued)  # refuse a naive issued time early, not deep in a builder
        if self.series_key is not None:
            if not self.also_derived_from or self.file_sha256 is not None:
                raise ValueError("a series derives from several photos and is no single file")
        elif self.file_sha256 is None and (self.photo.source is None or self.photo.source.id is None):
            raise ValueError("a photo needs a FHIR source with an id or a file SHA-256")

    @classmethod
    def for_fhir_photo(
        cls,
        photo: Photo,
        *,
        canonical: str,
        issued: datetime,
        software_version: str,
        requester: Requester,
        patient_facts: PatientFacts | None = None,
        hb_add_loinc_718_7: bool = False,
    ) -> ResultContext:
        """Results of a photo read from a FHIR server point at its exact version."""
        if photo.source is None or photo.source.reference is None:
            raise ValueError("the photo has no FHIR source reference")
        return cls(
            canonical=canonical.rstrip("/"),
            photo=photo,
            derived_from=photo.source.reference,
            issued=issued,
            software_version=software_version,
            requester=requester,
            patient_facts=patient_facts or PatientFacts(),
            hb_add_loinc_718_7=hb_add_loinc_718_7,
        )

    @classmethod
    def for_file(
        cls,
        photo: Photo,
        *,
        file_sha256: str,
        canonical: str,
        issued: datetime,
        software_version: str,
        requester: Requester,
        patient_facts: PatientFacts | None = None,
        hb_add_loinc_718_7: bool = False,
    ) -> ResultContext:
        """Results of a file point at the Media that ``build_file_media`` puts in the Bundle."""
        return cls(
            canonical=canonical.rstrip("/"),
            photo=photo,
            derived_from=file_media_full_url(file_sha256),
            issued=issued,
            software_version=software_version,
            requester=requester,
            file_sha256=idempotency.file_photo_key(file_sha256).removeprefix("sha256:"),
            patient_facts=patient_facts or PatientFacts(),
            hb_add_loinc_718_7=hb_add_loinc_718_7,
        )

    @classmethod
    def for_series(
        cls,
        photos: tuple[Photo, ...],
        *,
        sources: tuple[str, ...],
        member_keys: tuple[str, ...],
        canonical: str,
        issued: datetime,
        software_version: str,
        requester: Requester,
        patient_facts: PatientFacts | None = None,
        hb_add_loinc_718_7: bool = False,
    ) -> ResultContext:
        """Results of a series point at every photo (``sources``: versioned references, or the
        ``urn:uuid:`` of each file's Media); subject, encounter and time are the first photo's."""
        if len(photos) < 2 or len(sources) != len(photos) or len(member_keys) != len(photos):
            raise ValueError("a series needs two or more photos, each with its source and key")
        return cls(
            canonical=canonical.rstrip("/"),
            photo=photos[0],
            derived_from=sources[0],
            issued=issued,
            software_version=software_version,
            requester=requester,
            patient_facts=patient_facts or PatientFacts(),
            hb_add_loinc_718_7=hb_add_loinc_718_7,
            also_derived_from=sources[1:],
            series_key=idempotency.series_photo_key(member_keys),
        )

    @property
    def sources(self) -> tuple[str, ...]:
        """Everything the results derive from: the photo, the video, or every photo of a series."""
        return (self.derived_from, *self.also_derived_from)

    @property
    def photo_key(self) -> str:
        if self.series_key is not None:
            return self.series_key
        if self.file_sha256 is not None:
            return idempotency.file_photo_key(self.file_sha256)
        if self.photo.source is None:  # unreachable: __post_init__ refuses it
            raise ValueError("the photo has no FHIR source")
        return idempotency.fhir_photo_key(self.photo.source)

    @property
    def issued_instant(self) -> str:
        return fhir_instant(self.issued)


def file_media_full_url(file_sha256: str) -> str:
    """The Bundle fullUrl of the Media made from a file; depends only on the file's bytes."""
    return "urn:uuid:" + idempotency.stable_uuid("media", idempotency.file_photo_key(file_sha256))
