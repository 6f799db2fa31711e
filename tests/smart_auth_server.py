"""A SMART "EHR" for the tests: Authlib's authorization server + OpenID Connect, in front of sekmet.

sekmet-fhir does not implement the authorization-code flow, so the tests run this beside it, on
127.0.0.1 in a thread, built on a real OAuth library rather than hand-written OAuth:

- ``/authorize`` and ``/token``: ``authlib.integrations.flask_oauth2.AuthorizationServer`` with the
  authorization-code grant, PKCE (``CodeChallenge(required=True)``: a wrong verifier is refused),
  OpenID Connect (``OpenIDCode``: an ``id_token`` signed RS256) and the refresh-token grant;
- ``/jwks``: the public key the id_token is signed with;
- ``/fhir/.well-known/smart-configuration``: SMART discovery pointing at the above;
- ``/fhir/<anything else>``: forwarded to the real sekmet server, unchanged, but only with an access
  token this server issued and that has not expired (the resource-server check sekmet cannot do);
  writes also need a write scope;
- ``/ehr``: the chart page that embeds the app in an iframe (EHR launch inside a frame).

What a test may change between requests: the user's decision, scopes withheld from the grant, the
patient of a launch, whether a banner is needed, the access-token lifetime, v1-only discovery, an
id_token signed with the wrong key, and a FHIR endpoint that refuses every token (401/403). What
it can read back: every authorize request, token errors, refreshes and the tokens the FHIR
endpoint saw.

This module holds that state and runs the server; the pieces live beside it:
``tests.smart_oauth_records`` (client id, scopes, the code and token records),
``tests.smart_oauth_grants`` (the Authlib grants that issue them) and ``tests.smart_ehr_routes``
(the Flask routes).
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpx
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server

from tests.fhir_server import free_port
from tests.smart_ehr_routes import build_app
from tests.smart_oauth_records import V2_SCOPES, IssuedCode, IssuedToken


class SmartAuthServer:
    """The test EHR: authorization server, OIDC provider, SMART discovery, a token-checking FHIR gateway."""

    def __init__(self, sekmet_base: str) -> None:
        self.sekmet_base = sekmet_base.rstrip("/")
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.fhir_base = f"{self.origin}/fhir"
        self.redirect_uris: list[str] = []
        self.app_url = ""
        # --- what a test may change ---
        self.decision = "approve"
        self.withheld_scopes: set[str] = set()
        self.standalone_patient: str | None = None
        self.need_patient_banner = True
        self.access_token_lifetime_s = 3600
        self.scopes_supported = list(V2_SCOPES)
        self.sign_with_wrong_key = False
        self.fhir_refusal: int | None = None  # 401/403 to every FHIR request, whatever the token
        # --- what a test may read ---
        self.authorize_requests: list[dict[str, str]] = []
        self.token_errors: list[str] = []
        self.refreshes = 0
        self.fhir_tokens_seen: list[str] = []
        # -----------------------------
        self._launches: dict[str, str] = {}
        self._codes: dict[str, IssuedCode] = {}
        self._tokens: dict[str, IssuedToken] = {}
        self._lock = threading.Lock()
        self._key = RSAKey.generate_key(2048, parameters={"kid": "ehr-1", "use": "sig", "alg": "RS256"})
        self._wrong_key = RSAKey.generate_key(2048, parameters={"kid": "ehr-1", "use": "sig", "alg": "RS256"})
        self._http = httpx.Client(timeout=60)
        self.flask = build_app(self)
        self._server = make_server("127.0.0.1", self.port, self.flask, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # --- what tests call ------------------------------------------------------------------------

    def new_launch(self, patient: str) -> str:
        """An EHR launch id for ``patient`` ("Patient/123"), as the EHR would put in the launch URL."""
        launch = secrets.token_urlsafe(12)
        with self._lock:
            self._launches[launch] = patient.split("/", 1)[1]
        return launch

    def register_app(self, app_url: str) -> None:
        self.app_url = app_url.rstrip("/")
        self.redirect_uris = [f"{self.app_url}/smart/callback"]

    def launch_url(self, patient: str) -> str:
        return f"{self.app_url}/launch?iss={self.fhir_base}&launch={self.new_launch(patient)}"

    def expire_access_tokens(self) -> None:
        with self._lock:
            for token in self._tokens.values():
                token.expires_at = time.time() - 1

    # --- running --------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)
        self._http.close()


@contextmanager
def running_smart_auth_server(sekmet_base: str) -> Iterator[SmartAuthServer]:
    # Authlib refuses plain HTTP unless told: the test servers live on loopback only.
    os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"
    assert urlsplit(sekmet_base).hostname == "127.0.0.1"
    server = SmartAuthServer(sekmet_base)
    server.start()
    try:
        yield server
    finally:
        server.stop()
