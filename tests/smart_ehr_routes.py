"""The test EHR's HTTP routes, on one Flask app.

- ``/authorize`` and ``/token``: the OAuth endpoints of ``tests.smart_oauth_grants``, with the
  SMART checks an EHR adds (``aud`` must be this FHIR server, a launch must be known);
- ``/jwks``: the public key the id_token is signed with;
- ``/fhir/.well-known/smart-configuration``: SMART discovery pointing at the above;
- ``/style.json``: the ``smart_style_url`` the token response names;
- ``/fhir/<anything else>``: forwarded to the real sekmet server, unchanged, but only with an access
  token this server issued and that has not expired; writes also need a write scope;
- ``/ehr``: the chart page that embeds the app in an iframe (EHR launch inside a frame).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from authlib.oauth2 import OAuth2Error
from flask import Flask, Response, jsonify, request

from tests.smart_oauth_grants import authorization_server
from tests.smart_oauth_records import PRACTITIONER

if TYPE_CHECKING:
    from tests.smart_auth_server import SmartAuthServer

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host"}


def build_app(owner: SmartAuthServer) -> Flask:
    """The Flask app serving ``owner``: every route reads and records what a test may look at."""
    app = Flask("smart-test-ehr")
    auth = authorization_server(app, owner)

    @app.get("/authorize")
    def authorize() -> Any:
        owner.authorize_requests.append(dict(request.args))
        try:
            grant = auth.get_consent_grant(end_user=PRACTITIONER)
        except OAuth2Error as error:
            return jsonify(error=error.error, description=error.description), 400
        # SMART: the EHR refuses an aud that is not its FHIR server, and an unknown launch.
        if request.args.get("aud") != owner.fhir_base:
            return jsonify(error="invalid_request", description="aud is not this FHIR server"), 400
        launch = request.args.get("launch")
        if launch is not None and launch not in owner._launches:
            return jsonify(error="invalid_request", description="unknown launch"), 400
        return auth.create_authorization_response(
            grant=grant, grant_user=PRACTITIONER if owner.decision == "approve" else None
        )

    @app.post("/token")
    def token() -> Any:
        response = auth.create_token_response()
        if response.status_code >= 400:
            owner.token_errors.append(response.get_json().get("error", "?"))
        return response

    @app.get("/jwks")
    def jwks() -> Any:
        return jsonify({"keys": [owner._key.as_dict(private=False)]})

    @app.get("/fhir/.well-known/smart-configuration")
    def smart_configuration() -> Any:
        return jsonify(
            {
                "issuer": owner.origin,
                "authorization_endpoint": f"{owner.origin}/authorize",
                "token_endpoint": f"{owner.origin}/token",
                "jwks_uri": f"{owner.origin}/jwks",
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["none"],
                "scopes_supported": owner.scopes_supported,
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
        return _forward(owner, rest)

    @app.route("/fhir/", methods=["POST"])
    @app.route("/fhir", methods=["POST"])
    def fhir_root() -> Any:
        return _forward(owner, "")

    @app.get("/ehr")
    def ehr_page() -> Any:
        src = owner.launch_url(request.args["patient"])
        page = (
            "<!doctype html><title>Test EHR chart</title><h1>Chart</h1>"
            f'<iframe id="app" title="Photomarker" src="{src}" width="1100" height="900"></iframe>'
        )
        return Response(page, mimetype="text/html")

    return app


def _forward(owner: SmartAuthServer, rest: str) -> Response:
    """The resource-server check sekmet cannot do, then the request as it came, to sekmet."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    token = owner._tokens.get(value) if scheme.lower() == "bearer" else None
    if token is None or token.is_expired():
        return _outcome(401, "login")
    if owner.fhir_refusal is not None:
        return _outcome(owner.fhir_refusal, "forbidden")
    owner.fhir_tokens_seen.append(value)
    if request.method != "GET" and not any(s.endswith((".c", ".write", ".cud")) for s in token.scope.split()):
        return _outcome(403, "forbidden")
    target = f"{owner.sekmet_base}/{rest}" if rest else owner.sekmet_base
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP | {"authorization"}}
    upstream = owner._http.request(
        request.method, target, params=list(request.args.items(multi=True)), content=request.get_data(),
        headers=headers,
    )  # fmt: skip
    out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
    return Response(upstream.content, status=upstream.status_code, headers=out)


def _outcome(status: int, code: str) -> Response:
    body = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code}]}
    return Response(json.dumps(body), status=status, mimetype="application/fhir+json")
