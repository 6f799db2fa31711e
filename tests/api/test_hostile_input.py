"""Anything hostile sent to the jobs API gets a clear 4xx OperationOutcome — never a 500 — and
a refused photo is audited with its patient and reason before any job exists."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from plugin.app import create_app
from plugin.settings import load_settings
from tests.api.conftest import ApiClient, error_code, media
from tests.models.conftest import png_declaring
from workers.celery_app import services

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
