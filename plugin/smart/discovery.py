"""Which FHIR servers may launch the app, and what their ``.well-known/smart-configuration`` says.

A launch names its FHIR server in ``iss``; the app fetches nothing from a server that is not on
the allow-list (``PHOTOMARKER_SMART_ALLOWED_ISSUERS``, by default the configured FHIR base), so a
crafted launch link cannot make it call arbitrary URLs. Documents are read without following
redirects, with a timeout and a size cap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from models.errors import IssuerNotAllowed, SmartDiscoveryFailed
from plugin.settings import Settings

# A smart-configuration or a key set is a few KiB; anything far larger is not one.
_MAX_DOCUMENT_BYTES = 256 * 1024


def allowed_issuers(settings: Settings) -> tuple[str, ...]:
    """The FHIR base URLs a launch may name (no trailing slash)."""
    named = tuple(url.rstrip("/") for url in settings.smart_allowed_issuers.split() if url)
    if named:
        return named
    return (settings.fhir_base,) if settings.fhir_base else ()


def checked_issuer(iss: str | None, settings: Settings) -> str:
    """``iss`` as the allow-list spells it; ``IssuerNotAllowed`` when it is not on the list."""
    wanted = (iss or "").strip().rstrip("/")
    if not wanted:
        raise IssuerNotAllowed("the launch did not say which FHIR server it came from (no iss)")
    for allowed in allowed_issuers(settings):
        if wanted == allowed:
            return allowed
    # The iss is echoed nowhere: it is attacker-chosen text.
    raise IssuerNotAllowed("the launch came from a FHIR server this Photomarker is not set up to work with")


@dataclass(frozen=True)
class SmartConfiguration:
    """The parts of a server's smart-configuration the launch uses."""

    iss: str
    authorization_endpoint: str
    token_endpoint: str
    issuer: str | None = None
    jwks_uri: str | None = None
    scopes_supported: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "iss": self.iss,
            "authorization_endpoint": self.authorization_endpoint,
            "token_endpoint": self.token_endpoint,
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "scopes_supported": list(self.scopes_supported),
            "capabilities": list(self.capabilities),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SmartConfiguration:
        return cls(
            iss=data["iss"],
            authorization_endpoint=data["authorization_endpoint"],
            token_endpoint=data["token_endpoint"],
            issuer=data.get("issuer"),
            jwks_uri=data.get("jwks_uri"),
            scopes_supported=tuple(data.get("scopes_supported") or ()),
            capabilities=tuple(data.get("capabilities") or ()),
        )


def discover(iss: str, settings: Settings) -> SmartConfiguration:
    """Read and check ``{iss}/.well-known/smart-configuration``; ``iss`` must be allow-listed already."""
    document = get_json(f"{iss}/.well-known/smart-configuration", settings, what="the SMART configuration")
    authorize = _endpoint(document, "authorization_endpoint", iss)
    token = _endpoint(document, "token_endpoint", iss)
    methods = document.get("code_challenge_methods_supported")
    if isinstance(methods, list) and "S256" not in methods:
        raise SmartDiscoveryFailed("the FHIR server's authorization server does not offer PKCE S256")
    jwks = document.get("jwks_uri")
    issuer = document.get("issuer")
    return SmartConfiguration(
        iss=iss,
        authorization_endpoint=authorize,
        token_endpoint=token,
        issuer=issuer if isinstance(issuer, str) and issuer else None,
        jwks_uri=_endpoint(document, "jwks_uri", iss) if jwks is not None else None,
        scopes_supported=_strings(document.get("scopes_supported")),
        capabilities=_strings(document.get("capabilities")),
    )


def get_json(url: str, settings: Settings, *, what: str) -> dict[str, Any]:
    """GET a JSON object: no redirects, capped, every failure a ``SmartDiscoveryFailed`` naming ``what``."""
    try:
        with (
            httpx.Client(timeout=settings.fhir_timeout_s, follow_redirects=False) as client,
            client.stream("GET", url, headers={"Accept": "application/json"}) as response,
        ):
            if response.status_code != 200:
                raise SmartDiscoveryFailed(f"the FHIR server answered {response.status_code} for {what}")
            raw = b""
            for chunk in response.iter_bytes():
                raw += chunk
                if len(raw) > _MAX_DOCUMENT_BYTES:
                    raise SmartDiscoveryFailed(f"{what} is implausibly large")
    except httpx.HTTPError as exc:
        raise SmartDiscoveryFailed(
            f"the FHIR server could not be reached for {what} ({type(exc).__name__})"
        ) from None
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SmartDiscoveryFailed(f"{what} is not JSON") from None
    if not isinstance(document, dict):
        raise SmartDiscoveryFailed(f"{what} is not a JSON object")
    return document


def _endpoint(document: dict[str, Any], name: str, iss: str) -> str:
    value = document.get(name)
    if not isinstance(value, str) or not value:
        raise SmartDiscoveryFailed(f"the SMART configuration has no {name}")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise SmartDiscoveryFailed(f"the SMART configuration's {name} is not an http(s) URL")
    # A server reached over HTTPS may not send tokens or codes anywhere in clear text.
    if urlsplit(iss).scheme == "https" and parts.scheme != "https":
        raise SmartDiscoveryFailed(f"the SMART configuration's {name} is not HTTPS")
    return value


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(item for item in value if isinstance(item, str)) if isinstance(value, list) else ()
