"""The write-back Bundle against a real FHIR R4 server with strict inbound validation.

Posting the same transaction twice must create nothing the second time; references between
entries must land on the server's ids; AuditEvents and CodeSystems must be accepted as-is.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import replace
from typing import Any

import httpx
import pytest

from audit.record import AuditAction, AuditRecord
from fhir_mappings.audit_event import build_audit_event
from fhir_mappings.bundle import build_result_bundle
from fhir_mappings.codesystem import build_code_systems
from fhir_mappings.context import Requester, ResultContext
from fhir_mappings.media import HeatMap, build_file_media
from models.results import AnalysisNotPerformed, AnalysisReport, HbEstimate, PatientFacts, TisScore
from tests.fhir_validation import CANONICAL, ISSUED, sample_model, sample_photo, sample_quality

pytestmark = pytest.mark.fhir_server

FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x02" * 16
COUNTED = ("Observation", "Provenance", "Device", "Media")


def counts(base: str) -> dict[str, int]:
    return {
        kind: int(
            httpx.get(f"{base}/{kind}", params={"_summary": "count"}, headers=FHIR_JSON).json()["total"]
        )
        for kind in COUNTED
    }


def post(base: str, resource: dict[str, Any]) -> dict[str, Any]:
    kind = resource["resourceType"]
    url = base if kind == "Bundle" else f"{base}/{kind}"
    response = httpx.post(url, json=resource, headers=FHIR_JSON, timeout=30)
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


def file_bundle() -> dict[str, Any]:
    original = b"original photo file"
    ctx = ResultContext.for_file(
        replace(sample_photo(), source=None),
        file_sha256=hashlib.sha256(original).hexdigest(),
        canonical=CANONICAL,
        issued=ISSUED,
        # A version no other test writes: the server is shared by the session, and another
        # test's results may already have created the Device of the real version.
        software_version=f"0.1.0+test.{uuid.uuid4().hex[:8]}",
        requester=Requester(display="cli:alice"),
        patient_facts=PatientFacts(age_months=400, sex="female"),
    )
    model = sample_model(reference_only=True)
    report = AnalysisReport(
        quality=sample_quality(),
        model_results=(
            (model, TisScore(2, 1, 0)),
            (sample_model(name="hb", weights_sha256="d" * 64), HbEstimate(10.1, 9.0, 11.3)),
        ),
        not_performed=(AnalysisNotPerformed("skin-tumour", "No skin tumour model is installed."),),
    )
    media = build_file_media(ctx, image=PNG, content_type="image/png")
    return build_result_bundle(report, ctx, source_media=media, heatmaps=[HeatMap("tis", model, PNG)])


def test_posting_the_same_bundle_twice_creates_nothing_new(fhir_server: str) -> None:
    bundle = file_bundle()
    before = counts(fhir_server)
    first = post(fhir_server, bundle)
    after_first = counts(fhir_server)
    second = post(fhir_server, bundle)
    assert counts(fhir_server) == after_first
    assert after_first == {
        "Observation": before["Observation"] + 4,  # quality, TIS, Hb, tumour not performed
        "Provenance": before["Provenance"] + 1,
        "Device": before["Device"] + 3,  # Photomarker + two models
        "Media": before["Media"] + 2,  # the photo + the heat map
    }
    assert [e["response"]["status"][:3] for e in first["entry"]] == ["201"] * len(bundle["entry"])
    assert [e["response"]["status"][:3] for e in second["entry"]] == ["200"] * len(bundle["entry"])
    assert [e["response"]["location"] for e in first["entry"]] == [
        e["response"]["location"] for e in second["entry"]
    ]


def test_references_inside_the_bundle_land_on_server_ids(fhir_server: str) -> None:
    bundle = file_bundle()
    response = post(fhir_server, bundle)
    location = {
        entry["fullUrl"]: "/".join(result["response"]["location"].split("/_history")[0].split("/")[-2:])
        for entry, result in zip(bundle["entry"], response["entry"], strict=True)
    }
    media_id = location[bundle["entry"][0]["fullUrl"]]
    observations = httpx.get(
        f"{fhir_server}/Observation", params={"derived-from": media_id}, headers=FHIR_JSON
    ).json()
    derived = [e["resource"] for e in observations.get("entry", [])]
    assert derived, "no Observation points at the photo's Media"
    for obs in derived:
        assert obs["derivedFrom"] == [{"reference": media_id}]
        assert obs["device"]["reference"].startswith("Device/")
    provenance_id = location[bundle["entry"][-1]["fullUrl"]]
    provenance = httpx.get(f"{fhir_server}/{provenance_id}", headers=FHIR_JSON).json()
    assert all(
        target["reference"].split("/")[0] in ("Observation", "Media") for target in provenance["target"]
    )


def test_audit_events_and_code_systems_are_accepted(fhir_server: str) -> None:
    record = AuditRecord(
        event="photo.read",
        action=AuditAction.READ,
        recorded=ISSUED,
        subtype="read",
        agent_who="Practitioner/dr-sato",
        agent_token_jti="abc",
        patient="Patient/p-1001",
        entities=("Media/photo-17/_history/3",),
    )
    post(fhir_server, build_audit_event(record, canonical=CANONICAL, software_version="0.1.0"))
    for code_system in build_code_systems(CANONICAL, "0.1.0"):
        post(fhir_server, code_system)
