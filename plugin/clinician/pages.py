"""The page a clinician sees when something is refused: what happened, in words, and what to do."""

from __future__ import annotations

from flask import render_template

from models.errors import PhotomarkerError

_AGAIN = "Open Photomarker again from the patient's chart."
# error code → (heading, what to do)
_ADVICE = {
    "launch-state-invalid": (
        "This sign-in answer cannot be used",
        "It was already used, has expired, or belongs to a launch started in another browser. " + _AGAIN,
    ),
    "authorization-denied": (
        "Access was not granted",
        "The EHR's sign-in did not give Photomarker access. Open it again from the chart and allow "
        "access, or ask your EHR administrator.",
    ),
    "smart-discovery-failed": (
        "The EHR's FHIR server could not be reached",
        "Photomarker could not read what it needs from the EHR's server. Try again in a minute; if it "
        "persists, tell your EHR administrator.",
    ),
    "fhir-server-error": (
        "The EHR's FHIR server could not be reached",
        "Photomarker could not read from or write to the EHR's server. Try again in a minute.",
    ),
    "token-exchange-failed": (
        "Sign-in could not be completed",
        "The EHR's authorization server would not issue an access token. " + _AGAIN,
    ),
    "id-token-invalid": (
        "Your identity could not be confirmed",
        "The sign-in token failed its checks, so Photomarker did not accept it. " + _AGAIN,
    ),
    "launch-context-missing": (
        "No patient was selected",
        "Photomarker works on one patient's photos. Open it from a patient's chart, or choose a patient "
        "when the EHR asks.",
    ),
    "issuer-not-allowed": (
        "This EHR is not set up for Photomarker",
        "The launch came from a FHIR server Photomarker is not configured to trust; nothing was fetched.",
    ),
    "clinician-session-expired": (
        "Your session with the EHR has ended",
        "Open Photomarker again from the patient's chart.",
    ),
    "subject-mismatch": (
        "This belongs to another patient",
        "Photomarker only shows and analyses the photos of the patient in context. Nothing was analysed.",
    ),
    "csrf-rejected": ("The form has expired", "Reload the page and try again."),
    "invalid-setting": (
        "Photomarker is not set up for this",
        "An administrator needs to complete Photomarker's settings.",
    ),
    "queue-unavailable": ("The analysis could not be started", "Try again in a minute."),
}
_DEFAULT = ("Something went wrong", "Try again; if it keeps happening, tell your administrator.")


# Errors after which the patient's page cannot work again: offering "back" would only loop.
_NO_WAY_BACK = frozenset({"clinician-session-expired"})


def error_page(error: PhotomarkerError, *, launch_id: str | None = None) -> tuple[str, int]:
    heading, advice = _ADVICE.get(error.code, _DEFAULT)
    back = None if error.code in _NO_WAY_BACK else launch_id
    page = render_template(
        "clinician/error.html", error=error, heading=heading, advice=advice, back_launch_id=back
    )
    return page, error.http_status
