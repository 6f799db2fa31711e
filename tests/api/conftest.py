"""Fixtures for the HTTP API: an app on the embedded queue in a temporary data dir, a client, a token,
and the OperationOutcome reader the API test modules share."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from audit.store import AuditStore
from plugin.api.tokens import ApiTokens
from plugin.app import create_app
from plugin.settings import load_settings
from workers.celery_app import services

REPO = Path(__file__).resolve().parents[2]
PHOTO = (REPO / "examples" / "forearm-eczema.jpg").read_bytes()
# Never contacted by these tests: the API only checks that URLs point at it.
FHIR_BASE = "http://127.0.0.1:9/fhir"


def media(**overrides: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Media",
        "status": "completed",
        "subject": {"reference": "Patient/p1"},
        "content": {
            "contentType": "image/jpeg",
            "data": base64.b64encode(PHOTO).decode(),
            "hash": base64.b64encode(hashlib.sha1(PHOTO).digest()).decode(),
        },
    }
    resource.update(overrides)
    return resource


OUTCOME_TYPE = "application/fhir+json"


def error_code(response: Any) -> str:
    """The OperationOutcome's issue code (asserting the answer is one)."""
    assert response.mimetype == OUTCOME_TYPE, response.get_data(as_text=True)[:300]
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    code: str = outcome["issue"][0]["details"]["coding"][0]["code"]
    return code


class ApiClient:
    """The test client plus the repeated bits: a token, JSON posts, the audit trail."""

    def __init__(self, app: Flask, token: str) -> None:
        self.app = app
        self.client: FlaskClient = app.test_client()
        self.token = token

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    def submit(self, body: Any, **kwargs: Any) -> Any:
        return self.client.post("/api/v1/jobs", json=body, headers=self.auth(), **kwargs)

    def audit_events(self) -> list[Any]:
        with self.app.app_context():
            store: AuditStore = services().audit_store
            return list(store.iter_events())


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    settings = load_settings(data_dir=tmp_path / "data", fhir_base_url=FHIR_BASE)
    app = create_app(settings)
    yield app
    services(app).close()


@pytest.fixture
def api(app: Flask) -> ApiClient:
    with app.app_context():
        token = ApiTokens(services().jobs).create("ward-7-tablet")
    return ApiClient(app, token)
