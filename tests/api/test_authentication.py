"""The jobs API's door: 401 with an OperationOutcome and WWW-Authenticate without a valid token,
and a revoked token stops working."""

from __future__ import annotations

import pytest

from tests.api.conftest import ApiClient, error_code, media
from workers.celery_app import services


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
