"""The one FHIR client: read resources and Binaries, post transactions — on one server only.

Every request goes to ``base_url``; redirects are not followed (a redirect could lead off the
server), responses are size-capped while streaming, and failures become ``FhirServerError``
with the status and the server's diagnostics — never the request body or a token.

A :class:`RetryPolicy` makes the client try again, with exponential backoff, when the server
is unavailable (5xx, 408, 429 with its ``Retry-After``, timeouts, dropped connections); what
is still failing after that is a ``FhirServerUnavailable``, which a worker may retry later.
Every request Photomarker makes is safe to repeat: reads, and transactions whose entries are
all conditional creates.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any

import httpx

from fhir_mappings.attachments import binary_reference
from models.errors import BadBase64, FhirServerError, FhirServerUnavailable, PhotoTooLarge

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
# A FHIR resource that is not a photo has no business being larger than this.
_MAX_RESOURCE_BYTES = 8 * 1024 * 1024
# Statuses that say "not now" rather than "no": worth the same request again later.
_RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to repeat a request the server could not serve right now."""

    retries: int = 0  # extra attempts after the first
    backoff_s: float = 0.5  # wait before the first retry; doubles each time
    backoff_max_s: float = 30.0  # no single wait is longer, whatever Retry-After says

    def delay(self, retry: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        # Jitter (±20 %) so that workers that failed together do not come back together.
        exponential = self.backoff_s * float(2**retry) * random.uniform(0.8, 1.2)  # noqa: S311
        wait = max(exponential, retry_after or 0.0)
        return float(min(wait, self.backoff_max_s))


class FhirClient:
    """Synchronous client for one FHIR R4 server (a bearer token is optional)."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
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
        retry = 0
        while True:
            try:
                return self._request_once(method, path, max_bytes=max_bytes, body=body, params=params)
            except FhirServerUnavailable as error:
                if retry >= self.retry.retries:
                    raise
                wait = self.retry.delay(retry, error.retry_after)
                log.info(
                    "FHIR %s %s unavailable; retry %d in %.1f s",
                    method,
                    _resource_type(path),
                    retry + 1,
                    wait,
                )
                self._sleep(wait)
                retry += 1

    def _request_once(
        self,
        method: str,
        path: str,
        *,
        max_bytes: int,
        body: dict[str, Any] | None,
        params: dict[str, str] | None,
    ) -> dict[str, Any]:
        content = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": FHIR_JSON} if content is not None else {}
        where = f"{method} {path or '/'}"
        try:
            with self._http.stream(method, path, content=content, headers=headers, params=params) as response:
                status = response.status_code
                if status in _RETRYABLE_STATUSES:
                    raise FhirServerUnavailable(
                        f"FHIR server answered {status} to {where}",
                        retry_after=_retry_after(response.headers.get("Retry-After")),
                    )
                raw = _read_capped(response, max_bytes, path)
        except httpx.HTTPError as exc:
            # Timeouts and dropped connections; the exception text holds only the URL and the
            # transport error, and neither is repeated here.
            raise FhirServerUnavailable(
                f"FHIR server unreachable ({type(exc).__name__}) for {where}"
            ) from None
        # Only the resource type: an id (Patient/123) in an application log is patient data.
        log.debug("FHIR %s %s → %s (%d bytes)", method, _resource_type(path), status, len(raw))
        if status >= 300:
            raise FhirServerError(f"FHIR server answered {status} to {where}{_diagnostics(raw)}")
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError:
            raise FhirServerError(f"FHIR server sent non-JSON to {where}") from None
        if not isinstance(parsed, dict):
            raise FhirServerError(f"FHIR server sent a non-resource to {where}")
        return parsed


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None when absent or odd."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


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


def _resource_type(path: str) -> str:
    """``Patient/123/_history/2`` → ``Patient/…``: what a log line may say about a request."""
    head, query, _ = path.lstrip("/").partition("?")
    first, _, rest = head.partition("/")
    return f"{first or '/'}{'/…' if rest else ''}{'?…' if query else ''}"
