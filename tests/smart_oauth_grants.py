"""How the test EHR issues codes and tokens: Authlib's ``AuthorizationServer``, set up on the Flask app.

The authorization-code grant with PKCE (``CodeChallenge(required=True)``: a wrong verifier is
refused) and OpenID Connect (``OpenIDCode``: an ``id_token`` signed RS256 with the server's key,
or its wrong key when a test asks), and the refresh-token grant, which revokes the old token.
Every grant reads and writes the codes, tokens and launches held by the ``SmartAuthServer``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask
from joserfc.jwk import RSAKey

from tests.smart_oauth_records import CLIENT_ID, PRACTITIONER, IssuedCode, IssuedToken, RegisteredClient

if TYPE_CHECKING:
    from tests.smart_auth_server import SmartAuthServer


def authorization_server(app: Flask, owner: SmartAuthServer) -> AuthorizationServer:
    """``app``'s OAuth 2 / OpenID Connect server, issuing codes and tokens into ``owner``'s state."""
    app.config["OAUTH2_TOKEN_EXPIRES_IN"] = {"authorization_code": 3600, "refresh_token": 3600}
    app.config["OAUTH2_REFRESH_TOKEN_GENERATOR"] = True

    def query_client(client_id: str) -> RegisteredClient | None:
        return RegisteredClient(owner) if client_id == CLIENT_ID else None

    def save_token(token: dict[str, Any], req: Any) -> None:
        patient = getattr(req, "launch_patient", None)
        token["expires_in"] = owner.access_token_lifetime_s
        # SMART launch context goes beside the OAuth fields of the token response.
        if patient:
            token["patient"] = patient
        token["need_patient_banner"] = owner.need_patient_banner
        token["smart_style_url"] = f"{owner.origin}/style.json"
        owner._tokens[token["access_token"]] = IssuedToken(
            access_token=token["access_token"],
            refresh_token=token.get("refresh_token"),
            scope=token.get("scope", ""),
            expires_at=time.time() + owner.access_token_lifetime_s,
            patient=patient,
        )

    auth = AuthorizationServer(app, query_client=query_client, save_token=save_token)

    class CodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
        TOKEN_ENDPOINT_AUTH_METHODS = ["none"]  # noqa: RUF012  (Authlib's own class attribute)

        def save_authorization_code(self, code: str, req: Any) -> None:
            data = req.payload.data
            launch = data.get("launch")
            patient = owner._launches.get(launch) if launch else owner.standalone_patient
            owner._codes[code] = IssuedCode(
                code=code,
                redirect_uri=req.payload.redirect_uri,
                scope=req.scope,
                nonce=data.get("nonce"),
                code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
                patient=patient,
            )

        def query_authorization_code(self, code: str, client: Any) -> IssuedCode | None:
            return owner._codes.get(code)

        def delete_authorization_code(self, authorization_code: IssuedCode) -> None:
            owner._codes.pop(authorization_code.code, None)

        def authenticate_user(self, authorization_code: IssuedCode) -> str:
            self.request.launch_patient = authorization_code.patient
            return PRACTITIONER

    class RefreshGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
        TOKEN_ENDPOINT_AUTH_METHODS = ["none"]  # noqa: RUF012
        INCLUDE_NEW_REFRESH_TOKEN = True

        def authenticate_refresh_token(self, refresh_token: str) -> IssuedToken | None:
            found = next((t for t in owner._tokens.values() if t.refresh_token == refresh_token), None)
            return found if found is not None and not found.revoked else None

        def authenticate_user(self, refresh_token: IssuedToken) -> str:
            self.request.launch_patient = refresh_token.patient
            owner.refreshes += 1
            return PRACTITIONER

        def revoke_old_credential(self, refresh_token: IssuedToken) -> None:
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
    return auth
