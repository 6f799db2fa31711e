"""Refusals and failures of the running service: the FHIR server it calls, and the jobs API and
its queue (a request it will not take, a missing token or job, a broker or credential that is
gone, a bug of its own).
"""

from __future__ import annotations

from models.errors.base import PhotomarkerError

# --- peers -----------------------------------------------------------------------------------


class FhirServerError(PhotomarkerError):
    """The FHIR server refused or failed a request we made."""

    code = "fhir-server-error"
    http_status = 502
    issue_type = "transient"


class FhirServerUnavailable(FhirServerError):
    """The FHIR server is down, overloaded or slow (5xx, 429, timeout): worth trying again later.

    The same stable code as its parent (clients see "the FHIR server failed" either way); the
    class only tells a worker that the request may succeed if repeated. Not in ``ALL_ERRORS``
    for that reason: it adds no code.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        # Seconds the server asked us to wait (Retry-After), when it said.
        self.retry_after = retry_after


# --- the jobs API and its queue -----------------------------------------------------------------


class InvalidRequest(PhotomarkerError):
    """An API request that is well-formed JSON but not what the endpoint takes (types, fields)."""

    code = "invalid-request"
    issue_type = "invalid"


class UnsupportedContentType(PhotomarkerError):
    """The request body is not declared as JSON."""

    code = "unsupported-content-type"
    http_status = 415
    issue_type = "not-supported"


class RequestTooLarge(PhotomarkerError):
    """The request body is larger than the configured limit."""

    code = "request-too-large"
    http_status = 413
    issue_type = "too-long"


class NotAuthenticated(PhotomarkerError):
    """No valid API token (missing, unknown or revoked)."""

    code = "not-authenticated"
    http_status = 401
    issue_type = "login"


class NotFound(PhotomarkerError):
    """No such job (or none this client may see), or no such endpoint."""

    code = "not-found"
    http_status = 404
    issue_type = "not-found"


class MethodNotAllowed(PhotomarkerError):
    """The endpoint exists but not for this HTTP method."""

    code = "method-not-allowed"
    http_status = 405
    issue_type = "not-supported"


class QueueUnavailable(PhotomarkerError):
    """The job was recorded but could not be handed to the queue (broker down)."""

    code = "queue-unavailable"
    http_status = 503
    issue_type = "transient"


class CredentialUnavailable(PhotomarkerError):
    """The stored FHIR credential of a job is gone, expired or cannot be decrypted."""

    code = "credential-unavailable"
    http_status = 401
    issue_type = "security"


class InternalError(PhotomarkerError):
    """A fault in Photomarker itself (a bug); the details are in the server log, not the answer."""

    code = "internal-error"
    http_status = 500
    issue_type = "exception"
