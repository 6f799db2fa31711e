"""The whole clinician flow in headless Chromium: launch → photos → Analyse → result → Observation in the EHR.

Screenshots of the patient view and the result panel are saved under ``tests/artifacts/`` (not
tracked) for people to look at.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from audit.events import AuditFilter
from tests.clinician.conftest import ARTIFACTS, Chart, ClinicianApp, fhir_search
from tests.smart_auth_server import SmartAuthServer
from workers.celery_app import services

pytestmark = [pytest.mark.fhir_server, pytest.mark.browser]


def test_launch_analyse_and_the_result_lands_in_the_ehr(
    browser_page: Page, clinician_app: ClinicianApp, chart: Chart, ehr: SmartAuthServer, fhir_server: str
) -> None:
    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 1000})
    page.goto(ehr.launch_url(chart.patient))
    expect(page.get_by_role("heading", name="Photos", exact=True)).to_be_visible()
    banner = page.get_by_role("region", name="Patient")
    expect(banner).to_contain_text("Tanaka")
    expect(banner).to_contain_text("Born 1990-02-03")
    expect(page.get_by_role("img", name=f"Photo {chart.eyelid}")).to_be_visible()
    expect(page.get_by_role("img", name=f"Photo {chart.forearm}")).to_be_visible()
    # Every thumbnail really loaded (through the app, from the EHR, with the clinician's token).
    page.wait_for_function("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    trend = page.get_by_role("img", name="Haemoglobin (g/dL)")
    expect(trend).to_be_visible()
    expect(page.get_by_role("img", name="Three Item Severity (0–9)")).to_be_visible()
    expect(page.locator("#not-saved")).to_have_count(0)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "clinician-patient-view.png"), full_page=True)

    # Keyboard: tick the eyelid photo and submit the selection with Enter on the button.
    page.get_by_label(f"Select {chart.eyelid}").check()
    page.get_by_role("button", name="Analyse selected photos").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Analysis")).to_be_visible()
    result = page.get_by_role("article", name="Haemoglobin estimated from conjunctival photograph (AI)")
    expect(result).to_be_visible(timeout=60_000)
    expect(result).to_contain_text("g/dL")
    expect(result).to_contain_text("Reference model — not for clinical use")
    expect(result).to_contain_text("Model: Conjunctival haemoglobin estimator")
    expect(page.get_by_role("article", name="Photo quality for analysis (AI)")).to_contain_text("Acceptable")
    saved_link = result.get_by_role("link", name="Observation/")
    observation_ref = saved_link.inner_text()
    result.get_by_text("Show the Grad-CAM heat map").click()
    heatmap = result.get_by_role("img", name=re.compile("Heat map over the photo"))
    expect(heatmap).to_be_visible()
    page.wait_for_function("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    page.screenshot(path=str(ARTIFACTS / "clinician-result-panel.png"), full_page=True)

    # The Observation is in the EHR: the launch patient, derived from the photo analysed.
    observation = fhir_search(fhir_server, "Observation", _id=observation_ref.split("/")[1])[0]
    assert observation["subject"] == {"reference": chart.patient}
    assert observation["derivedFrom"][0]["reference"].startswith(chart.eyelid)
    assert observation["status"] == "preliminary"
    # It was written with the clinician's token (the gateway checks it), and the link opens it.
    assert ehr.fhir_tokens_seen
    saved_link.click()
    expect(page.get_by_role("heading", name=observation_ref)).to_be_visible()
    expect(page.locator("pre.json")).to_contain_text(chart.patient)

    # Back on the patient view: still two photos (the heat map is not one), the new Hb in the trend.
    page.get_by_role("link", name="Back to the patient's photos").click()
    expect(page.locator("li.card")).to_have_count(2)
    hb_trend = page.get_by_role("region", name="Haemoglobin (g/dL)")
    hb_trend.get_by_text("Show as a table").click()
    expect(hb_trend.locator("tbody tr")).to_have_count(3)
    expect(hb_trend.get_by_role("link", name=observation_ref)).to_be_visible()

    with clinician_app.app.app_context():
        events = [e.record.event for e in services().audit_store.iter_events(AuditFilter())]
    for expected in (
        "smart.launch",
        "smart.login",
        "clinician.patient-view",
        "job.requested",
        "job.finished",
    ):
        assert expected in events, expected


def test_the_app_runs_inside_the_ehr_frame(
    browser_page: Page, clinician_app: ClinicianApp, chart: Chart, ehr: SmartAuthServer
) -> None:
    page = browser_page
    page.goto(f"{ehr.origin}/ehr?patient={chart.patient}")
    frame = page.frame_locator("#app")
    expect(frame.get_by_role("heading", name="Photos", exact=True)).to_be_visible()
    expect(frame.get_by_role("region", name="Patient")).to_contain_text("Tanaka")
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
    page.get_by_role("button", name="Analyse this photo").nth(1).click()  # the forearm (a DocumentReference)
    quality = page.get_by_role("article", name="Photo quality for analysis (AI)")
    expect(quality).to_be_visible(timeout=60_000)
    expect(quality).to_contain_text("Not saved to the record.")
    # The downscaled forearm is too soft for the gate: a retake, with the advice a patient would get.
    expect(quality).to_contain_text("Retake the photo")
    expect(quality).to_contain_text("Hold the phone still")
    expect(page.locator("#not-saved")).to_contain_text("These results are shown but not saved")
    page.screenshot(path=str(ARTIFACTS / "clinician-not-saved.png"), full_page=True)
