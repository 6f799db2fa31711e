"""The whole clinician flow in headless Chromium: launch → photos → Analyse → result → Observation in the EHR.

Every page is checked with axe-core (no serious or critical violation) and for failed requests (a
missing favicon was one). Screenshots of the patient view, a result, an abstained Hb, a skin
result and the session-ended page are saved under ``tests/artifacts/`` (not tracked).
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from audit.events import AuditFilter
from fhir_mappings.device import REFERENCE_NAME_SUFFIX
from tests.browser import assert_accessible, failed_requests
from tests.clinician.conftest import (
    ARTIFACTS,
    CONJUNCTIVA,
    LOCAL_SYSTEM,
    REPO,
    Chart,
    ClinicianApp,
    fhir_search,
    g_dl,
    live_app,
    post_resource,
)
from tests.smart_auth_server import SmartAuthServer
from workers.celery_app import services

pytestmark = [pytest.mark.fhir_server, pytest.mark.browser]

HB = "Haemoglobin estimated from conjunctival photograph (AI)"
NEVER_ABSTAIN = {"abstain_max_spread": 1e9, "abstain_max_ood": 1e9}
ALWAYS_ABSTAIN = {"abstain_max_spread": 1e-9, "abstain_max_ood": 1e-9}
_ALL_IMAGES_LOADED = "() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"


def _screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def _fits_the_width(page: Page) -> bool:
    wide = page.evaluate(
        "() => Array.from(document.querySelectorAll('body *'))"
        ".filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)"
        ".map(e => e.tagName + '.' + e.className).slice(0, 5)"
    )
    assert wide == [], wide
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def _events(app: ClinicianApp, name: str) -> list[object]:
    with app.app.app_context():
        return list(services().audit_store.iter_events(AuditFilter(event=name)))


def test_launch_analyse_and_the_result_lands_in_the_ehr(
    browser_page: Page, tmp_path: Path, chart: Chart, ehr: SmartAuthServer, fhir_server: str
) -> None:
    page = browser_page
    failures = failed_requests(page)
    page.set_viewport_size({"width": 1280, "height": 1000})
    with live_app(tmp_path, ehr, **NEVER_ABSTAIN) as app:
        page.goto(ehr.launch_url(chart.patient))
        expect(page.get_by_role("heading", name="Photos", exact=True)).to_be_visible()
        banner = page.get_by_role("region", name="Patient")
        expect(banner).to_contain_text("Tanaka")
        expect(banner).to_contain_text("Born 1990-02-03")
        # Human labels: date, then bodySite.text, else the coding's display; the id in a details line.
        eyelid, forearm = (
            "Photo of 20 Nov 2026 · Conjunctival structure",
            "Photo of 20 Nov 2026 · Left forearm",
        )
        for label in (eyelid, forearm, "Photo of 2 Oct 2026"):
            expect(page.get_by_role("img", name=label, exact=True)).to_be_visible()
        expect(page.locator("li.card").filter(has_text=forearm).locator(".details")).to_have_text(
            chart.left_forearm
        )
        expect(page.get_by_text(re.compile(r"(Media|DocumentReference)/")).first).to_have_class("details")
        page.wait_for_function(
            _ALL_IMAGES_LOADED
        )  # through the app, from the EHR, with the clinician's token
        expect(page.get_by_role("img", name="Haemoglobin (g/dL)")).to_be_visible()
        expect(page.get_by_role("img", name="Three Item Severity (0–9)")).to_be_visible()
        expect(page.locator("#not-saved")).to_have_count(0)
        expect(page.locator("#reference-notice")).to_have_count(0)  # the seeded results name no model
        assert_accessible(page, "patient view")

        # Keyboard: tick the eyelid photo and submit the selection with Enter on the button.
        page.get_by_label(f"Select {eyelid}").check()
        page.get_by_role("button", name="Analyse selected photos").focus()
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="Analysis")).to_be_visible()
        result = page.get_by_role("article", name=HB)
        expect(result).to_be_visible(timeout=60_000)
        expect(page.get_by_role("heading", name=eyelid)).to_be_visible()
        expect(result.locator(".headline")).to_contain_text("g/dL")
        expect(result).to_contain_text("Reference model — not for clinical use")
        expect(result).to_contain_text("Model: Conjunctival haemoglobin estimator")
        expect(page.locator("#reference-notice")).to_contain_text("reference or research-only models")
        expect(page.get_by_role("article", name="Photo quality for analysis (AI)")).to_contain_text(
            "Acceptable"
        )
        saved_link = result.get_by_role("link", name="Observation/")
        observation_ref = saved_link.inner_text()
        result.get_by_text("Show the Grad-CAM heat map").click()
        expect(result.get_by_role("img", name=re.compile("Heat map over the photo"))).to_be_visible()
        page.wait_for_function(_ALL_IMAGES_LOADED)
        assert_accessible(page, "result page")
        _screenshot(page, "clinician-result.png")

        # The Observation is in the EHR: the launch patient, derived from the photo analysed, and its
        # Device says in its name that the model is a reference model.
        observation = fhir_search(fhir_server, "Observation", _id=observation_ref.split("/")[1])[0]
        assert observation["subject"] == {"reference": chart.patient}
        assert observation["derivedFrom"][0]["reference"].startswith(chart.eyelid)
        assert observation["status"] == "preliminary"
        device = fhir_search(fhir_server, "Device", _id=observation["device"]["reference"].split("/")[1])[0]
        assert device["deviceName"][0]["name"].endswith(REFERENCE_NAME_SUFFIX)
        assert ehr.fhir_tokens_seen  # written with the clinician's token (the gateway checks it)
        saved_link.click()
        expect(page.get_by_role("heading", name="The result as stored in the EHR")).to_be_visible()
        expect(page.locator("pre.json")).to_contain_text(chart.patient)
        assert_accessible(page, "stored resource page")

        # Back on the patient view: the new Hb in the trend and under its photo, and the page says
        # that a reference model's result is on it.
        page.get_by_role("link", name="Back to the patient's photos").click()
        expect(page.locator("li.card")).to_have_count(3)  # the heat map is not a photo
        expect(page.locator("#reference-notice")).to_be_visible()
        earlier = page.get_by_role("region", name=f"Earlier results for {eyelid}")
        expect(earlier).to_contain_text("g/dL")
        hb_trend = page.get_by_role("region", name="Haemoglobin (g/dL)")
        hb_trend.get_by_text("Show as a table").click()
        expect(hb_trend.locator("tbody tr")).to_have_count(3)
        expect(hb_trend.get_by_role("link", name=observation_ref)).to_be_visible()
        page.wait_for_function(_ALL_IMAGES_LOADED)
        assert_accessible(page, "patient view with a result")
        _screenshot(page, "clinician-patient-view.png")

        # A tablet in portrait: nothing runs off the side.
        page.set_viewport_size({"width": 768, "height": 1024})
        assert _fits_the_width(page)
    assert failures == []  # the favicon included
    for expected in (
        "smart.launch",
        "smart.login",
        "clinician.patient-view",
        "job.requested",
        "job.finished",
    ):
        assert _events(app, expected), expected


def test_an_abstained_hb_is_no_conclusion_anywhere(
    browser_page: Page, tmp_path: Path, ehr: SmartAuthServer, fhir_server: str
) -> None:
    """Headline "No conclusion" with the reason; a hollow grey trend point; "abstained" in the table."""
    patient = post_resource(
        fhir_server, {"resourceType": "Patient", "name": [{"family": "Abe", "given": ["Kenji"]}]}
    )
    png = (REPO / "examples" / "eyelid.png").read_bytes()
    photo = post_resource(
        fhir_server,
        {
            "resourceType": "Media",
            "status": "completed",
            "subject": {"reference": patient},
            "createdDateTime": "2026-12-01T09:00:00+09:00",
            "bodySite": {"coding": [CONJUNCTIVA], "text": "Right lower eyelid"},
            "content": {"contentType": "image/png", "data": base64.b64encode(png).decode()},
        },
    )
    post_resource(
        fhir_server,
        {
            "resourceType": "Observation",
            "status": "preliminary",
            "code": {"coding": [{"system": LOCAL_SYSTEM, "code": "hb-estimate-conjunctiva-photo"}]},
            "subject": {"reference": patient},
            "effectiveDateTime": "2026-09-01T10:00:00+09:00",
            "derivedFrom": [{"reference": photo}],
            "valueQuantity": g_dl(11.1),
        },
    )
    page = browser_page
    failures = failed_requests(page)
    page.set_viewport_size({"width": 1280, "height": 1000})
    with live_app(tmp_path, ehr, **ALWAYS_ABSTAIN):
        page.goto(ehr.launch_url(patient))
        page.get_by_role("button", name="Analyse this photo").click()
        result = page.get_by_role("article", name=HB)
        expect(result).to_be_visible(timeout=60_000)
        headline = result.locator(".headline")
        expect(headline).to_have_text(re.compile(r"^\W*No conclusion$"))
        expect(result.locator(".reason")).to_contain_text("The model abstained")
        expect(result).not_to_contain_text("anaemia range")  # no Low flag from numbers not to be relied on
        withheld = result.locator("details.withheld")
        expect(withheld).to_contain_text("not a result")
        expect(withheld.get_by_text("Model output:")).to_be_hidden()  # closed until asked for
        expect(page.locator("#reference-notice")).to_be_visible()
        assert_accessible(page, "abstained result")
        page.wait_for_function(_ALL_IMAGES_LOADED)
        _screenshot(page, "clinician-abstained-hb.png")

        page.get_by_role("link", name="Back to the patient's photos").click()
        earlier = page.get_by_role(
            "region", name="Earlier results for Photo of 1 Dec 2026 · Right lower eyelid"
        )
        expect(earlier).to_contain_text("No conclusion — the model abstained")
        hb_trend = page.get_by_role("region", name="Haemoglobin (g/dL)")
        expect(hb_trend.locator("svg .point.no-conclusion circle")).to_have_count(1)
        expect(hb_trend.locator("svg .point rect")).to_have_count(1)  # only the concluded 11.1
        expect(hb_trend.locator(".legend")).to_contain_text("not plotted as a value")
        hb_trend.get_by_text("Show as a table").click()
        expect(hb_trend.locator("tbody tr.no-conclusion")).to_contain_text(
            "No conclusion — the model abstained"
        )
        assert_accessible(page, "patient view with an abstained result")
    assert failures == []


def test_skin_results_in_one_probability_format_with_whole_labels(
    browser_page: Page, clinician_app: ClinicianApp, chart: Chart, ehr: SmartAuthServer
) -> None:
    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 1000})
    page.goto(ehr.launch_url(chart.patient))
    page.get_by_role("button", name="Analyse this photo (Photo of 20 Nov 2026 · Left forearm)").click()
    diagnosis = page.get_by_role("article", name="Skin disease diagnosis probabilities (AI)")
    expect(diagnosis).to_be_visible(timeout=90_000)
    label = diagnosis.get_by_role("rowheader", name="Eczema herpeticum (Kaposi varicelliform eruption)")
    expect(label).to_be_visible()
    # Wrapped, not cut: the whole label is laid out inside its cell.
    assert label.evaluate("cell => cell.scrollWidth <= cell.clientWidth")
    results = page.locator(".result-list").inner_text()
    assert not re.search(
        r"(?<![\d.])0\.\d+(?![\d.])", results.split("Photo quality")[0]
    )  # no 0.97 beside 97 %
    assert re.search(r"Most likely: .+ \([<>]?\d+\s%\)", results), results
    tumour = page.get_by_role("article", name="Probability of skin tumour malignancy (AI)")
    expect(tumour.locator(".headline")).to_have_text(re.compile(r"No conclusion$"))
    expect(page.locator("#reference-notice")).to_be_visible()
    page.wait_for_function(_ALL_IMAGES_LOADED)
    assert_accessible(page, "skin results")
    _screenshot(page, "clinician-skin-result.png")
    page.set_viewport_size({"width": 768, "height": 1024})
    assert _fits_the_width(page)
    # The panel's top class and its probability under the photo, in the same format.
    page.get_by_role("link", name="Back to the patient's photos").click()
    earlier = page.get_by_role("region", name="Earlier results for Photo of 20 Nov 2026 · Left forearm")
    expect(earlier).to_contain_text(re.compile(r"Skin condition probabilities \(AI\):\s+\S.* [<>]?\d+\s%"))


def test_a_token_the_ehr_no_longer_accepts_is_renewed_once_then_the_session_ends(
    browser_page: Page, clinician_app: ClinicianApp, chart: Chart, ehr: SmartAuthServer
) -> None:
    page = browser_page
    failures = failed_requests(page)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(ehr.launch_url(chart.patient))
    expect(page.get_by_role("heading", name="Photos", exact=True)).to_be_visible()
    patient_url = page.url
    # The EHR stops accepting the token before its stated expiry: one refresh, and the page works.
    ehr.expire_access_tokens()
    answer = page.goto(patient_url)
    assert answer is not None and answer.status == 200 and ehr.refreshes == 1
    page.wait_for_function(_ALL_IMAGES_LOADED)
    expect(page.get_by_role("heading", name="Photos", exact=True)).to_be_visible()
    # Now nothing is accepted and the refresh token is revoked too: one refresh attempt, then the end.
    ehr.expire_access_tokens()
    for token in list(ehr._tokens.values()):
        token.revoked = True
    answer = page.goto(patient_url)
    assert answer is not None and answer.status == 401
    expect(page.get_by_role("heading", name="Your session with the EHR has ended")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("Open Photomarker again from the patient's chart.")
    expect(page.get_by_role("link", name="Back to the patient's photos")).to_have_count(0)  # no loop
    assert ehr.token_errors == ["invalid_grant"]
    assert len(_events(clinician_app, "smart.session-ended")) == 1
    assert_accessible(page, "session-ended page")
    _screenshot(page, "clinician-session-ended.png")
    # The launch is forgotten: reloading asks the EHR for nothing and ends nothing twice.
    seen = len(ehr.fhir_tokens_seen)
    answer = page.reload()
    assert answer is not None and answer.status == 401
    assert ehr.token_errors == ["invalid_grant"] and len(ehr.fhir_tokens_seen) == seen
    assert len(_events(clinician_app, "smart.session-ended")) == 1
    assert [f for f in failures if "/clinician/" in f and not f.endswith("/")] == []  # the pages only


def test_an_authorization_error_shows_its_oauth_code(
    browser_page: Page, clinician_app: ClinicianApp, chart: Chart, ehr: SmartAuthServer
) -> None:
    page = browser_page
    # The launch as far as the authorization server, which then answers the app with an error.
    launch = page.request.get(ehr.launch_url(chart.patient), max_redirects=0)
    state = re.search(r"[?&]state=([^&]+)", launch.headers["location"])
    assert state is not None
    answer = page.goto(f"{clinician_app.url}/smart/callback?state={state.group(1)}&error=invalid_client")
    assert answer is not None and answer.status == 403
    expect(page.get_by_role("alert")).to_contain_text("(invalid_client)")
    assert_accessible(page, "authorization error page")


def test_the_app_runs_inside_the_ehr_frame(
    browser_page: Page, clinician_app: ClinicianApp, chart: Chart, ehr: SmartAuthServer
) -> None:
    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 1000})
    page.goto(f"{ehr.origin}/ehr?patient={chart.patient}")
    frame = page.frame_locator("#app")
    expect(frame.get_by_role("heading", name="Photos", exact=True)).to_be_visible()
    expect(frame.get_by_role("region", name="Patient")).to_contain_text("Tanaka")
    app_frame = next(f for f in page.frames if f.url.startswith(clinician_app.url))
    assert app_frame.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    response = page.request.get(f"{clinician_app.url}/clinician/static/clinician.css")
    assert response.ok


def test_without_write_scope_the_page_says_why_and_nothing_is_saved(
    browser_page: Page, clinician_app: ClinicianApp, chart: Chart, ehr: SmartAuthServer
) -> None:
    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 900})
    ehr.withheld_scopes = {
        "patient/Observation.c",
        "patient/Device.c",
        "patient/Provenance.c",
        "patient/Media.c",
    }
    page.goto(ehr.launch_url(chart.patient))
    notice = page.locator("#not-saved")
    expect(notice).to_contain_text("Results will be shown but not saved to the record")
    expect(notice).to_contain_text("Observation, Device, Provenance, Media")
    page.get_by_role("button", name="Analyse this photo (Photo of 2 Oct 2026)").click()  # the small forearm
    quality = page.get_by_role("article", name="Photo quality for analysis (AI)")
    expect(quality).to_be_visible(timeout=60_000)
    expect(quality).to_contain_text("Not saved to the record.")
    # The downscaled forearm is too soft for the gate: a retake, with the advice a patient would get.
    expect(quality).to_contain_text("Retake the photo")
    expect(quality).to_contain_text("Hold the phone still")
    expect(page.locator("#not-saved")).to_contain_text("These results are shown but not saved")
    assert_accessible(page, "unsaved result")
    _screenshot(page, "clinician-not-saved.png")
