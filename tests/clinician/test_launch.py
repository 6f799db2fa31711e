"""The SMART launch against the test EHR: what is asked, what is checked, and every refusal's page."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select

from audit.events import AuditFilter
from plugin.smart.session import launch_store
from plugin.smart.store import Launch, launches
from tests.clinician.conftest import Chart, Clinician, ClinicianApp, make_app
from tests.smart_auth_server import SmartAuthServer
from tests.smart_oauth_records import CLIENT_ID, V1_SCOPES
from workers.celery_app import services

pytestmark = pytest.mark.fhir_server


def _events(app: ClinicianApp, name: str) -> list[object]:
    with app.app.app_context():
        return list(services().audit_store.iter_events(AuditFilter(event=name)))


def test_ehr_launch_asks_for_pkce_v2_scopes_and_lands_on_the_patient(
    clinician: Clinician,
    clinician_app: ClinicianApp,
    chart: Chart,
    ehr: SmartAuthServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    page = clinician.launch(chart.patient)
    assert page.status_code == 200, page.text
    assert "Tanaka" in page.text and "MRN-0042" in page.text  # the banner
    assert chart.eyelid in page.text and chart.forearm in page.text
    assert chart.other_photo not in page.text
    (asked,) = ehr.authorize_requests
    assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) == 43
    assert asked["aud"] == ehr.fhir_base and asked["launch"] and asked["client_id"] == CLIENT_ID
    assert len(asked["state"]) >= 22  # ≥ 122 bits of base64url
    scopes = asked["scope"].split()
    assert {"launch", "openid", "fhirUser", "patient/Observation.c", "patient/Media.rs"} <= set(scopes)
    assert "launch/patient" not in scopes
    # The cookie is a random handle: no token in it, HttpOnly.
    cookie = next(c for c in clinician.http.cookies.jar if c.name == "photomarker_clinician")
    assert cookie.has_nonstandard_attr("HttpOnly")
    with clinician_app.app.app_context(), services().jobs.engine.connect() as connection:
        row = connection.execute(select(launches)).first()
    assert row is not None and ehr.fhir_tokens_seen[0].encode() not in row.ciphertext
    # The EHR's smart_style_url, checked value by value, as CSS variables.
    style = clinician.http.get(f"{page.url}style.css")
    assert "--ehr-background: #f7f9fc;" in style.text and "--ehr-font-body: Georgia, serif;" in style.text
    assert "}" not in style.text.split("}", 1)[1]
    # Strict headers: the app's own assets only, framed only by the EHR.
    policy = page.headers["Content-Security-Policy"]
    assert f"frame-ancestors {ehr.origin}" in policy and "script-src 'self'" in policy
    assert "X-Frame-Options" not in page.headers and page.headers["Cache-Control"] == "no-store"
    # No token in any log line of the app or its HTTP clients (the test EHR's own logs aside).
    ours = [
        r.getMessage() for r in caplog.records if not r.name.startswith(("authlib.oauth2", "authlib.oidc"))
    ]
    for token in ehr._tokens.values():
        assert not [line for line in ours if token.access_token in line or str(token.refresh_token) in line]
    # Nor the patient, from this app's own modules (httpx logs URLs at INFO, which the web process
    # turns off; workers.fhir_client names the resource read at DEBUG).
    app_lines = [
        r.getMessage() for r in caplog.records if r.name.startswith(("plugin.smart", "plugin.clinician"))
    ]
    assert not [line for line in app_lines if chart.patient.split("/")[1] in line or "Tanaka" in line]
    (login,) = _events(clinician_app, "smart.login")
    assert login.record.agent_who == f"clinician:{ehr.fhir_base}/Practitioner/dr-sato"  # type: ignore[attr-defined]
    assert login.record.patient == chart.patient  # type: ignore[attr-defined]


def test_no_banner_when_the_ehr_shows_one(clinician: Clinician, chart: Chart, ehr: SmartAuthServer) -> None:
    ehr.need_patient_banner = False
    page = clinician.launch(chart.patient)
    assert page.status_code == 200 and "Tanaka" not in page.text and 'aria-label="Patient"' not in page.text


def test_v1_scopes_when_the_server_lists_only_v1(
    clinician: Clinician, chart: Chart, ehr: SmartAuthServer
) -> None:
    ehr.scopes_supported = list(V1_SCOPES)
    assert clinician.launch(chart.patient).status_code == 200
    scopes = ehr.authorize_requests[-1]["scope"].split()
    assert "patient/Observation.write" in scopes and "patient/Observation.read" in scopes
    assert not [s for s in scopes if s.endswith((".rs", ".c", ".r"))]


def _authorize_answer(clinician: Clinician, chart: Chart) -> str:
    """Launch, and stop at the authorization server's redirect back to the app (not followed)."""
    first = clinician.http.get(clinician.ehr.launch_url(chart.patient), follow_redirects=False)
    authorize = clinician.http.get(first.headers["Location"], follow_redirects=False)
    assert authorize.status_code == 302, authorize.text
    return str(authorize.headers["Location"])


