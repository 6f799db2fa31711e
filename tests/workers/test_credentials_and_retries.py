"""FHIR credentials are encrypted at rest; the FHIR client waits out 5xx/429 (Retry-After) and timeouts.

The retry tests talk to the real FHIR test server through an httpx transport that fakes the
failures at the HTTP seam and passes everything else through.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from models.errors import CredentialUnavailable, FhirServerError, FhirServerUnavailable, SettingsError
from workers.credentials import CredentialStore, load_or_create_key
from workers.fhir_client import FhirClient, RetryPolicy
from workers.jobs import JobStore


def test_the_generated_key_is_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "data" / "credential.key"
    key = load_or_create_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_key(path) == key
    path.chmod(0o644)
    with pytest.raises(SettingsError, match="chmod 600"):
        load_or_create_key(path)


def test_credentials_are_encrypted_expire_and_can_be_forgotten(tmp_path: Path) -> None:
    store = JobStore.from_url(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    credentials = CredentialStore(store, Fernet(Fernet.generate_key()), max_age_s=1)
    handle = credentials.put("bearer-secret-xyz")
    assert "bearer-secret-xyz" not in handle
    assert b"bearer-secret-xyz" not in b"".join(p.read_bytes() for p in tmp_path.glob("jobs.sqlite*"))
    assert credentials.get(handle) == "bearer-secret-xyz"
    other_key = CredentialStore(store, Fernet(Fernet.generate_key()), max_age_s=60)
    with pytest.raises(CredentialUnavailable):
        other_key.get(handle)
    time.sleep(2.1)
    with pytest.raises(CredentialUnavailable, match="expired"):
        credentials.get(handle)
    credentials.delete(handle)
    with pytest.raises(CredentialUnavailable, match="no longer stored"):
        credentials.get(handle)


class Flaky(httpx.BaseTransport):
    """Answers the first ``failures`` requests itself, then passes requests to the real server."""

    def __init__(self, failures: list[httpx.Response | Exception]) -> None:
        self.failures = failures
        self.real = httpx.HTTPTransport()
        self.seen = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen += 1
        if self.failures:
            failure = self.failures.pop(0)
            if isinstance(failure, Exception):
                raise failure
            return failure
        return self.real.handle_request(request)


@pytest.mark.fhir_server
def test_503_twice_then_success_returns_the_real_answer(fhir_server: str) -> None:
    transport = Flaky([httpx.Response(503), httpx.Response(503)])
    waits: list[float] = []
    client = FhirClient(
        fhir_server, transport=transport, retry=RetryPolicy(retries=3, backoff_s=0.1), sleep=waits.append
    )
    assert client.read("metadata")["resourceType"] == "CapabilityStatement"
    assert transport.seen == 3 and len(waits) == 2 and waits[1] > waits[0]


@pytest.mark.fhir_server
def test_429_retry_after_and_timeouts_are_honoured(fhir_server: str) -> None:
    transport = Flaky(
        [
            httpx.Response(429, headers={"Retry-After": "7"}),
            httpx.ReadTimeout("slow"),
        ]
    )
    waits: list[float] = []
    client = FhirClient(
        fhir_server,
        transport=transport,
        retry=RetryPolicy(retries=2, backoff_s=0.1, backoff_max_s=30),
        sleep=waits.append,
    )
    assert client.read("metadata")["resourceType"] == "CapabilityStatement"
    assert waits[0] == 7  # the server's Retry-After, not the shorter backoff


def test_giving_up_raises_the_transient_error_and_4xx_is_not_retried() -> None:
    transport = Flaky([httpx.Response(503)] * 5)
    client = FhirClient(
        "http://fhir.test/fhir", transport=transport, retry=RetryPolicy(retries=2), sleep=lambda _: None
    )
    with pytest.raises(FhirServerUnavailable):
        client.read("Media/1")
    assert transport.seen == 3

    refused = Flaky([httpx.Response(404, json={"resourceType": "OperationOutcome", "issue": []})])
    client = FhirClient(
        "http://fhir.test/fhir", transport=refused, retry=RetryPolicy(retries=5), sleep=lambda _: None
    )
    with pytest.raises(FhirServerError) as caught:
        client.read("Media/1")
    assert not isinstance(caught.value, FhirServerUnavailable) and refused.seen == 1
