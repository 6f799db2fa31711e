"""The jobs API as a client meets it: 401 without a token, 202 and a job to poll, 404 for others'
jobs, and a clear 4xx OperationOutcome — never a 500 — for anything hostile."""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from plugin.app import create_app
from plugin.settings import load_settings
from tests.api.conftest import PHOTO, ApiClient, media
from tests.models.conftest import png_declaring
from workers.celery_app import services
from workers.liveness import announce

OUTCOME_TYPE = "application/fhir+json"


def error_code(response: Any) -> str:
    assert response.mimetype == OUTCOME_TYPE, response.get_data(as_text=True)[:300]
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    code: str = outcome["issue"][0]["details"]["coding"][0]["code"]
    return code


# --- authentication ------------------------------------------------------------------------------


def test_no_token_is_401_with_an_operation_outcome_and_www_authenticate(api: ApiClient) -> None:
    response = api.client.post("/api/v1/jobs", json={"resource": media()})
    assert response.status_code == 401
    assert error_code(response) == "not-authenticated"
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="photomarker"'
    refused = [e.record for e in api.audit_events() if e.record.event == "request.refused"]
    assert refused and refused[-1].agent_who == "anonymous"
    assert "not-authenticated" in (refused[-1].outcome_reason or "")


@pytest.mark.parametrize(
    "header", ["Bearer pmk_wrong", "Basic dXNlcjpwYXNz", "Bearer ", "bearer " + "x" * 5000]
)
def test_a_wrong_token_is_401(api: ApiClient, header: str) -> None:
    response = api.client.get("/api/v1/jobs/" + "0" * 32, headers={"Authorization": header})
    assert response.status_code == 401
    assert error_code(response) == "not-authenticated"
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="photomarker"')


def test_a_revoked_token_stops_working(api: ApiClient) -> None:
    from plugin.api.tokens import ApiTokens

    with api.app.app_context():
        ApiTokens(services().jobs).revoke("ward-7-tablet")
    assert api.submit({"resource": media()}).status_code == 401


# --- submitting and reading jobs -------------------------------------------------------------------


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


# --- hostile input -------------------------------------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000

BOMB = base64.b64encode(png_declaring(30_000, 30_000)).decode()