def test_a_replayed_or_foreign_state_is_refused(
    clinician: Clinician, chart: Chart, ehr: SmartAuthServer
) -> None:
    callback = _authorize_answer(clinician, chart)
    assert clinician.http.get(callback).status_code == 200
    replay = clinician.http.get(callback)
    assert replay.status_code == 400 and "This sign-in answer cannot be used" in replay.text
    assert "Traceback" not in replay.text
    forged = clinician.http.get(callback.split("?")[0] + "?state=forged&code=x")
    assert forged.status_code == 400 and "launch-state-invalid" in forged.text
    # Another browser (no cookie) cannot finish this browser's launch.
    callback = _authorize_answer(clinician, chart)
    with httpx.Client() as stranger:
        assert stranger.get(callback).status_code == 400


def test_a_pkce_verifier_that_does_not_match_is_refused_by_the_server(
    clinician: Clinician, chart: Chart, ehr: SmartAuthServer
) -> None:
    first = _authorize_answer(clinician, chart)
    second = _authorize_answer(clinician, chart)
    # The code of the second launch with the state (and so the verifier) of the first.
    code = parse_qs(urlsplit(second).query)["code"][0]
    state = parse_qs(urlsplit(first).query)["state"][0]
    page = clinician.http.get(first.split("?")[0], params={"state": state, "code": code})
    assert page.status_code == 502 and "Sign-in could not be completed" in page.text
    assert ehr.token_errors == ["invalid_grant"]
    # And straight at the token endpoint: Authlib's CodeChallenge refuses a wrong verifier.
    code = parse_qs(urlsplit(_authorize_answer(clinician, chart)).query)["code"][0]
    answer = httpx.post(
        f"{ehr.origin}/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "client_id": CLIENT_ID,
            "redirect_uri": ehr.redirect_uris[0],
            "code_verifier": "x" * 64,
        },
    )
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


def test_refusals_each_get_a_clear_page(clinician: Clinician, chart: Chart, ehr: SmartAuthServer) -> None:
    ehr.decision = "deny"
    denied = clinician.launch(chart.patient)
    assert denied.status_code == 403 and "Access was not granted" in denied.text

    ehr.decision = "approve"
    evil = clinician.http.get(
        f"{ehr.app_url}/launch", params={"iss": "http://169.254.169.254/fhir", "launch": "x"}
    )
    assert evil.status_code == 403 and "not set up for Photomarker" in evil.text

    standalone = clinician.http.get(f"{ehr.app_url}/launch", params={"iss": ehr.fhir_base})
    assert standalone.status_code == 422 and "No patient was selected" in standalone.text
    assert "launch/patient" in ehr.authorize_requests[-1]["scope"].split()

    ehr.sign_with_wrong_key = True
    forged = clinician.launch(chart.patient)
    assert forged.status_code == 401 and "Your identity could not be confirmed" in forged.text
    for page in (denied, evil, standalone, forged):
        assert "Traceback" not in page.text and page.headers["Content-Type"].startswith("text/html")


def test_an_unreachable_fhir_server_gets_a_clear_page(tmp_path: Path, ehr: SmartAuthServer) -> None:
    dead = "http://127.0.0.1:9/fhir"
    app = make_app(tmp_path, ehr, smart_allowed_issuers=f"{ehr.fhir_base} {dead}")
    page = app.test_client().get("/launch", query_string={"iss": dead, "launch": "x"})
    assert page.status_code == 502
    assert "could not be reached" in page.get_data(as_text=True)
    unregistered = make_app(tmp_path / "other", ehr, smart_client_id=None).test_client()
    page = unregistered.get("/launch", query_string={"iss": ehr.fhir_base, "launch": "x"})
    assert page.status_code == 500 and "PHOTOMARKER_SMART_CLIENT_ID is not set" in page.get_data(as_text=True)


