"""A worker's batch, run in this process: photos go through together, each job ends on its own,
a second delivery changes nothing, and every step is in the audit trail."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask

from plugin.api.tokens import ApiTokens
from plugin.app import create_app
from plugin.settings import load_settings
from tests.tumour.conftest import lesion_cut_out
from tests.workers.conftest import FAST, media_resource, small_photo
from workers.batching import run_batch
from workers.celery_app import services


def make_app(tmp_path: Path, **overrides: Any) -> tuple[Flask, str]:
    values = {k: v for k, v in FAST.items() if k.startswith(("inference", "device", "batch"))}
    app = create_app(load_settings(data_dir=tmp_path / "data", **values, **overrides))
    with app.app_context():
        token = ApiTokens(services().jobs).create("batch-test")
    return app, token


def submit(app: Flask, token: str, body: dict[str, Any]) -> str:
    response = app.test_client().post("/api/v1/jobs", json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 202, response.get_data(as_text=True)
    job_id: str = response.get_json()["id"]
    return job_id


def test_without_a_fhir_server_the_result_bundle_is_kept_and_served(tmp_path: Path) -> None:
    app, token = make_app(tmp_path)
    photos = [media_resource(small_photo(seed), "Patient/p1") for seed in range(3)]
    job_ids = [submit(app, token, {"resource": photo}) for photo in photos]
    with app.app_context():
        outcome = run_batch(services(), job_ids[1])
        # One message did all three: they were waiting in the same queue.
        assert sorted(outcome.done) == sorted(job_ids)
        jobs = [services().jobs.get(job_id) for job_id in job_ids]
        assert {job.batch_owner for job in jobs if job} == {job_ids[1]}
        # The other two messages arrive later and find nothing to do.
        assert run_batch(services(), job_ids[0]).done == ()
        assert run_batch(services(), job_ids[1]).done == ()

    shown = app.test_client().get(f"/api/v1/jobs/{job_ids[0]}", headers={"Authorization": f"Bearer {token}"})
    job = shown.get_json()
    assert job["status"] == "done" and job["written"] == []
    bundle = job["result"]
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
    kinds = {entry["resource"]["resourceType"] for entry in bundle["entry"]}
    assert {"Media", "Observation", "Provenance"} <= kinds  # a resource without an id: its Media too

    with app.app_context():
        events = [(e.record.event, e.record.patient) for e in services().audit_store.iter_events()]
    for what in ("job.requested", "job.started", "job.finished"):
        assert events.count((what, "Patient/p1")) == 3, what


@pytest.mark.fhir_server
def test_a_missing_photo_fails_at_once_with_its_reason_and_the_rest_of_the_batch_goes_on(
    tmp_path: Path, fhir_server: str
) -> None:
    app, token = make_app(tmp_path, fhir_base_url=fhir_server)
    patient = httpx.post(f"{fhir_server}/Patient", json={"resourceType": "Patient"}).json()["id"]
    photo = small_photo(7)
    media = httpx.post(f"{fhir_server}/Media", json=media_resource(photo, f"Patient/{patient}")).json()
    good = submit(app, token, {"reference": f"Media/{media['id']}"})
    missing = submit(app, token, {"reference": "Media/does-not-exist"})
    with app.app_context():
        outcome = run_batch(services(), good)
        assert outcome.done == (good,) and outcome.failed == (missing,) and outcome.retry_in is None
        failed = services().jobs.get(missing)
        assert failed is not None and failed.error_code == "fhir-server-error" and failed.attempts == 1
        assert "404" in (failed.error_message or "")
        done = services().jobs.get(good)
        assert done is not None and done.patient == f"Patient/{patient}"
        assert any(ref.startswith("Observation/") for ref in done.written)
        reasons = [
            e.record.outcome_reason
            for e in services().audit_store.iter_events()
            if e.record.event == "job.failed"
        ]
        assert reasons and reasons[0] and reasons[0].startswith("fhir-server-error")

    # The same photo again (a client that submits twice): the same resources, nothing new.
    count = {"subject": f"Patient/{patient}", "_summary": "count"}
    before = httpx.get(f"{fhir_server}/Observation", params=count).json()["total"]
    again = submit(app, token, {"reference": f"Media/{media['id']}"})
    with app.app_context():
        assert run_batch(services(), again).done == (again,)
        repeated = services().jobs.get(again)
        assert repeated is not None and repeated.written == done.written
        assert services().jobs.requeue(good) is None  # a done job is never re-queued
    assert httpx.get(f"{fhir_server}/Observation", params=count).json()["total"] == before


def test_inline_photo_bytes_are_checked_against_their_hash_at_submission(tmp_path: Path) -> None:
    app, token = make_app(tmp_path)
    photo = small_photo(1)
    resource = media_resource(photo, "Patient/p1")
    resource["content"]["hash"] = base64.b64encode(hashlib.sha1(b"other").digest()).decode()
    response = app.test_client().post(
        "/api/v1/jobs", json={"resource": resource}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 422


def test_an_unreachable_fhir_server_is_retried_with_backoff_then_the_job_fails_with_the_reason(
    tmp_path: Path,
) -> None:
    from tests.fhir_server import free_port

    app, token = make_app(
        tmp_path,
        fhir_base_url=f"http://127.0.0.1:{free_port()}/fhir",
        fhir_retries=0,
        job_max_retries=1,
        job_retry_backoff_s=3,
    )
    job_id = submit(app, token, {"reference": "Media/1"})
    with app.app_context():
        first = run_batch(services(), job_id)
        assert first.retry_in == pytest.approx(3) and first.done == first.failed == ()
        waiting = services().jobs.get(job_id)
        assert waiting is not None and waiting.status == "running" and waiting.transient_failures == 1
        second = run_batch(services(), job_id)  # the message comes back after the backoff
        assert second.failed == (job_id,) and second.retry_in is None
        failed = services().jobs.get(job_id)
        assert failed is not None and failed.error_code == "fhir-server-error"
        assert "unreachable" in (failed.error_message or "") and failed.attempts == 2


@pytest.mark.fhir_server
def test_a_worker_weighs_a_tumour_result_with_the_patients_age_and_names_the_patient_as_a_source(
    tmp_path: Path, fhir_server: str
) -> None:
    app, token = make_app(tmp_path, fhir_base_url=fhir_server)
    patient = httpx.post(
        f"{fhir_server}/Patient", json={"resourceType": "Patient", "birthDate": "1950-05-20"}
    ).json()["id"]
    lesion = lesion_cut_out()
    media = {
        **media_resource(lesion, f"Patient/{patient}"),
        "createdDateTime": "2026-11-02T10:00:00Z",
        "bodySite": {"coding": [{"system": "http://snomed.info/sct", "code": "77568009"}]},
    }
    media["content"] = {**media["content"], "contentType": "image/png"}
    stored = httpx.post(f"{fhir_server}/Media", json=media).json()
    job = submit(app, token, {"reference": f"Media/{stored['id']}"})
    with app.app_context():
        assert run_batch(services(), job).done == (job,)
        done = services().jobs.get(job)
    assert done is not None
    (tumour_ref,) = [
        ref
        for ref in done.written
        if ref.startswith("Observation/")
        and httpx.get(f"{fhir_server}/{ref}").json()["code"]["coding"][0]["code"] == "skin-tumour-malignancy"
    ]
    tumour = httpx.get(f"{fhir_server}/{tumour_ref}").json()
    notes = [n["text"] for n in tumour["note"]]
    # The site was coded without a display: the note names it in words all the same.
    assert any("(age 76 years; body site Back structure)" in n for n in notes), notes
    assert "skin-tumour-malignancy-photo-only" in {
        c["code"]["coding"][0]["code"] for c in tumour["component"]
    }
    (provenance,) = [
        httpx.get(f"{fhir_server}/{ref}").json() for ref in done.written if ref.startswith("Provenance/")
    ]
    sources = {e["what"]["reference"] for e in provenance["entity"]}
    assert f"Patient/{patient}" in sources