HOSTILE: list[tuple[str, Any, str, int, str]] = [
    # (name, body — bytes are sent raw as application/json, content type, status, code)
    ("not json", b"{resource: Media}", "application/json", 400, "malformed-json"),
    ("not utf-8", b'{"reference": "\xff\xfe"}', "application/json", 400, "malformed-json"),
    ("nested 100000 deep", DEEP.encode(), "application/json", 400, "malformed-json"),
    ("NaN", b'{"reference": NaN}', "application/json", 400, "malformed-json"),
    ("huge integer", b'{"kind": ' + b"9" * 10_000 + b"}", "application/json", 400, "malformed-json"),
    ("text/plain", b'{"reference": "Media/1"}', "text/plain", 415, "unsupported-content-type"),
    ("form", b"reference=Media/1", "application/x-www-form-urlencoded", 415, "unsupported-content-type"),
    ("a list", [], "application/json", 400, "invalid-request"),
    ("empty object", {}, "application/json", 400, "invalid-request"),
    ("both", {"resource": media(), "reference": "Media/1"}, "application/json", 400, "invalid-request"),
    (
        "unknown field",
        {"reference": "Media/1", "callback": "http://evil"},
        "application/json",
        400,
        "invalid-request",
    ),
    ("reference not a string", {"reference": 5}, "application/json", 400, "invalid-request"),
    (
        "reference as object",
        {"reference": {"reference": "Media/1"}},
        "application/json",
        400,
        "invalid-request",
    ),
    ("kind not known", {"reference": "Media/1", "kind": "bone"}, "application/json", 400, "invalid-request"),
    (
        "kind not a string",
        {"reference": "Media/1", "kind": ["skin"]},
        "application/json",
        400,
        "invalid-request",
    ),
    ("path traversal", {"reference": "Media/../Patient/1"}, "application/json", 400, "invalid-request"),
    ("dot-dot id", {"reference": "Media/.."}, "application/json", 400, "invalid-request"),
    ("not a photo type", {"reference": "Patient/1"}, "application/json", 400, "invalid-request"),
    (
        "absolute url",
        {"reference": "http://169.254.169.254/Media/1"},
        "application/json",
        400,
        "invalid-request",
    ),
    ("query string", {"reference": "Media/1?_format=xml"}, "application/json", 400, "invalid-request"),
    ("resource a string", {"resource": "Media/1"}, "application/json", 400, "invalid-request"),
    ("no resourceType", {"resource": {"status": "completed"}}, "application/json", 400, "not-fhir"),
    ("a Patient", {"resource": {"resourceType": "Patient"}}, "application/json", 422, "unsupported-resource"),
    (
        "url off the server",
        {
            "resource": media(
                content={"contentType": "image/jpeg", "url": "http://169.254.169.254/latest/meta-data"}
            )
        },
        "application/json",
        422,
        "url-not-allowed",
    ),
    (
        "file url",
        {"resource": media(content={"contentType": "image/jpeg", "url": "file:///etc/passwd"})},
        "application/json",
        422,
        "url-not-allowed",
    ),
    (
        "binary on another port",
        {
            "resource": media(
                content={"contentType": "image/jpeg", "url": "http://127.0.0.1:10/fhir/Binary/1"}
            )
        },
        "application/json",
        422,
        "url-not-allowed",
    ),
    (
        "hash mismatch",
        {"resource": media(content={**media()["content"], "hash": base64.b64encode(b"x" * 20).decode()})},
        "application/json",
        422,
        "hash-mismatch",
    ),
    (
        "bad base64",
        {"resource": media(content={"contentType": "image/jpeg", "data": "!!!not base64!!!"})},
        "application/json",
        400,
        "bad-base64",
    ),
    (
        "gif",
        {"resource": media(content={**media()["content"], "contentType": "image/gif"})},
        "application/json",
        415,
        "unsupported-media-type",
    ),
    ("no subject", {"resource": media(subject=None)}, "application/json", 422, "missing-subject"),
    (
        # fhir_mappings.inputs turns this into int() and chokes (ValueError); the API still answers 4xx.
        "absurd declared size",
        {"resource": media(content={**media()["content"], "size": "9" * 5000})},
        "application/json",
        413,
        "photo-too-large",
    ),
    ("no content", {"resource": media(content=None)}, "application/json", 422, "no-image-content"),
    (
        # Data was sent, and it is empty: that is an empty photo, not a missing one.
        "empty data",
        {"resource": media(content={"contentType": "image/jpeg", "data": ""})},
        "application/json",
        400,
        "empty-photo",
    ),
    (
        # The header declares 900 MP: refused here, before a worker ever sees it.
        "30000×30000 PNG",
        {"resource": media(content={"contentType": "image/png", "data": BOMB})},
        "application/json",
        413,
        "photo-too-many-pixels",
    ),
]


@pytest.mark.parametrize(
    ("name", "body", "content_type", "status", "code"), HOSTILE, ids=[h[0] for h in HOSTILE]
)
def test_hostile_input_gets_a_4xx_operation_outcome(
    api: ApiClient, name: str, body: Any, content_type: str, status: int, code: str
) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = api.client.post("/api/v1/jobs", data=raw, content_type=content_type, headers=api.auth())
    assert (response.status_code, error_code(response)) == (status, code)
    outcome = response.get_json()
    # The answer names the problem but never echoes what was sent.
    assert len(json.dumps(outcome)) < 2000


