"""Analyse from the patient view: jobs made as the API makes them, saved with the clinician's token or not."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from PIL import Image

from tests.clinician.conftest import Chart, Clinician, ClinicianApp, fhir_search
from tests.smart_auth_server import SmartAuthServer
from workers.celery_app import services

pytestmark = pytest.mark.fhir_server

_RUN = re.compile(r"/clinician/[^/]+/runs/[^/?\"]+")


def _wait_for_results(clinician: Clinician, run_url: str) -> httpx.Response:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = clinician.http.get(run_url + "/status.json").json()
        if status["finished"]:
            return clinician.http.get(run_url)
        time.sleep(0.3)
    raise AssertionError("the analysis did not finish in 60 s")


def _hb_observations(fhir_server: str, patient: str) -> list[dict[str, object]]:
    found = fhir_search(fhir_server, "Observation", subject=patient)
    return [
        o
        for o in found
        if any(c.get("code") == "hb-estimate-conjunctiva-photo" for c in o["code"]["coding"])  # type: ignore[index, union-attr]
        and o.get("device")
    ]


def test_without_write_scope_results_are_shown_not_saved(
    clinician: Clinician, clinician_app: ClinicianApp, chart: Chart, ehr: SmartAuthServer, fhir_server: str
) -> None:
    ehr.withheld_scopes = {"patient/Observation.c", "patient/Provenance.c"}
    page = clinician.launch(chart.patient)
    assert "Results will be shown but not saved to the record" in page.text
    assert "Observation, Provenance" in page.text
    before = len(_hb_observations(fhir_server, chart.patient))
    answer = clinician.http.post(
        str(page.url) + "analyse", data={"csrf_token": clinician.csrf(page), "only": chart.eyelid}
    )
    assert answer.status_code == 200 and _RUN.search(str(answer.url))
    result = _wait_for_results(clinician, str(answer.url))
    assert "These results are shown but not saved" in result.text
    assert "Haemoglobin estimated from conjunctival photograph (AI)" in result.text
    assert "Not saved to the record." in result.text and "Saved in the record as" not in result.text
    assert len(_hb_observations(fhir_server, chart.patient)) == before
    with clinician_app.app.app_context():
        (job,) = services().jobs.list_jobs(limit=1)
    assert job.status == "done" and job.fhir_base is None and job.credential is None
    # The unsaved heat map is served from the job's own Bundle, re-encoded.
    heatmap = re.search(r'src="(/clinician/[^"]+/heatmaps/[^"]+)"', result.text)
    assert heatmap is not None
    image = clinician.http.get(clinician_app.url + heatmap.group(1))
    assert image.status_code == 200 and image.headers["Content-Type"] == "image/jpeg"


def test_a_photo_of_another_patient_is_refused(
    clinician: Clinician, clinician_app: ClinicianApp, chart: Chart
) -> None:
    page = clinician.launch(chart.patient)
    csrf = clinician.csrf(page)
    refused = clinician.http.post(
        str(page.url) + "analyse", data={"csrf_token": csrf, "only": chart.other_photo}
    )
    assert refused.status_code == 403 and "This belongs to another patient" in refused.text
    kind, ident = chart.other_photo.split("/")
    image = clinician.http.get(f"{page.url}photos/{kind}/{ident}/image")
    assert image.status_code == 403
    with clinician_app.app.app_context():
        assert services().jobs.list_jobs() == []
    no_token = clinician.http.post(str(page.url) + "analyse", data={"only": chart.eyelid})
    assert no_token.status_code == 403 and "The form has expired" in no_token.text


def test_thumbnails_are_small_and_carry_no_metadata(clinician: Clinician, chart: Chart) -> None:
    page = clinician.launch(chart.patient)
    kind, ident = chart.forearm.split("/")
    image = clinician.http.get(f"{page.url}photos/{kind}/{ident}/image")
    assert image.status_code == 200 and image.headers["Content-Type"] == "image/jpeg"
    assert image.headers["Cache-Control"] == "no-store"
    from io import BytesIO

    decoded = Image.open(BytesIO(image.content))
    assert max(decoded.size) <= 320 and not decoded.info.get("exif") and not decoded.getexif()
