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
    """A PHOTOMARKER_* setting has a value Photomarker cannot start with."""

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
    """The photo has no bytes at all."""

    code = "empty-photo"
    issue_type = "required"


class PhotoTooLarge(IntakeError):
    """The photo is larger than the configured byte limit."""

    code = "photo-too-large"
    http_status = 413
    issue_type = "too-long"


class PhotoTooManyPixels(IntakeError):
    """Declared dimensions past the limit — refused before any pixel is decoded (bombs)."""

    code = "photo-too-many-pixels"
    http_status = 413
    issue_type = "too-long"


class UnsupportedMediaType(IntakeError):
    """The content is not JPEG, PNG, HEIC/HEIF or WebP."""

    code = "unsupported-media-type"
    http_status = 415
    issue_type = "not-supported"


class UndecodablePhoto(IntakeError):
    """The bytes do not decode as an image."""

    code = "undecodable-photo"
    http_status = 422
    issue_type = "invalid"


class TruncatedPhoto(IntakeError):
    """The image data ends early: the photo was cut off in transit or storage."""

    code = "truncated-photo"
    http_status = 422
    issue_type = "invalid"


# --- video intake (bytes → sampled frames) ---------------------------------------------------


class NotAVideo(IntakeError):
    """Declared a video, but the bytes are no video container PyAV can open."""

    code = "not-a-video"
    http_status = 422
    issue_type = "invalid"


class DamagedVideo(IntakeError):
    """The video container or its frames are truncated or corrupt."""

    code = "damaged-video"
    http_status = 422
    issue_type = "invalid"


class NoVideoFrames(IntakeError):
    """The video has a picture stream, and not one frame of it decodes."""

    code = "no-video-frames"
    http_status = 422
    issue_type = "invalid"


class AudioOnly(IntakeError):
    """A container with sound and no picture (a voice memo, an .m4a)."""

    code = "audio-only"
    http_status = 422
    issue_type = "not-supported"


class VideoTooLarge(IntakeError):
    """The video is larger than the configured byte limit."""

    code = "video-too-large"
    http_status = 413
    issue_type = "too-long"


class VideoTooLong(IntakeError):
    """The video lasts longer, or holds more frames, than the configured limits."""

    code = "video-too-long"
    http_status = 413
    issue_type = "too-long"


class VideoFrameTooManyPixels(IntakeError):
    """The video's frames are larger than the configured pixel limit (refused before decoding)."""

    code = "video-frame-too-many-pixels"
    http_status = 413
    issue_type = "too-long"


class ContentTypeMismatch(IntakeError):
    """The declared content type says photo and the bytes are a video, or the other way round."""

    code = "content-type-mismatch"
    http_status = 415
    issue_type = "invalid"


class InvalidSeries(IntakeError):
    """A photo series that cannot be analysed as one lesion (too few or too many photos, or
    photos of more than one patient)."""

    code = "invalid-series"
    http_status = 422
    issue_type = "invalid"


# --- FHIR input (resource → Photo) -----------------------------------------------------------


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


# --- training and evaluation data --------------------------------------------------------------


class DatasetError(PhotomarkerError):
    """A labelled data set (CSV + images) cannot be used to train or evaluate a model."""

    code = "invalid-dataset"
    http_status = 422
    issue_type = "invalid"


class ModelNotInstalled(PhotomarkerError):
    """The model package asked for is not installed (or its files are incomplete)."""

    code = "model-not-installed"
    http_status = 404
    issue_type = "not-found"


# --- models and their execution ---------------------------------------------------------------


class ModelError(PhotomarkerError):
    """An installed model cannot be trusted or run: a deployment fault, not a photo's."""

    http_status = 500
    issue_type = "exception"


class InvalidModelManifest(ModelError):
    """A model package's manifest.json is missing, malformed or breaks the manifest rules."""

    code = "invalid-model-manifest"


class ModelWeightsMissing(ModelError):
    """The weights file a manifest names is not in its package."""

    code = "model-weights-missing"


class ModelWeightsMismatch(ModelError):
    """The weights file's SHA-256 differs from the manifest's: refused, never loaded."""

    code = "model-weights-mismatch"
    issue_type = "security"


class ModelWeightsIncompatible(ModelError):
    """The weights do not fit the architecture the manifest names (missing or extra tensors)."""

    code = "model-weights-incompatible"


class DeviceUnavailable(ModelError):
    """The compute device the settings ask for (e.g. CUDA) is not present on this machine."""

    code = "device-unavailable"
    http_status = 503


# --- the audit trail -------------------------------------------------------------------------


class AuditError(PhotomarkerError):
    """The audit trail could not do what was asked; the trail itself is unchanged."""

    code = "audit-error"
    http_status = 500
    issue_type = "exception"


