"""What the test EHR's OAuth server knows: the one registered app, its scopes, codes and tokens.

The app is a public client (``CLIENT_ID``, no secret) that may ask for ``V2_SCOPES`` (SMART v2
``.rs``/``.c`` permissions) or ``V1_SCOPES`` (v1 ``.read``/``.write``); the user is always
``PRACTITIONER``. ``RegisteredClient``, ``IssuedCode`` and ``IssuedToken`` are the records Authlib
looks up through its mixins.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin, TokenMixin

if TYPE_CHECKING:
    from tests.smart_auth_server import SmartAuthServer

CLIENT_ID = "photomarker-test"
PRACTITIONER = "Practitioner/dr-sato"

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
class RegisteredClient(ClientMixin):  # type: ignore[misc]
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
class IssuedCode(AuthorizationCodeMixin):  # type: ignore[misc]
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
class IssuedToken(TokenMixin):  # type: ignore[misc]
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