def test_a_body_over_the_limit_is_413_before_it_is_read(tmp_path: Path) -> None:
    from plugin.api.tokens import ApiTokens

    settings = load_settings(data_dir=tmp_path / "data", api_max_body_bytes=10_000)
    app: Flask = create_app(settings)
    with app.app_context():
        token = ApiTokens(services().jobs).create("t")
    response = app.test_client().post(
        "/api/v1/jobs",
        data=b"{" + b" " * 20_000 + b"}",
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 413
    assert error_code(response) == "request-too-large"


def test_a_reference_needs_a_configured_fhir_server(tmp_path: Path) -> None:
    from plugin.api.tokens import ApiTokens

    app = create_app(load_settings(data_dir=tmp_path / "data"))
    with app.app_context():
        token = ApiTokens(services().jobs).create("t")
    response = app.test_client().post(
        "/api/v1/jobs", json={"reference": "Media/1"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 400 and error_code(response) == "invalid-request"


# --- headers, health, the contract -----------------------------------------------------------------


def test_responses_carry_security_headers(api: ApiClient) -> None:
    response = api.submit({"resource": media()})
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_health_is_degraded_but_200_when_the_queue_answers_and_no_worker_was_seen(api: ApiClient) -> None:
    response = api.client.get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "degraded"
    assert body["checks"] == {"queue": "ok", "jobs": "ok", "workers": "none seen yet"}
    assert set(body["queues"]) == {"skin", "conjunctiva"}


def test_health_is_ok_while_a_worker_announces_itself_and_degraded_when_none_has_lately(
    tmp_path: Path,
) -> None:
    settings = load_settings(data_dir=tmp_path / "data", worker_missing_after_s=1)
    app = create_app(settings)
    with app.app_context():
        announce(services().jobs, "host:123", "skin")
    response = app.test_client().get("/healthz")
    assert (response.status_code, response.get_json()["status"]) == (200, "ok")
    time.sleep(1.6)
    response = app.test_client().get("/healthz")
    assert response.status_code == 200  # the web process can still take jobs: they wait, queued
    body = response.get_json()
    assert body["status"] == "degraded" and body["checks"]["workers"].startswith("none seen for ")


def test_health_is_503_when_the_queue_is_unreachable(tmp_path: Path) -> None:
    from tests.fhir_server import free_port

    settings = load_settings(data_dir=tmp_path / "data", broker_url=f"redis://127.0.0.1:{free_port()}/0")
    response = create_app(settings).test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["queue"] == "unreachable"


def test_the_openapi_document_describes_every_api_route(api: ApiClient) -> None:
    response = api.client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"].startswith("3.")
    documented = {
        (path, method.upper()) for path, operations in document["paths"].items() for method in operations
    }
    served = set()
    for rule in api.app.url_map.iter_rules():
        if rule.rule.startswith("/api/") or rule.rule == "/healthz":
            path = rule.rule.replace("<job_id>", "{id}")
            served |= {(path, method) for method in rule.methods or () if method not in ("HEAD", "OPTIONS")}
    assert documented == served
    # Every $ref resolves.
    text = json.dumps(document)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}:
        assert ref in document["components"]["schemas"], ref


def test_a_bomb_is_refused_before_a_job_exists_and_the_refusal_is_audited(api: ApiClient) -> None:
    response = api.submit({"resource": media(content={"contentType": "image/png", "data": BOMB})})
    assert (response.status_code, error_code(response)) == (413, "photo-too-many-pixels")
    assert "30000×30000" in json.dumps(response.get_json(), ensure_ascii=False)
    with api.app.app_context():
        assert services().jobs.counts() == {}, "nothing was queued"
    (refused,) = [e.record for e in api.audit_events() if e.record.event == "request.refused"]
    assert refused.outcome_reason and "photo-too-many-pixels" in refused.outcome_reason


def test_a_refused_photo_is_audited_with_its_patient_and_reason(api: ApiClient) -> None:
    bad = media(content={"contentType": "image/jpeg", "url": "http://169.254.169.254/latest/meta-data"})
    assert api.submit({"resource": bad}).status_code == 422
    (refused,) = [e.record for e in api.audit_events() if e.record.event == "request.refused"]
    assert refused.patient == "Patient/p1"
    assert refused.agent_who == "api-token:ward-7-tablet"
    assert refused.outcome_reason and refused.outcome_reason.startswith("422 url-not-allowed")
