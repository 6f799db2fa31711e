"""SMART Backend Services: the inbox's access token from a signed client assertion (private_key_jwt).

The token endpoint comes from ``{fhir_base}/.well-known/smart-configuration``. Each request for
a token carries a fresh assertion signed RS384 or ES384 with ``iss`` = ``sub`` = the client id,
``aud`` = the token URL, an expiry under five minutes and a unique ``jti``. The token is kept in
memory (never logged, never stored in clear) until shortly before it expires. A token that does
not grant every scope the inbox asked for is refused outright: half the scopes would mean photos
read and results never saved.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc import jwt

from models.errors import BackendAuthRefused, FhirServerUnavailable, ScopeNotGranted, SettingsError
from plugin.settings import Settings
from workers.fhir_client import FhirClient, RetryPolicy
from workers.inbox.keys import SigningKey, key_path, load_key

log = logging.getLogger(__name__)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Assertions live 4 minutes: under the 5-minute ceiling with room for a clock a minute fast.
ASSERTION_LIFETIME_S = 240
# Servers that omit expires_in get this (SMART's recommended lifetime).
DEFAULT_TOKEN_LIFETIME_S = 300
_MAX_RESPONSE_BYTES = 256 * 1024
# SMART v1 permission words as v2 letters.
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}


@dataclass(frozen=True)
class AccessToken:
    value: str
    expires_at: float  # unix seconds
    scopes: tuple[str, ...]

    def __repr__(self) -> str:  # a token must never reach a log through a repr
        return f"AccessToken(expires_at={self.expires_at:.0f}, scopes={self.scopes})"


def scope_covers(granted: str, wanted: str) -> bool:
    """Does ``granted`` (e.g. ``system/*.cruds``) allow everything ``wanted`` (``system/Media.rs``) asks?"""
    if granted == wanted:
        return True
    g_context, _, g_rest = granted.partition("/")
    w_context, _, w_rest = wanted.partition("/")
    if g_context != w_context or "." not in g_rest or "." not in w_rest:
        return False
    g_type, _, g_perm = g_rest.partition(".")
    w_type, _, w_perm = w_rest.partition(".")
    if "?" in g_perm:  # a granular (filtered) grant does not cover an unfiltered request
        return False
    g_letters = _V1.get(g_perm, g_perm)
    w_letters = _V1.get(w_perm.split("?", 1)[0], w_perm.split("?", 1)[0])
    return g_type in ("*", w_type) and all(letter in g_letters for letter in w_letters)


def missing_scopes(wanted: list[str], granted: list[str]) -> list[str]:
    return [scope for scope in wanted if not any(scope_covers(g, scope) for g in granted)]


class BackendServicesClient:
    """One process's Backend Services client for the configured FHIR server (thread-safe)."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        extra_scopes: tuple[str, ...] = (),
    ) -> None:
        if settings.fhir_base is None:
            raise SettingsError("PHOTOMARKER_FHIR_BASE_URL: the inbox needs a FHIR server")
        if not settings.inbox_client_id:
            raise SettingsError("PHOTOMARKER_INBOX_CLIENT_ID: the inbox needs a Backend Services client id")
        self.settings = settings
        self.fhir_base: str = settings.fhir_base
        self.client_id: str = settings.inbox_client_id
        # extra_scopes: what one command needs beyond the inbox's own (e.g. creating its Subscription).
        self.scopes = [*settings.inbox_scopes.split(), *extra_scopes]
        self._clock = clock
        self._lock = threading.Lock()
        self._token: AccessToken | None = None
        self._token_url: str | None = None
        self._key: SigningKey | None = None
        self._http = httpx.Client(
            timeout=settings.fhir_timeout_s, follow_redirects=False, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    # --- what callers use ----------------------------------------------------------------------

    def token(self) -> AccessToken:
        """A valid access token: the cached one, or a new one when it is about to expire."""
        with self._lock:
            now = self._clock()
            if self._token is None or now >= self._token.expires_at:
                self._token = self._request_token(now)
            return self._token

    def fhir_client(self, token: AccessToken | None = None) -> FhirClient:
        """The one FHIR client, with ``token`` or the current one (the caller closes it)."""
        settings = self.settings
        return FhirClient(
            self.fhir_base,
            token=(token or self.token()).value,
            timeout=settings.fhir_timeout_s,
            retry=RetryPolicy(
                retries=settings.fhir_retries,
                backoff_s=settings.fhir_backoff_s,
                backoff_max_s=settings.fhir_backoff_max_s,
            ),
        )

    def forget_token(self) -> None:
        """Drop the cached token (e.g. after the server said it is no longer valid)."""
        with self._lock:
            self._token = None

    @property
    def token_url(self) -> str:
        with self._lock:
            return self._discover()

    def client_assertion(self, token_url: str, now: float) -> str:
        """A signed private_key_jwt assertion for one token request (fresh jti every time)."""
        key = self._signing_key()
        # No iat: a server whose clock is a second behind would call the assertion "not yet valid".
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": token_url,
            "exp": int(now) + ASSERTION_LIFETIME_S,
            "jti": secrets.token_urlsafe(24),
        }
        header = {"alg": key.alg, "kid": key.kid, "typ": "JWT"}
        return jwt.encode(header, claims, key.key, algorithms=[key.alg])

    # --- plumbing --------------------------------------------------------------------------------

    def _signing_key(self) -> SigningKey:
        if self._key is None:
            self._key = load_key(key_path(self.settings))
        return self._key

    def _discover(self) -> str:
        if self._token_url is not None:
            return self._token_url
        url = f"{self.fhir_base}/.well-known/smart-configuration"
        document = self._get_json(url, what="the SMART configuration")
        token_url = document.get("token_endpoint")
        if not isinstance(token_url, str) or not token_url.startswith(("https://", "http://")):
            raise BackendAuthRefused("the server's SMART configuration names no token_endpoint")
        methods = document.get("token_endpoint_auth_methods_supported")
        if isinstance(methods, list) and "private_key_jwt" not in methods:
            raise BackendAuthRefused("the server's token endpoint does not accept private_key_jwt")
        self._token_url = token_url
        return token_url

    def _request_token(self, now: float) -> AccessToken:
        token_url = self._discover()
        form = {
            "grant_type": "client_credentials",
            "scope": " ".join(self.scopes),
            "client_assertion_type": ASSERTION_TYPE,
            # The assertion's expiry is wall-clock time whatever clock the cache runs on.
            "client_assertion": self.client_assertion(token_url, time.time()),
        }
        try:
            response = self._http.post(token_url, data=form, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise FhirServerUnavailable(f"token endpoint unreachable ({type(exc).__name__})") from None
        if response.status_code >= 500 or response.status_code == 429:
            raise FhirServerUnavailable(f"token endpoint answered {response.status_code}")
        body = _json_object(response)
        if response.status_code != 200:
            error = str(body.get("error") or "no error code")[:100]
            description = str(body.get("error_description") or "")[:300]
            raise BackendAuthRefused(
                f"the token endpoint refused the inbox's client assertion ({response.status_code} {error})"
                + (f": {description}" if description else "")
            )
        value = body.get("access_token")
        if not isinstance(value, str) or not value:
            raise BackendAuthRefused("the token endpoint answered without an access_token")
        granted_text = body.get("scope")
        # RFC 6749 5.1: scope may be left out when it is what was asked for.
        granted = granted_text.split() if isinstance(granted_text, str) else list(self.scopes)
        missing = missing_scopes(self.scopes, granted)
        if missing:
            raise ScopeNotGranted(f"the inbox's access token lacks the scope(s) {' '.join(missing)}")
        lifetime = body.get("expires_in")
        seconds = DEFAULT_TOKEN_LIFETIME_S if not isinstance(lifetime, int | float) else float(lifetime)
        seconds = seconds if seconds > 0 else DEFAULT_TOKEN_LIFETIME_S
        # Renewed shortly before expiry: a request started with it must still be served.
        margin = max(5.0, min(60.0, seconds * 0.1))
        log.info("inbox: new access token, valid %.0f s", seconds)
        return AccessToken(value=value, expires_at=now + seconds - margin, scopes=tuple(granted))

    def _get_json(self, url: str, *, what: str) -> dict[str, Any]:
        try:
            response = self._http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise FhirServerUnavailable(f"{what} could not be read ({type(exc).__name__})") from None
        if response.status_code >= 500 or response.status_code == 429:
            raise FhirServerUnavailable(f"{what} could not be read ({response.status_code})")
        if response.status_code != 200:
            raise BackendAuthRefused(f"{what} could not be read ({response.status_code})")
        return _json_object(response)


def _json_object(response: httpx.Response) -> dict[str, Any]:
    if len(response.content) > _MAX_RESPONSE_BYTES:
        return {}
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
