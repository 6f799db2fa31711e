"""The one FHIR client: read resources and Binaries, post transactions — on one server only.

Every request goes to ``base_url``; redirects are not followed (a redirect could lead off the
server), responses are size-capped while streaming, and failures become ``FhirServerError``
with the status and the server's diagnostics — never the request body or a token.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from types import TracebackType
from typing import Any

import httpx

from fhir_mappings.inputs import binary_reference
from models.errors import BadBase64, FhirServerError, PhotoTooLarge

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
# A FHIR resource that is not a photo has no business being larger than this.
_MAX_RESOURCE_BYTES = 8 * 1024 * 1024


class FhirClient:
    """Synchronous client for one FHIR R4 server (a bearer token is optional)."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Accept": FHIR_JSON, "User-Agent": "photomarker"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.base_url + "/",
            headers=headers,
            timeout=timeout,
            follow_redirects=False,
            transport=transport,
        )

    def __enter__(self) -> FhirClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- reads --------------------------------------------------------------------------------

    def read(self, reference: str) -> dict[str, Any]:
        """GET ``Type/id`` (relative to the base)."""
        return self._request_json("GET", reference, max_bytes=_MAX_RESOURCE_BYTES)

    def read_binary(self, reference: str, *, max_bytes: int) -> bytes:
        """The bytes of ``Binary/<id>`` on this server, refused past ``max_bytes``."""
        relative = binary_reference(reference, self.base_url)
        # base64 inflates by 4/3; allow for the JSON around it.
        binary = self._request_json("GET", relative, max_bytes=max_bytes * 4 // 3 + 64 * 1024)
        data = binary.get("data")
        if not isinstance(data, str):
            raise FhirServerError(f"{relative} has no data")
        try:
            raw = base64.b64decode("".join(data.split()), validate=True)
        except (binascii.Error, ValueError):
            raise BadBase64(f"{relative} data is not valid base64") from None
        if len(raw) > max_bytes:
            raise PhotoTooLarge(f"{relative} is {len(raw)} bytes; the limit is {max_bytes}")
        return raw

    # --- writes -------------------------------------------------------------------------------

    def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """POST a transaction Bundle to the base; returns the transaction-response Bundle."""
        return self._request_json("POST", "", body=bundle, max_bytes=_MAX_RESOURCE_BYTES)

    def create(self, resource: dict[str, Any]) -> dict[str, Any]:
        return self._request_json(
            "POST", str(resource["resourceType"]), body=resource, max_bytes=_MAX_RESOURCE_BYTES
        )

    def search(self, resource_type: str, params: dict[str, str]) -> dict[str, Any]:
        return self._request_json("GET", resource_type, params=params, max_bytes=_MAX_RESOURCE_BYTES)

    # --- plumbing -----------------------------------------------------------------------------

    def _request_json(
        self,
        method: str,
        path: str,
        *,
        max_bytes: int,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        content = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": FHIR_JSON} if content is not None else {}
        try:
            with self._http.stream(method, path, content=content, headers=headers, params=params) as response:
                raw = _read_capped(response, max_bytes, path)
                status = response.status_code
        except httpx.HTTPError as exc:
            # The exception text holds only the URL and the transport error.
            raise FhirServerError(
                f"FHIR server unreachable ({type(exc).__name__}) for {method} {path or '/'}"
            ) from None
        log.debug("FHIR %s %s → %s (%d bytes)", method, path or "/", status, len(raw))
        if status >= 300:
            raise FhirServerError(
                f"FHIR server answered {status} to {method} {path or '/'}{_diagnostics(raw)}"
            )
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError:
            raise FhirServerError(f"FHIR server sent non-JSON to {method} {path or '/'}") from None
        if not isinstance(parsed, dict):
            raise FhirServerError(f"FHIR server sent a non-resource to {method} {path or '/'}")
        return parsed


def _read_capped(response: httpx.Response, max_bytes: int, path: str) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise PhotoTooLarge(f"{path} is {declared} bytes on the server; the limit is {max_bytes}")
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_bytes():
        total += len(chunk)
        if total > max_bytes:
            raise PhotoTooLarge(f"{path} is larger than the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _diagnostics(raw: bytes) -> str:
    """The OperationOutcome's issue codes/diagnostics, briefly — servers explain refusals there."""
    try:
        outcome = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return ""
    if not isinstance(outcome, dict) or outcome.get("resourceType") != "OperationOutcome":
        return ""
    texts = [
        str(issue.get("diagnostics") or issue.get("code"))
        for issue in outcome.get("issue", [])
        if isinstance(issue, dict)
    ]
    return (": " + "; ".join(texts))[:500] if texts else ""
