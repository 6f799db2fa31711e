"""FHIR input refusals: a resource that should carry a photo and cannot be accepted.

One class per refusal in FHIR.md "Inputs"; every one is an ``InputError``.
"""

from __future__ import annotations

from models.errors.base import PhotomarkerError


class InputError(PhotomarkerError):
    """The resource that should carry a photo cannot be accepted."""


class MalformedJson(InputError):
    """The text is not valid JSON."""

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
    """The resource carries no photo: no content, or an attachment with neither data nor url."""

    code = "no-image-content"
    http_status = 422
    issue_type = "required"


class BadBase64(InputError):
    """Inline data or a hash is not valid base64."""

    code = "bad-base64"
    issue_type = "value"


class HashMismatch(InputError):
    """The photo's bytes do not match the content.hash its resource declares."""

    code = "hash-mismatch"
    http_status = 422
    issue_type = "value"


class UrlNotAllowed(InputError):
    """content.url is not a Binary on the configured FHIR server: never fetched."""

    code = "url-not-allowed"
    http_status = 422
    issue_type = "security"


class MissingSubject(InputError):
    """The photo is not filed to a Patient."""

    code = "missing-subject"
    http_status = 422
    issue_type = "required"


class SubjectMismatch(InputError):
    """The photo belongs to another patient than the one in context."""

    code = "subject-mismatch"
    http_status = 403
    issue_type = "forbidden"


class BinaryUnavailable(InputError):
    """The photo lives in a Binary but there is no FHIR server to read it from."""

    code = "binary-unavailable"
    http_status = 422
    issue_type = "not-found"
