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
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin, TokenMixin, grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, Response, jsonify, request
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server

from tests.fhir_server import free_port

CLIENT_ID = "photomarker-test"
PRACTITIONER = "Practitioner/dr-sato"
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host"}

V2_SCOPES = [
    "openid", "fhirUser", "launch", "launch/patient", "online_access", "offline_access",
    "patient/*.rs", "patient/Patient.r", "patient/Media.rs", "patient/Media.c",
    "patient/DocumentReference.rs", "patient/Binary.r", "patient/Observation.rs", "patient/Observation.c",
    "patient/Device.rs", "patient/Device.c", "patient/Provenance.c",
]  # fmt: skip
V1_SCOPES = [
    "openid", "fhirUser", "launch", "launch/patient", "online_access",
    "patient/*.read", "patient/Patient.read", "patient/Media.read", "patient/Media.write",
    "patient/Observation.read", "patient/Observation.write", "patient/Device.write",
    "patient/Provenance.write",
]  # fmt: skip


@dataclass
class _Client(ClientMixin):  # type: ignore[misc]
    server: SmartAuthServer

    def get_client_id(self) -> str:
        return CLIENT_ID

    def get_default_redirect_uri(self) -> str:
        return self.server.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        # What the EHR grants: what was asked, minus what the test withholds.
        return " ".join(s for s in (scope or "").split() if s not in self.server.withheld_scopes)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.server.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return False  # a public client has none

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "none"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


@dataclass
class _Code(AuthorizationCodeMixin):  # type: ignore[misc]
    code: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    patient: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


