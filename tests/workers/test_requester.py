"""Who a Provenance names: a verified clinician as a reference, services and API clients by name."""

from __future__ import annotations

import pytest

from workers.job_resources import requester_of


@pytest.mark.parametrize(
    "fhir_user", ["Practitioner/dr-1", "https://ehr.example.org/fhir/Practitioner/7", "PractitionerRole/r.2"]
)
def test_a_verified_clinician_is_referenced(fhir_user: str) -> None:
    requester = requester_of(f"clinician:{fhir_user}")
    assert requester.as_reference() == {"reference": fhir_user, "display": f"clinician:{fhir_user}"}


@pytest.mark.parametrize(
    "requested_by",
    [
        "clinician:unverified",
        "service:inbox",
        "api-token:lab-robot",
        "clinician:Practitioner/../x",
        "cli:alice",
    ],
)
def test_anything_else_is_named_not_referenced(requested_by: str) -> None:
    assert requester_of(requested_by).as_reference() == {"display": requested_by}
