"""What every API answer carries and what the API promises: security headers, /healthz (ok,
degraded or 503 as the queue and the workers are), and an OpenAPI document covering every route."""

from __future__ import annotations

import json
import time
from pathlib import Path

from plugin.app import create_app
from plugin.settings import load_settings
from tests.api.conftest import ApiClient, media
from workers.celery_app import services
from workers.liveness import announce


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