@dataclass
class _Token(TokenMixin):  # type: ignore[misc]
    access_token: str
    refresh_token: str | None
    scope: str
    expires_at: float
    patient: str | None
    revoked: bool = False

    def check_client(self, client: Any) -> bool:
        return bool(client.get_client_id() == CLIENT_ID)

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int(self.expires_at - time.time())

    def is_expired(self) -> bool:
        return time.time() >= self.expires_at

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self) -> str:
        return PRACTITIONER

    def get_client(self) -> Any:
        return None


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
        self._codes: dict[str, _Code] = {}
        self._tokens: dict[str, _Token] = {}
        self._lock = threading.Lock()
        self._key = RSAKey.generate_key(2048, parameters={"kid": "ehr-1", "use": "sig", "alg": "RS256"})
        self._wrong_key = RSAKey.generate_key(2048, parameters={"kid": "ehr-1", "use": "sig", "alg": "RS256"})
        self._http = httpx.Client(timeout=60)
        self.flask = self._build()
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

    # --- the Flask app --------------------------------------------------------------------------

    def _build(self) -> Flask:
        app = Flask("smart-test-ehr")
        app.config["OAUTH2_TOKEN_EXPIRES_IN"] = {"authorization_code": 3600, "refresh_token": 3600}
        app.config["OAUTH2_REFRESH_TOKEN_GENERATOR"] = True
        auth = AuthorizationServer(app, query_client=self._query_client, save_token=self._save_token)
        owner = self

        class CodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
            TOKEN_ENDPOINT_AUTH_METHODS = ["none"]  # noqa: RUF012  (Authlib's own class attribute)

            def save_authorization_code(self, code: str, req: Any) -> None:
                data = req.payload.data
                launch = data.get("launch")
                patient = owner._launches.get(launch) if launch else owner.standalone_patient
                owner._codes[code] = _Code(
                    code=code,
                    redirect_uri=req.payload.redirect_uri,
                    scope=req.scope,
                    nonce=data.get("nonce"),
                    code_challenge=data.get("code_challenge"),
                    code_challenge_method=data.get("code_challenge_method"),
                    patient=patient,
                )

            def query_authorization_code(self, code: str, client: Any) -> _Code | None:
                return owner._codes.get(code)

            def delete_authorization_code(self, authorization_code: _Code) -> None:
                owner._codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code: _Code) -> str:
                self.request.launch_patient = authorization_code.patient
                return PRACTITIONER

        class RefreshGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
            TOKEN_ENDPOINT_AUTH_METHODS = ["none"]  # noqa: RUF012
            INCLUDE_NEW_REFRESH_TOKEN = True

            def authenticate_refresh_token(self, refresh_token: str) -> _Token | None:
                found = next((t for t in owner._tokens.values() if t.refresh_token == refresh_token), None)
                return found if found is not None and not found.revoked else None

            def authenticate_user(self, refresh_token: _Token) -> str:
                self.request.launch_patient = refresh_token.patient
                owner.refreshes += 1
                return PRACTITIONER

            def revoke_old_credential(self, refresh_token: _Token) -> None:
                refresh_token.revoked = True

        class OpenId(OpenIDCode):  # type: ignore[misc]
            def exists_nonce(self, nonce: str, req: Any) -> bool:
                return False

            def resolve_client_private_key(self, client: Any) -> RSAKey:
                return owner._wrong_key if owner.sign_with_wrong_key else owner._key

            def get_client_algorithm(self, client: Any) -> str:
                return "RS256"

            def get_encode_header(self, client: Any) -> dict[str, str]:
                return {"alg": "RS256", "kid": "ehr-1"}

            def get_client_claims(self, client: Any) -> dict[str, Any]:
                return {"iss": owner.origin, "aud": [CLIENT_ID], "exp": int(time.time()) + 300}

            def generate_user_info(self, user: str, scope: str) -> dict[str, str]:
                return {"sub": "dr-sato", "fhirUser": f"{owner.fhir_base}/{user}"}

        auth.register_grant(CodeGrant, [CodeChallenge(required=True), OpenId(require_nonce=True)])
        auth.register_grant(RefreshGrant)

        @app.get("/authorize")
        def authorize() -> Any:
            self.authorize_requests.append(dict(request.args))
            try:
                grant = auth.get_consent_grant(end_user=PRACTITIONER)
            except OAuth2Error as error:
                return jsonify(error=error.error, description=error.description), 400
            # SMART: the EHR refuses an aud that is not its FHIR server, and an unknown launch.
            if request.args.get("aud") != self.fhir_base:
                return jsonify(error="invalid_request", description="aud is not this FHIR server"), 400
            launch = request.args.get("launch")
            if launch is not None and launch not in self._launches:
                return jsonify(error="invalid_request", description="unknown launch"), 400
            return auth.create_authorization_response(
                grant=grant, grant_user=PRACTITIONER if self.decision == "approve" else None
            )

        @app.post("/token")
        def token() -> Any:
            response = auth.create_token_response()
            if response.status_code >= 400:
                self.token_errors.append(response.get_json().get("error", "?"))
            return response

        @app.get("/jwks")
        def jwks() -> Any:
            return jsonify({"keys": [self._key.as_dict(private=False)]})

        @app.get("/fhir/.well-known/smart-configuration")
        def smart_configuration() -> Any:
            return jsonify(
                {
                    "issuer": self.origin,
                    "authorization_endpoint": f"{self.origin}/authorize",
                    "token_endpoint": f"{self.origin}/token",
                    "jwks_uri": f"{self.origin}/jwks",
                    "grant_types_supported": ["authorization_code", "refresh_token"],
                    "response_types_supported": ["code"],
                    "code_challenge_methods_supported": ["S256"],
                    "token_endpoint_auth_methods_supported": ["none"],
                    "scopes_supported": self.scopes_supported,
                    "capabilities": [
                        "launch-ehr",
                        "launch-standalone",
                        "client-public",
                        "context-ehr-patient",
                        "context-standalone-patient",
                        "sso-openid-connect",
                        "permission-v2",
                        "permission-v1",
                        "permission-patient",
                        "permission-online",
                    ],
                }
            )

        @app.get("/style.json")
        def style() -> Any:
            return jsonify({"color_background": "#f7f9fc", "font_family_body": "Georgia, serif", "bad": "}"})

        @app.route("/fhir/<path:rest>", methods=["GET", "POST", "PUT"])
        def fhir(rest: str) -> Any:
            return self._forward(rest)

        @app.route("/fhir/", methods=["POST"])
        @app.route("/fhir", methods=["POST"])
        def fhir_root() -> Any:
            return self._forward("")

        @app.get("/ehr")
        def ehr_page() -> Any:
            src = self.launch_url(request.args["patient"])
            page = (
                "<!doctype html><title>Test EHR chart</title><h1>Chart</h1>"
                f'<iframe id="app" title="Photomarker" src="{src}" width="1100" height="900"></iframe>'
            )
            return Response(page, mimetype="text/html")

        return app

    def _query_client(self, client_id: str) -> _Client | None:
        return _Client(self) if client_id == CLIENT_ID else None

    def _save_token(self, token: dict[str, Any], req: Any) -> None:
        patient = getattr(req, "launch_patient", None)
        token["expires_in"] = self.access_token_lifetime_s
        # SMART launch context goes beside the OAuth fields of the token response.
        if patient:
            token["patient"] = patient
        token["need_patient_banner"] = self.need_patient_banner
        token["smart_style_url"] = f"{self.origin}/style.json"
        self._tokens[token["access_token"]] = _Token(
            access_token=token["access_token"],
            refresh_token=token.get("refresh_token"),
            scope=token.get("scope", ""),
            expires_at=time.time() + self.access_token_lifetime_s,
            patient=patient,
        )

    def _forward(self, rest: str) -> Response:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        token = self._tokens.get(value) if scheme.lower() == "bearer" else None
        if token is None or token.is_expired():
            return _outcome(401, "login")
        if self.fhir_refusal is not None:
            return _outcome(self.fhir_refusal, "forbidden")
        self.fhir_tokens_seen.append(value)
        if request.method != "GET" and not any(
            s.endswith((".c", ".write", ".cud")) for s in token.scope.split()
        ):
            return _outcome(403, "forbidden")
        target = f"{self.sekmet_base}/{rest}" if rest else self.sekmet_base
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP | {"authorization"}
        }
        upstream = self._http.request(
            request.method, target, params=list(request.args.items(multi=True)), content=request.get_data(),
            headers=headers,
        )  # fmt: skip
        out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
        return Response(upstream.content, status=upstream.status_code, headers=out)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)
        self._http.close()


def _outcome(status: int, code: str) -> Response:
    body = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code}]}
    return Response(json.dumps(body), status=status, mimetype="application/fhir+json")


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
