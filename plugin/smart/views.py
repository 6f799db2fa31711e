"""``/launch`` (EHR and standalone launch) and the redirect URI ``/smart/callback``.

Each refusal — an issuer off the allow-list, an unreachable server, a bad or replayed state, a
denial, a token or id_token that fails, no patient — is audited and answered with a page that
says what happened and what to do; never a stack trace.
"""

from __future__ import annotations

import logging
import re
import secrets

from flask import Blueprint, Response, redirect, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from audit.record import AuditOutcome
from models.errors import (
    AuthorizationDenied,
    InternalError,
    InvalidRequest,
    LaunchContextMissing,
    LaunchStateInvalid,
    PhotomarkerError,
    SettingsError,
    TokenExchangeFailed,
)
from plugin.clinician.headers import page_headers
from plugin.clinician.pages import error_page
from plugin.smart import session
from plugin.smart.discovery import SmartConfiguration, checked_issuer, discover
from plugin.smart.oauth import OAUTH_ERROR_CODE, authorization_url, exchange_code, verified_fhir_user
from plugin.smart.scopes import requested_scopes
from plugin.smart.store import Launch
from workers.celery_app import services

log = logging.getLogger(__name__)

smart = Blueprint("smart", __name__)

# SMART's launch parameter is opaque; a sane one is short and printable.
_LAUNCH_PARAM = re.compile(r"^[\x21-\x7e]{1,1000}$")


@smart.after_request
def _page_headers(response: Response) -> Response:
    return page_headers(response)


@smart.errorhandler(PhotomarkerError)
def _refused(error: PhotomarkerError) -> tuple[str, int]:
    session.audit(
        "smart.refused", outcome=AuditOutcome.MINOR_FAILURE, reason=f"{error.code}: {error.message}"
    )
    return error_page(error)


@smart.errorhandler(Exception)
def _unexpected(exc: Exception) -> tuple[str, int]:
    log.exception("unexpected error during a SMART launch")
    return _refused(InternalError("unexpected error; it has been logged"))


@smart.get("/launch")
def launch() -> BaseResponse:
    settings = services().settings
    if not settings.smart_client_id:
        raise SettingsError(
            "PHOTOMARKER_SMART_CLIENT_ID is not set: this Photomarker is not registered with an EHR"
        )
    iss = checked_issuer(request.args.get("iss"), settings)
    launch_param = request.args.get("launch") or None
    if launch_param is not None and not _LAUNCH_PARAM.match(launch_param):
        raise InvalidRequest("the launch parameter is malformed")
    config = discover(iss, settings)
    browser = session.browser_id()
    fresh = browser is None
    browser = browser or session.new_browser_id()
    state = secrets.token_urlsafe(32)  # 256 bits
    pending = Launch(
        iss=iss,
        config=config.as_json(),
        redirect_uri=str(settings.smart_redirect_uri or url_for("smart.callback", _external=True)),
        code_verifier=secrets.token_urlsafe(64),  # 86 characters: RFC 7636 asks 43–128
        nonce=secrets.token_urlsafe(32),
        ehr_launch=launch_param is not None,
        launch=launch_param,
    )
    store = session.launch_store()
    store.delete_expired()  # one cheap DELETE per launch keeps forgotten sessions from piling up
    store.start(browser, state, pending)
    scope = requested_scopes(
        config.scopes_supported, ehr_launch=pending.ehr_launch, write_heatmaps=settings.inference_heatmaps
    )
    target = authorization_url(config, pending, state=state, scope=scope, settings=settings)
    session.audit("smart.launch", reason="EHR launch" if pending.ehr_launch else "standalone launch")
    response = redirect(target, 302)
    if fresh:
        session.set_browser_cookie(response, browser)
    return response


@smart.get("/smart/callback")
def callback() -> BaseResponse:
    settings = services().settings
    state = request.args.get("state", "")
    browser = session.browser_id()
    store = session.launch_store()
    found = store.consume_state(browser, state) if state and browser and len(state) <= 200 else None
    if found is None:
        raise LaunchStateInvalid(
            "this sign-in answer does not belong to a launch started in this browser, or was already used"
        )
    launch_id, pending = found
    try:
        error = request.args.get("error")
        if error:
            # The OAuth code (invalid_client, access_denied, …) is what an EHR administrator needs;
            # anything that is not a plain code is not repeated on the page.
            shown = error if OAUTH_ERROR_CODE.match(error) else "an unreadable error code"
            raise AuthorizationDenied(f"the authorization server did not grant access ({shown})")
        code = request.args.get("code", "")
        if not code or len(code) > 2000:
            raise TokenExchangeFailed("the authorization server's answer carries no code")
        config = SmartConfiguration.from_json(pending.config)
        tokens = exchange_code(config, pending, code, settings)
        fhir_user = (
            verified_fhir_user(tokens.id_token, config, nonce=pending.nonce, settings=settings)
            if tokens.id_token
            else None
        )
        if tokens.patient is None:
            raise LaunchContextMissing("the launch selected no patient, so there is nothing to show")
    except PhotomarkerError:
        store.forget(launch_id)
        raise
    pending.access_token = tokens.access_token
    pending.refresh_token = tokens.refresh_token
    pending.expires_at = tokens.expires_at
    pending.scopes = tokens.scopes
    pending.patient = tokens.patient
    pending.encounter = tokens.encounter
    pending.fhir_user = fhir_user
    pending.need_patient_banner = tokens.need_patient_banner
    pending.smart_style_url = tokens.smart_style_url
    store.save(launch_id, pending, max_age_s=settings.smart_session_max_age_s)
    session.audit("smart.login", who=session.clinician_who(fhir_user), patient=tokens.patient)
    return redirect(url_for("clinician.patient_view", launch_id=launch_id), 303)