def test_the_access_token_is_refreshed_when_it_runs_out(
    clinician: Clinician, chart: Chart, ehr: SmartAuthServer
) -> None:
    ehr.access_token_lifetime_s = 30  # inside the app's refresh margin: the next page refreshes
    first = clinician.launch(chart.patient)
    assert first.status_code == 200
    again = clinician.http.get(str(first.url))
    assert again.status_code == 200 and ehr.refreshes >= 1
    # An expired token without a working refresh ends the session plainly.
    ehr.expire_access_tokens()
    for token in list(ehr._tokens.values()):
        token.revoked = True
    ended = clinician.http.get(str(first.url))
    assert ended.status_code == 401 and "Your session with the EHR has ended" in ended.text


def test_a_403_from_the_fhir_server_gets_one_refresh_then_ends_the_session(
    clinician: Clinician, clinician_app: ClinicianApp, chart: Chart, ehr: SmartAuthServer
) -> None:
    page = clinician.launch(chart.patient)
    assert page.status_code == 200
    ehr.fhir_refusal = 403  # the EHR withdrew this app's access: a new token is refused all the same
    ended = clinician.http.get(str(page.url))
    assert ended.status_code == 401 and "Your session with the EHR has ended" in ended.text
    assert "HTTP 403" in ended.text and "Back to the patient&#39;s photos" not in ended.text
    assert ehr.refreshes == 1  # one renewal, one repeat of the request, then the end: never a loop
    (event,) = _events(clinician_app, "smart.session-ended")
    assert "403" in str(event.record.outcome_reason)  # type: ignore[attr-defined]
    again = clinician.http.get(str(page.url))
    assert again.status_code == 401 and ehr.refreshes == 1
    assert len(_events(clinician_app, "smart.session-ended")) == 1


def test_a_page_and_its_thumbnails_refresh_once_together(
    clinician: Clinician, clinician_app: ClinicianApp, chart: Chart, ehr: SmartAuthServer
) -> None:
    ehr.access_token_lifetime_s = 600
    page = clinician.launch(chart.patient)
    launch_id = str(page.url).rstrip("/").rsplit("/", 1)[1]
    with clinician_app.app.test_request_context():

        def about_to_expire(launch: Launch) -> None:
            launch.expires_at = time.time() + 5

        launch_store().update(launch_id, about_to_expire)
    urls = [str(page.url)] + [
        f"{page.url}photos/{ref.split('/')[0]}/{ref.split('/')[1]}/image"
        for ref in (chart.eyelid, chart.forearm)
    ] * 3
    with ThreadPoolExecutor(max_workers=len(urls)) as pool:
        statuses = list(pool.map(lambda url: clinician.http.get(url).status_code, urls))
    assert statuses == [200] * len(urls)
    # One refresh (the server rotates refresh tokens: a second one would have failed).
    assert ehr.refreshes == 1
    assert clinician.http.get(str(page.url)).status_code == 200


def test_the_cookie_is_samesite_none_and_secure_over_https(tmp_path: Path, ehr: SmartAuthServer) -> None:
    app = make_app(tmp_path, ehr)
    over_https = app.test_client().get(
        "/launch", query_string={"iss": ehr.fhir_base, "launch": "x"}, base_url="https://photomarker.test"
    )
    cookie = over_https.headers["Set-Cookie"]
    assert "SameSite=None" in cookie and "Secure" in cookie and "HttpOnly" in cookie
    over_http = app.test_client().get("/launch", query_string={"iss": ehr.fhir_base, "launch": "x"})
    cookie = over_http.headers["Set-Cookie"]
    assert "SameSite=Lax" in cookie and "Secure" not in cookie


def test_no_session_no_page(clinician_app: ClinicianApp) -> None:
    page = httpx.get(f"{clinician_app.url}/clinician/abcdefghijklmnop/")
    assert page.status_code == 401 and "Open Photomarker again" in page.text
