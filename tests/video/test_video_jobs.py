"""The jobs API and its worker take videos and series like photos: references in, one result out."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask
from PIL import Image

from tests.video.clips import encode, skin_frames, sound_only
from tests.workers.conftest import media_resource
from tests.workers.test_batching import make_app, submit
from workers.batching import run_batch
from workers.celery_app import services

CLIP = encode(skin_frames(12, size=256), fps=6)  # 2 s, 6 frames sampled


def video_media(data: bytes, patient: str = "Patient/p1", content_type: str = "video/mp4") -> dict[str, Any]:
    return {
        "resourceType": "Media",
        "status": "completed",
        "subject": {"reference": patient},
        "content": {
            "contentType": content_type,
            "data": base64.b64encode(data).decode(),
            "hash": base64.b64encode(hashlib.sha1(data).digest()).decode(),
        },
    }


def post(app: Flask, token: str, body: dict[str, Any]) -> Any:
    return app.test_client().post("/api/v1/jobs", json=body, headers={"Authorization": f"Bearer {token}"})


def test_an_inline_video_media_is_one_job_with_one_accumulated_result(tmp_path: Path) -> None:
    app, token = make_app(tmp_path)
    job_id = submit(app, token, {"resource": video_media(CLIP)})
    with app.app_context():
        assert run_batch(services(), job_id).done == (job_id,)
        job = services().jobs.get(job_id)
    assert job is not None and job.result_bundle is not None
    entries = [e["resource"] for e in job.result_bundle["entry"]]
    (video,) = [
        r for r in entries if r["resourceType"] == "Media" and r["type"]["coding"][0]["code"] == "video"
    ]
    observations = [r for r in entries if r["resourceType"] == "Observation"]
    codes = [o["code"]["coding"][0]["code"] for o in observations]
    assert len(codes) == len(set(codes)), "one Observation per analysis for the whole video"
    tis = next(o for o in observations if o["code"]["coding"][0]["code"] == "tis")
    parts = {c["code"]["coding"][0]["code"] for c in tis["component"]}
    assert {"frames-analysed", "frames-rejected", "frame-agreement"} <= parts
    assert video["frames"] == 12


@pytest.mark.parametrize(
    ("resource", "status", "code"),
    [
        (video_media(sound_only()), 422, "audio-only"),
        (video_media(CLIP, content_type="video/webm"), 415, "content-type-mismatch"),
        (video_media(b"just some text"), 422, "not-a-video"),
    ],
)
def test_a_bad_video_is_refused_before_a_job_exists(
    tmp_path: Path, resource: dict[str, Any], status: int, code: str
) -> None:
    app, token = make_app(tmp_path)
    response = post(app, token, {"resource": resource})
    assert response.status_code == status
    assert response.get_json()["issue"][0]["details"]["coding"][0]["code"] == code


def test_a_video_over_the_length_limit_is_refused_before_a_job_exists(tmp_path: Path) -> None:
    app, token = make_app(tmp_path, video_max_duration_s=1)
    response = post(app, token, {"resource": video_media(CLIP)})
    assert response.status_code == 413
    assert response.get_json()["issue"][0]["details"]["coding"][0]["code"] == "video-too-long"


@pytest.mark.parametrize("series", [["Media/1"], ["Media/1", "Media/1"], "Media/1", [1, 2]])
def test_a_malformed_series_is_refused(tmp_path: Path, series: Any) -> None:
    app, token = make_app(tmp_path, fhir_base_url="http://127.0.0.1:9/fhir")
    assert post(app, token, {"series": series}).status_code in (400, 422)


@pytest.mark.fhir_server
def test_a_series_of_media_on_the_server_is_one_job_and_one_result_per_analysis(
    tmp_path: Path, fhir_server: str
) -> None:
    app, token = make_app(tmp_path, fhir_base_url=fhir_server)
    patient = httpx.post(f"{fhir_server}/Patient", json={"resourceType": "Patient"}).json()["id"]
    references = []
    for index, array in enumerate(skin_frames(3, size=320)):
        photo = encode_jpeg(array, index)
        created = httpx.post(f"{fhir_server}/Media", json=media_resource(photo, f"Patient/{patient}")).json()
        references.append(f"Media/{created['id']}")
    job_id = submit(app, token, {"series": references})
    with app.app_context():
        stored = services().jobs.get(job_id)
        assert stored is not None and stored.resource is not None
        # The job keeps references only: a FHIR List naming the photos, never their bytes.
        kept = json.loads(stored.resource)
        assert (
            kept["resourceType"] == "List" and [e["item"]["reference"] for e in kept["entry"]] == references
        )
        assert run_batch(services(), job_id).done == (job_id,)
        done = services().jobs.get(job_id)
    assert done is not None and done.patient == f"Patient/{patient}"
    found = httpx.get(
        f"{fhir_server}/Observation", params={"subject": f"Patient/{patient}", "_count": "100"}
    ).json()
    observations = [e["resource"] for e in found["entry"]]
    codes = [o["code"]["coding"][0]["code"] for o in observations]
    assert "tis" in codes and len(codes) == len(set(codes))
    for obs in observations:
        derived = [d["reference"].split("/_history")[0] for d in obs["derivedFrom"]]
        assert derived == references


@pytest.mark.fhir_server
def test_a_series_of_two_patients_fails_with_its_reason(tmp_path: Path, fhir_server: str) -> None:
    app, token = make_app(tmp_path, fhir_base_url=fhir_server)
    references = []
    for index, array in enumerate(skin_frames(2, size=256)):
        patient = httpx.post(f"{fhir_server}/Patient", json={"resourceType": "Patient"}).json()["id"]
        created = httpx.post(
            f"{fhir_server}/Media", json=media_resource(encode_jpeg(array, index), f"Patient/{patient}")
        ).json()
        references.append(f"Media/{created['id']}")
    job_id = submit(app, token, {"series": references})
    with app.app_context():
        assert run_batch(services(), job_id).failed == (job_id,)
        job = services().jobs.get(job_id)
    assert job is not None and job.error_code == "invalid-series"


def encode_jpeg(array: Any, seed: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="JPEG", quality=90 - seed)
    return out.getvalue()
