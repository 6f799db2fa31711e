"""Authentication and authorization refusals: the auditor console's login and anti-forgery check,
the SMART launch of the clinician app, and the inbox's SMART Backend Services token.
"""

from __future__ import annotations

from models.errors.base import PhotomarkerError

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
