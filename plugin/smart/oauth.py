"""The OAuth side of a launch, on Authlib's client: PKCE S256 authorization, code exchange, refresh.

The ``id_token`` is verified with joserfc (Authlib's JOSE engine) against the server's
``jwks_uri`` — RS256 only, issuer, audience (our client id), expiry and the launch's nonce —
before its ``fhirUser`` claim is believed. Failures become the errors of ``models.errors``; the
server's own error text is passed on only as its short OAuth error code.
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.integrations.base_client.errors import OAuthError
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from models.errors import IdTokenInvalid, SmartDiscoveryFailed, TokenExchangeFailed
from plugin.settings import Settings
from plugin.smart.discovery import SmartConfiguration, get_json
from plugin.smart.store import Launch

with warnings.catch_warnings():
    # Authlib 1.9 would rather drive httpx2 (not packaged here); its httpx client is the same code.
    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.integrations.httpx_client import OAuth2Client

log = logging.getLogger(__name__)

# OAuth error codes are [\x20-\x21\x23-\x5B\x5D-\x7E]; we show only tame ones.
OAUTH_ERROR_CODE = re.compile(r"^[a-z_]{1,64}$")
# Seconds of clock difference tolerated on exp/iat.
_LEEWAY_S = 60


@dataclass(frozen=True)
class TokenResponse:
    """What the token endpoint gave, with the SMART context parameters."""

    access_token: str
    refresh_token: str | None
    expires_at: float | None
    scopes: list[str]
    id_token: str | None
    patient: str | None
    encounter: str | None
    need_patient_banner: bool
    smart_style_url: str | None


def _client(settings: Settings, redirect_uri: str, scope: str | None = None) -> OAuth2Client:
    secret = settings.smart_client_secret.get_secret_value() if settings.smart_client_secret else None
    return OAuth2Client(
        client_id=settings.smart_client_id,
        client_secret=secret,
        # A public client proves itself with PKCE alone; a confidential one also with HTTP Basic.
        token_endpoint_auth_method="client_secret_basic" if secret else "none",
        scope=scope,
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        timeout=settings.fhir_timeout_s,
        follow_redirects=False,
    )


def authorization_url(
    config: SmartConfiguration, launch: Launch, *, state: str, scope: str, settings: Settings
) -> str:
    """The URL that sends the browser to the authorization server (``aud`` = the FHIR base)."""
    extra: dict[str, str] = {"aud": launch.iss, "nonce": launch.nonce}
    if launch.launch:
        extra["launch"] = launch.launch
    with _client(settings, launch.redirect_uri, scope) as client:
        url, _ = client.create_authorization_url(
            config.authorization_endpoint, state=state, code_verifier=launch.code_verifier, **extra
        )
    return str(url)


def exchange_code(config: SmartConfiguration, launch: Launch, code: str, settings: Settings) -> TokenResponse:
    """Code + PKCE verifier → tokens; ``TokenExchangeFailed`` says why not."""
    with _client(settings, launch.redirect_uri) as client:
        token = _call(
            lambda: client.fetch_token(
                config.token_endpoint,
                grant_type="authorization_code",
                code=code,
                code_verifier=launch.code_verifier,
                redirect_uri=launch.redirect_uri,
            )
        )
    return _token_response(token)


def refresh(config: SmartConfiguration, launch: Launch, settings: Settings) -> TokenResponse:
    """A new access token from the refresh token."""
    with _client(settings, launch.redirect_uri) as client:
        token = _call(lambda: client.refresh_token(config.token_endpoint, refresh_token=launch.refresh_token))
    return _token_response(token, previous=launch)


def _call(request: Any) -> dict[str, Any]:
    try:
        token = request()
    except OAuthError as exc:
        code = str(exc.error or "")
        shown = code if OAUTH_ERROR_CODE.match(code) else "an unreadable error code"
        log.info("token endpoint refused: %s", shown)
        raise TokenExchangeFailed(f"the authorization server refused to issue a token ({shown})") from None
    except httpx.HTTPError as exc:
        raise TokenExchangeFailed(
            f"the authorization server could not be reached for a token ({type(exc).__name__})"
        ) from None
    except ValueError:  # a body that is not JSON
        raise TokenExchangeFailed("the authorization server's token answer is not JSON") from None
    if not isinstance(token, dict) or not isinstance(token.get("access_token"), str):
        raise TokenExchangeFailed("the authorization server's answer has no access token")
    return dict(token)


def _token_response(token: dict[str, Any], previous: Launch | None = None) -> TokenResponse:
    expires_in = token.get("expires_in")
    expires_at = token.get("expires_at")
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
        expires_at = time.time() + float(expires_in)
    scope = token.get("scope")
    scopes = scope.split() if isinstance(scope, str) else (list(previous.scopes) if previous else [])
    patient = token.get("patient")
    encounter = token.get("encounter")
    style = token.get("smart_style_url")
    banner = token.get("need_patient_banner")
    refresh_token = token.get("refresh_token")
    return TokenResponse(
        access_token=token["access_token"],
        # A refresh answer may omit the refresh token: the old one stays valid then.
        refresh_token=refresh_token
        if isinstance(refresh_token, str)
        else (previous.refresh_token if previous else None),
        expires_at=float(expires_at) if isinstance(expires_at, int | float) else None,
        scopes=scopes,
        id_token=token.get("id_token") if isinstance(token.get("id_token"), str) else None,
        patient=f"Patient/{patient}" if isinstance(patient, str) and patient else None,
        encounter=f"Encounter/{encounter}" if isinstance(encounter, str) and encounter else None,
        # SMART: absent means the app need not show a banner; we show one unless told it is not needed.
        need_patient_banner=banner is not False,
        smart_style_url=style if isinstance(style, str) else None,
    )


def verified_fhir_user(
    id_token: str, config: SmartConfiguration, *, nonce: str, settings: Settings
) -> str | None:
    """The ``fhirUser`` of an id_token that passes every check; ``IdTokenInvalid`` otherwise."""
    if not config.jwks_uri:
        raise IdTokenInvalid("the FHIR server publishes no jwks_uri, so the id_token cannot be checked")
    try:
        keys = KeySet.import_key_set(get_json(config.jwks_uri, settings, what="the signing keys"))  # type: ignore[arg-type]
    except SmartDiscoveryFailed:
        raise
    except (JoseError, ValueError, TypeError, KeyError):
        raise SmartDiscoveryFailed("the server's signing keys (jwks_uri) cannot be read") from None
    try:
        token = jwt.decode(id_token, keys, algorithms=["RS256"])
        jwt.JWTClaimsRegistry(
            leeway=_LEEWAY_S,
            iss={"essential": True, "value": config.issuer or config.iss},
            aud={"essential": True, "value": settings.smart_client_id or ""},
            exp={"essential": True},
            sub={"essential": True},
            nonce={"essential": True, "value": nonce},
        ).validate(token.claims)
    except (JoseError, ValueError, TypeError) as exc:
        # The error class names the failed check (signature, claim); never the token.
        raise IdTokenInvalid(f"the id_token failed verification ({type(exc).__name__})") from None
    user = token.claims.get("fhirUser")
    return user if isinstance(user, str) and user else None