class AuditKeyMismatch(AuditError):
    """The HMAC key given (or its absence) is not the one the chain was started with.

    Appending with another key would split the chain into parts no single key verifies.
    """

    code = "audit-key-mismatch"


class InvalidAuditRecord(AuditError):
    """A record the store refuses to keep as given (e.g. a naive ``recorded`` time)."""

    code = "invalid-audit-record"
    http_status = 400
    issue_type = "invalid"


# --- auditor console -------------------------------------------------------------------------


class CsrfRejected(PhotomarkerError):
    """A console form came back without this session's anti-forgery token (or with another)."""

    code = "csrf-rejected"
    http_status = 403
    issue_type = "security"


class AuditorLoginFailed(PhotomarkerError):
    """An auditor login with an unknown name or a wrong password (which of the two is not said)."""

    code = "auditor-login-failed"
    http_status = 401
    issue_type = "login"


# --- SMART launch and the clinician app ---------------------------------------------------------


class IssuerNotAllowed(PhotomarkerError):
    """A launch named a FHIR server (iss) that is not on the allow-list: nothing is fetched from it."""

    code = "issuer-not-allowed"
    http_status = 403
    issue_type = "security"


class SmartDiscoveryFailed(PhotomarkerError):
    """The FHIR server's .well-known/smart-configuration (or its keys) could not be read or used."""

    code = "smart-discovery-failed"
    http_status = 502
    issue_type = "transient"


class LaunchStateInvalid(PhotomarkerError):
    """The authorization answer's state is missing, unknown, already used or from another browser."""

    code = "launch-state-invalid"
    http_status = 400
    issue_type = "security"


class AuthorizationDenied(PhotomarkerError):
    """The user or the authorization server refused the app's authorization request."""

    code = "authorization-denied"
    http_status = 403
    issue_type = "forbidden"


class TokenExchangeFailed(PhotomarkerError):
    """The authorization server would not exchange the code (or a refresh token) for an access token."""

    code = "token-exchange-failed"
    http_status = 502
    issue_type = "security"


class IdTokenInvalid(PhotomarkerError):
    """The id_token failed verification (signature, issuer, audience, expiry, nonce): fhirUser untrusted."""

    code = "id-token-invalid"
    http_status = 401
    issue_type = "security"


class LaunchContextMissing(PhotomarkerError):
    """The launch gave no patient (or the patient cannot be read), so there is nothing to show."""

    code = "launch-context-missing"
    http_status = 422
    issue_type = "required"


class ClinicianSessionExpired(PhotomarkerError):
    """No clinician session for this browser, or it has ended: launch the app again from the chart."""

    code = "clinician-session-expired"
    http_status = 401
    issue_type = "login"


# --- the inbox: SMART Backend Services and subscription notifications ---------------------------


class BackendAuthRefused(PhotomarkerError):
    """The FHIR server's token endpoint refused the inbox's signed client assertion (or had none)."""

    code = "backend-auth-refused"
    http_status = 502
    issue_type = "security"


class ScopeNotGranted(PhotomarkerError):
    """The inbox's access token lacks a scope it needs: nothing is read or written with it."""

    code = "scope-not-granted"
    http_status = 502
    issue_type = "forbidden"


ALL_ERRORS: tuple[type[PhotomarkerError], ...] = (
    SettingsError,
    UnreadableFile,
    EmptyPhoto,
    PhotoTooLarge,
    PhotoTooManyPixels,
    UnsupportedMediaType,
    UndecodablePhoto,
    TruncatedPhoto,
    NotAVideo,
    DamagedVideo,
    NoVideoFrames,
    AudioOnly,
    VideoTooLarge,
    VideoTooLong,
    VideoFrameTooManyPixels,
    ContentTypeMismatch,
    InvalidSeries,
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
    DatasetError,
    ModelNotInstalled,
    InvalidModelManifest,
    ModelWeightsMissing,
    ModelWeightsMismatch,
    ModelWeightsIncompatible,
    DeviceUnavailable,
    AuditError,
    AuditKeyMismatch,
    InvalidAuditRecord,
    InvalidRequest,
    UnsupportedContentType,
    RequestTooLarge,
    NotAuthenticated,
    NotFound,
    MethodNotAllowed,
    QueueUnavailable,
    CredentialUnavailable,
    InternalError,
    CsrfRejected,
    AuditorLoginFailed,
    IssuerNotAllowed,
    SmartDiscoveryFailed,
    LaunchStateInvalid,
    AuthorizationDenied,
    TokenExchangeFailed,
    IdTokenInvalid,
    LaunchContextMissing,
    ClinicianSessionExpired,
    BackendAuthRefused,
    ScopeNotGranted,
)
