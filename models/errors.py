"""The one error hierarchy: every refusal Photomarker makes, each with a stable code.

Each error carries what the edges need and nothing FHIR- or Flask-specific: a stable
``code`` (what tests, clients and audit events key on), the HTTP status a web edge answers
with, and the FHIR ``IssueType`` that ``fhir_mappings.outcome`` puts in the OperationOutcome.
Messages name what was wrong and never echo photo bytes, tokens or patient details.
"""

from __future__ import annotations

from typing import ClassVar


class PhotomarkerError(Exception):
    """Base of every expected failure; anything else is a bug."""

    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 400
    # FHIR IssueType (http://hl7.org/fhir/issue-type) for the OperationOutcome.
    issue_type: ClassVar[str] = "processing"

    def __init__(self, message: str, *, expression: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        # FHIRPath of the offending element, e.g. "Media.content.hash", when known.
        self.expression = expression

    def __str__(self) -> str:
        return self.message


# --- configuration ---------------------------------------------------------------------------


class SettingsError(PhotomarkerError):
    code = "invalid-setting"
    http_status = 500
    issue_type = "exception"


class UnreadableFile(PhotomarkerError):
    """A local file given to the CLI cannot be read (missing, a directory, no permission)."""

    code = "unreadable-file"
    issue_type = "not-found"


# --- photo intake (bytes → pixels) -----------------------------------------------------------


class IntakeError(PhotomarkerError):
    """The photo's bytes cannot become pixels we are willing to analyse."""


class EmptyPhoto(IntakeError):
    code = "empty-photo"
    issue_type = "required"


class PhotoTooLarge(IntakeError):
    code = "photo-too-large"
    http_status = 413
    issue_type = "too-long"


class PhotoTooManyPixels(IntakeError):
    """Declared dimensions past the limit — refused before any pixel is decoded (bombs)."""

    code = "photo-too-many-pixels"
    http_status = 413
    issue_type = "too-long"


class UnsupportedMediaType(IntakeError):
    code = "unsupported-media-type"
    http_status = 415
    issue_type = "not-supported"


class UndecodablePhoto(IntakeError):
    code = "undecodable-photo"
    http_status = 422
    issue_type = "invalid"


class TruncatedPhoto(IntakeError):
    code = "truncated-photo"
    http_status = 422
    issue_type = "invalid"


# --- FHIR input (resource → Photo) -----------------------------------------------------------


class InputError(PhotomarkerError):
    """The resource that should carry a photo cannot be accepted."""


class MalformedJson(InputError):
    code = "malformed-json"
    issue_type = "structure"


class NotFhir(InputError):
    """Valid JSON that is not a FHIR resource at all (no or unknown resourceType)."""

    code = "not-fhir"
    issue_type = "structure"


class UnsupportedResource(InputError):
    """A FHIR resource, but not one that carries a photo (e.g. a Patient)."""

    code = "unsupported-resource"
    http_status = 422
    issue_type = "not-supported"


class InvalidResource(InputError):
    """A Media or DocumentReference that breaks the FHIR rules for its type."""

    code = "invalid-resource"
    issue_type = "invalid"


class NoImageContent(InputError):
    code = "no-image-content"
    http_status = 422
    issue_type = "required"


class BadBase64(InputError):
    code = "bad-base64"
    issue_type = "value"


class HashMismatch(InputError):
    code = "hash-mismatch"
    http_status = 422
    issue_type = "value"


class UrlNotAllowed(InputError):
    """content.url is not a Binary on the configured FHIR server: never fetched."""

    code = "url-not-allowed"
    http_status = 422
    issue_type = "security"


class MissingSubject(InputError):
    code = "missing-subject"
    http_status = 422
    issue_type = "required"


class SubjectMismatch(InputError):
    code = "subject-mismatch"
    http_status = 403
    issue_type = "forbidden"


class BinaryUnavailable(InputError):
    """The photo lives in a Binary but there is no FHIR server to read it from."""

    code = "binary-unavailable"
    http_status = 422
    issue_type = "not-found"


# --- peers -----------------------------------------------------------------------------------


class FhirServerError(PhotomarkerError):
    """The FHIR server refused or failed a request we made."""

    code = "fhir-server-error"
    http_status = 502
    issue_type = "transient"


ALL_ERRORS: tuple[type[PhotomarkerError], ...] = (
    SettingsError,
    UnreadableFile,
    EmptyPhoto,
    PhotoTooLarge,
    PhotoTooManyPixels,
    UnsupportedMediaType,
    UndecodablePhoto,
    TruncatedPhoto,
    MalformedJson,
    NotFhir,
    UnsupportedResource,
    InvalidResource,
    NoImageContent,
    BadBase64,
    HashMismatch,
    UrlNotAllowed,
    MissingSubject,
    SubjectMismatch,
    BinaryUnavailable,
    FhirServerError,
)
