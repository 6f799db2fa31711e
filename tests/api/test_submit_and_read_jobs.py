"""Submitting and reading jobs: 202 and a job to poll, routing by photo kind, references-only
messages with FHIR tokens stored encrypted, and 404 for others' jobs and unknown routes."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import PHOTO, ApiClient, error_code, media
from workers.celery_app import services


def test_a_media_is_accepted_with_202_and_the_job_can_be_polled(api: ApiClient) -> None:
    response = api.submit({"resource": media()})
    assert response.status_code == 202
    accepted = response.get_json()
    assert accepted == {"id": accepted["id"], "status": "queued"}
    assert response.headers["Location"] == f"/api/v1/jobs/{accepted['id']}"

    job = api.client.get(response.headers["Location"], headers=api.auth()).get_json()
    assert job["status"] == "queued"
    assert job["patient"] == "Patient/p1"
    assert job["queue"] == "skin"
    assert "error" not in job and "result" not in job

    requested = [e.record for e in api.audit_events() if e.record.event == "job.requested"]
    assert requested[-1].agent_who == "api-token:ward-7-tablet"
    assert requested[-1].patient == "Patient/p1"
    assert f"urn:photomarker:job:{accepted['id']}" in requested[-1].entities


@pytest.mark.parametrize(
    ("body", "queue"),
    [
        ({"reference": "Media/123"}, "skin"),
        ({"reference": "Media/123", "kind": "conjunctiva"}, "conjunctiva"),
        ({"reference": "DocumentReference/a.b-c/_history/2", "kind": "skin"}, "skin"),
        # The body site says conjunctiva: routed there without being told.
        (
            {
                "resource": media(
                    bodySite={"coding": [{"system": "http://snomed.info/sct", "code": "29445007"}]}
                )
            },
            "conjunctiva",
        ),
    ],
)
def test_jobs_are_routed_to_the_queue_of_their_photo_kind(
    api: ApiClient, body: dict[str, Any], queue: str
) -> None:
    response = api.submit(body)
    assert response.status_code == 202, response.get_data(as_text=True)
    job = api.client.get(response.headers["Location"], headers=api.auth()).get_json()
    assert job["queue"] == queue


def test_messages_carry_references_only_and_fhir_tokens_are_stored_encrypted(
    api: ApiClient, tmp_path: Path
) -> None:
    fhir_token = "secret-fhir-access-token-1234567890"
    response = api.client.post(
        "/api/v1/jobs",
        json={"resource": media()},
        headers={**api.auth(), "X-FHIR-Authorization": f"Bearer {fhir_token}"},
    )
    assert response.status_code == 202
    job_id = response.get_json()["id"]

    with sqlite3.connect(tmp_path / "data" / "broker.sqlite") as broker:
        (payload,) = [row[0] for row in broker.execute("SELECT payload FROM kombu_message")]
    message = json.loads(payload)
    body = (
        json.loads(base64.b64decode(message["body"]))
        if message.get("properties", {}).get("body_encoding") == "base64"
        else json.loads(message["body"])
    )
    args, kwargs, _ = body
    assert args == [job_id]
    assert set(kwargs) == {"fhir_base", "reference", "credential"}
    assert kwargs["credential"] and kwargs["reference"] is None
    photo_text = base64.b64encode(PHOTO).decode()
    assert photo_text[:64] not in payload and fhir_token not in payload

    for database in ("jobs.sqlite", "broker.sqlite", "audit.sqlite"):
        raw = b"".join(p.read_bytes() for p in (tmp_path / "data").glob(database + "*"))
        assert fhir_token.encode() not in raw, database
    key = tmp_path / "data" / "credential.key"
    assert key.stat().st_mode & 0o777 == 0o600
    with api.app.app_context():
        assert services().credentials.get(kwargs["credential"]) == fhir_token


def test_another_clients_job_and_unknown_jobs_are_404(api: ApiClient) -> None:
    from plugin.api.tokens import ApiTokens

    job_id = api.submit({"resource": media()}).get_json()["id"]
    with api.app.app_context():
        other = ApiTokens(services().jobs).create("someone-else")
    for path, token in [
        (f"/api/v1/jobs/{job_id}", other),
        ("/api/v1/jobs/" + "f" * 32, None),
        ("/api/v1/jobs/not-a-job", None),
        ("/api/v1/jobs/..%2f..%2fetc", None),
    ]:
        response = api.client.get(path, headers=api.auth(token))
        assert response.status_code == 404, path
        assert error_code(response) == "not-found"


def test_an_unknown_endpoint_and_a_wrong_method_are_operation_outcomes(api: ApiClient) -> None:
    missing = api.client.get("/api/v1/nothing-here", headers=api.auth())
    assert missing.status_code == 404 and error_code(missing) == "not-found"
    wrong = api.client.delete("/api/v1/jobs", headers=api.auth())
    assert wrong.status_code == 405 and error_code(wrong) == "method-not-allowed"
    assert "POST" in wrong.headers["Allow"]
