"""The inbox's credentials and its refusals: the key and the JWKS the app serves, SMART Backend
Services tokens from signed assertions, and a wrong secret, key or scope refused and audited.

Against the real FHIR server (SMART Backend Services enforced, Subscriptions on), real Redis and
a real worker process. Every refusal asserted here is also looked up in the audit trail.
"""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from joserfc import jwt
from joserfc.jwk import RSAKey

from plugin.app import create_app
from plugin.cli import main
from plugin.inbox.notifications import SECRET_HEADER
from plugin.settings import load_settings
from tests.inbox.conftest import (
    CLIENT_ID,
    ES384_CLIENT,
    JWKS_URL_CLIENT,
    READ_ONLY_CLIENT,
    SECRET,
    WRONG_KEY_CLIENT,
    InboxStack,
)
from tests.inbox.notification_bundles import notification
from workers.celery_app import services
from workers.inbox.backend_auth import BackendServicesClient
from workers.inbox.tasks import inbox_poll

pytestmark = pytest.mark.fhir_server


# --- keys and the JWKS ---------------------------------------------------------------------------


def test_keys_generate_writes_a_private_key_only_we_can_read_and_the_app_serves_its_public_half(
    tmp_path: Path,
) -> None:
    runner = CliRunner()
    result = runner.invoke(
        main, ["keys", "generate", "--alg", "ES384"], env={"PHOTOMARKER_DATA_DIR": str(tmp_path)}
    )
    assert result.exit_code == 0, result.output
    key_file = tmp_path / "keys" / "inbox-backend.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    printed = json.loads(result.stdout)["keys"][0]
    assert printed["alg"] == "ES384" and printed["kid"] and "d" not in printed
    again = runner.invoke(main, ["keys", "generate"], env={"PHOTOMARKER_DATA_DIR": str(tmp_path)})
    assert again.exit_code == 1 and "already exists" in again.output  # never overwritten by accident

    app = create_app(load_settings(data_dir=tmp_path))
    served = app.test_client().get("/.well-known/jwks.json")
    assert served.status_code == 200
    assert served.get_json() == {"keys": [printed]}
    with app.app_context():
        generated = [
            e.record for e in services().audit_store.iter_events() if e.record.event == "inbox.key.generated"
        ]
    assert generated and generated[0].entities == (f"jwk:{printed['kid']}",)


class Recording(httpx.BaseTransport):
    """A real transport that remembers the requests it sent (so the test can read the assertion)."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.inner.handle_request(request)


def test_the_token_comes_from_a_signed_assertion_and_is_cached_until_shortly_before_expiry(
    stack: InboxStack, inbox_key: Any
) -> None:
    now = [time.time()]
    transport = Recording()
    client = BackendServicesClient(stack.settings, transport=transport, clock=lambda: now[0])
    try:
        first = client.token()
        assert client.token() is first  # cached
        token_posts = [r for r in transport.requests if r.method == "POST"]
        assert len(token_posts) == 1
        assert str(transport.requests[0].url) == f"{stack.fhir_base}/.well-known/smart-configuration"
        now[0] += 900 - 30  # sekmet's tokens live 900 s; renewed before they run out
        second = client.token()
        assert second is not first
    finally:
        client.close()
    assertions = []
    for request in (r for r in transport.requests if r.method == "POST"):
        form = dict(httpx.QueryParams(request.content.decode()))
        assert form["grant_type"] == "client_credentials"
        assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        public = RSAKey.import_key(inbox_key[1].public_jwk())
        token = jwt.decode(form["client_assertion"], public, algorithms=["RS384"])
        assert token.header["alg"] == "RS384" and token.header["kid"] == inbox_key[1].kid
        claims = token.claims
        assert claims["iss"] == claims["sub"] == CLIENT_ID
        assert claims["aud"] == str(request.url)
        assert 0 < claims["exp"] - time.time() <= 300
        assertions.append(claims["jti"])
    assert len(set(assertions)) == 2  # a fresh jti every time


def test_the_server_can_verify_our_assertions_with_the_jwks_the_app_serves(stack: InboxStack) -> None:
    client = BackendServicesClient(stack.settings_with(inbox_client_id=JWKS_URL_CLIENT))
    try:
        assert client.token().value  # sekmet fetched <app>/.well-known/jwks.json and the signature held
    finally:
        client.close()


def test_an_es384_key_works_as_well(stack: InboxStack, es384_key: Any) -> None:
    settings = stack.settings_with(inbox_client_id=ES384_CLIENT, inbox_private_key_path=str(es384_key[0]))
    client = BackendServicesClient(settings)
    try:
        assert client.token().value
    finally:
        client.close()


# --- refusals, each audited ----------------------------------------------------------------------


def test_a_wrong_or_missing_secret_is_refused_and_audited(stack: InboxStack) -> None:
    client = stack.app.test_client()
    body = json.dumps(notification(["Media/x"], kind="heartbeat"))
    headers = {"Content-Type": "application/fhir+json"}
    wrong = client.post(
        "/fhir/notifications", data=body, headers=headers | {SECRET_HEADER: SECRET[:-1] + "x"}
    )
    missing = client.post("/fhir/notifications", data=body, headers=headers)
    right = client.post("/fhir/notifications", data=body, headers=headers | {SECRET_HEADER: SECRET})
    assert wrong.status_code == missing.status_code == 401
    assert wrong.get_json()["issue"][0]["details"]["coding"][0]["code"] == "not-authenticated"
    assert right.status_code == 200
    refused = stack.audit_events("inbox.notification.refused")
    assert len(refused) >= 2 and all(r.outcome_reason.startswith("not-authenticated") for r in refused)
    assert SECRET not in json.dumps([r.outcome_reason for r in refused])
    garbage = client.post("/fhir/notifications", data="{", headers=headers | {SECRET_HEADER: SECRET})
    assert garbage.status_code == 400


@pytest.mark.parametrize(
    ("client_id", "code"),
    [(WRONG_KEY_CLIENT, "backend-auth-refused"), (READ_ONLY_CLIENT, "scope-not-granted")],
)
def test_a_bad_assertion_signature_or_a_missing_scope_is_refused_and_audited(
    stack: InboxStack, client_id: str, code: str
) -> None:
    settings = stack.settings_with(inbox_client_id=client_id)
    app = create_app(settings)
    with app.app_context():
        result = inbox_poll.run()
        assert result == {"refused": code}
        polls = [e.record for e in services().audit_store.iter_events() if e.record.event == "inbox.poll"]
    assert polls[-1].outcome_reason.startswith(code)
    assert polls[-1].outcome != "0"
    # The receiver cannot read the photo either: the server is asked to deliver again later.
    response = app.test_client().post(
        "/fhir/notifications",
        json=notification(["Media/does-not-matter"]),
        headers={SECRET_HEADER: SECRET},
    )
    assert response.status_code == 502
    assert response.get_json()["issue"][0]["details"]["coding"][0]["code"] == code
