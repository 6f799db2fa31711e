"""The browser side of a clinician session: one random cookie, the launch store, CSRF, the audit.

The cookie holds a random value and nothing else (tokens stay in the encrypted launch row). It is
HttpOnly and, by default, ``SameSite=None; Secure`` over HTTPS — what a cross-site EHR iframe
needs — and Lax over plain HTTP. Forms are protected by the launch's own CSRF token as well.
"""

from __future__ import annotations

import hmac
import re
import secrets
from datetime import UTC, datetime

from flask import current_app, request
from werkzeug.wrappers import Response

from audit.record import AuditAction, AuditOutcome, AuditRecord
from models.errors import CsrfRejected
from plugin.smart.store import LaunchStore
from workers.celery_app import services
from workers.credentials import fernet_for

COOKIE_NAME = "photomarker_clinician"
CSRF_FIELD = "csrf_token"
_COOKIE_VALUE = re.compile(r"^[A-Za-z0-9_\-]{40,64}$")
_STORE_EXTENSION = "photomarker.smart.launches"


def launch_store() -> LaunchStore:
    """This app's launch store (opened once per job store, i.e. once per process)."""
    svc = services()
    jobs = svc.jobs
    cached = current_app.extensions.get(_STORE_EXTENSION)
    if cached is None or cached[0] is not jobs:
        cached = (jobs, LaunchStore(jobs, fernet_for(svc.settings)))
        current_app.extensions[_STORE_EXTENSION] = cached
    store: LaunchStore = cached[1]
    return store


def browser_id() -> str | None:
    """The browser's session cookie when it has a well-formed one."""
    value = request.cookies.get(COOKIE_NAME, "")
    return value if _COOKIE_VALUE.match(value) else None


def new_browser_id() -> str:
    return secrets.token_urlsafe(32)


def set_browser_cookie(response: Response, value: str) -> None:
    settings = services().settings
    same_site = settings.clinician_cookie_samesite
    if same_site == "auto":
        # A cross-site iframe only sends SameSite=None cookies, and browsers keep those only when Secure.
        same_site = "None" if request.is_secure else "Lax"
    response.set_cookie(
        COOKIE_NAME,
        value,
        max_age=settings.smart_session_max_age_s,
        path="/",
        httponly=True,
        secure=same_site == "None" or request.is_secure,
        samesite=same_site,
    )


def check_csrf(expected: str) -> None:
    sent = request.form.get(CSRF_FIELD, "")
    if not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRejected("the form's anti-forgery token is missing or wrong; reload the page")


def audit(
    event: str,
    *,
    outcome: AuditOutcome = AuditOutcome.SUCCESS,
    reason: str | None = None,
    who: str | None = None,
    patient: str | None = None,
    entities: tuple[str, ...] = (),
    action: AuditAction = AuditAction.EXECUTE,
    subtype: str | None = None,
) -> None:
    """Append one clinician-app event (never a token, never a photo) to the audit trail."""
    services().audit(
        AuditRecord(
            event=event,
            action=action,
            recorded=datetime.now(UTC),
            outcome=outcome,
            outcome_reason=reason,
            subtype=subtype,
            agent_who=who or "clinician:unknown",
            agent_client_id=services().settings.smart_client_id,
            source_ip=request.remote_addr,
            patient=patient,
            entities=entities,
        )
    )


def clinician_who(fhir_user: str | None) -> str:
    """The audit/job name of the user: the verified fhirUser, or a plain "unverified"."""
    return f"clinician:{fhir_user}"[:200] if fhir_user else "clinician:unverified"
