"""Audit records exported as IHE BALP AuditEvents: what an auditor relies on finding."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from typing import Any

from audit.record import AuditAction, AuditOutcome, AuditRecord
from fhir_mappings.audit_event import build_audit_event
from tests.fhir_validation import CANONICAL, assert_valid_fhir

WHEN = datetime(2026, 3, 1, 10, 2, 1, tzinfo=timezone(timedelta(hours=9)))


def export(**fields: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {"event": "photo.read", "action": AuditAction.READ, "recorded": WHEN}
    record = AuditRecord(**(defaults | fields))
    event = build_audit_event(record, canonical=CANONICAL, software_version="0.1.0")
    assert_valid_fhir(event)
    return event


def agent_with(event: dict[str, Any], code: str) -> dict[str, Any]:
    return next(a for a in event["agent"] if code in {c["code"] for c in a["type"]["coding"]})


def test_a_rest_read_has_balp_type_subtype_and_keeps_the_offset() -> None:
    event = export(subtype="read")
    assert event["type"]["code"] == "rest"
    assert {(c["system"], c["code"]) for c in event["subtype"]} == {
        ("http://hl7.org/fhir/restful-interaction", "read"),
        (f"{CANONICAL}/CodeSystem/photomarker-audit-event", "photo.read"),
    }
    assert event["action"] == "R"
    assert event["recorded"] == "2026-03-01T10:02:01+09:00"
    assert event["outcome"] == "0" and "outcomeDesc" not in event


def test_the_user_is_the_requestor_with_token_id_and_purpose() -> None:
    event = export(
        subtype="read",
        agent_who="Practitioner/dr-sato",
        agent_client_id="photomarker-smart",
        agent_token_jti="jti-123",
        purpose_of_use="TREAT",
        source_ip="10.0.0.7",
    )
    user = agent_with(event, "UserOauthAgent")
    assert user["who"] == {"reference": "Practitioner/dr-sato"}
    assert user["requestor"] is True
    assert user["policy"] == ["urn:ietf:params:oauth:jti:jti-123"]
    assert user["purposeOfUse"][0]["coding"][0]["code"] == "TREAT"
    app = agent_with(event, "110150")
    assert app["who"]["identifier"]["value"] == "photomarker-smart"
    assert app["requestor"] is False
    assert app["network"] == {"address": "10.0.0.7", "type": "2"}


def test_a_service_without_a_fhir_identity_is_named() -> None:
    event = export(action=AuditAction.CREATE, subtype="create", agent_who="service:inbox")
    user = agent_with(event, "AUT")
    assert user["who"]["display"] == "service:inbox"
    assert "reference" not in user["who"]


def test_data_and_patient_entities_use_balp_roles() -> None:
    event = export(subtype="read", patient="Patient/p-1", entities=("Media/m-1/_history/2", "Patient/p-1"))
    data, patient = event["entity"]
    assert data["what"] == {"reference": "Media/m-1/_history/2"}
    assert (data["type"]["code"], data["role"]["code"]) == ("2", "4")
    assert patient["what"] == {"reference": "Patient/p-1"}
    assert (patient["type"]["code"], patient["role"]["code"]) == ("1", "1")


def test_failures_carry_their_reason() -> None:
    event = export(
        event="input.refused",
        action=AuditAction.CREATE,
        subtype="create",
        outcome=AuditOutcome.SERIOUS_FAILURE,
        outcome_reason="hash-mismatch: content.hash does not match",
    )
    assert event["outcome"] == "8"
    assert event["outcomeDesc"] == "hash-mismatch: content.hash does not match"
    silent = export(outcome=AuditOutcome.MINOR_FAILURE)
    assert "no reason" in silent["outcomeDesc"]


def test_an_audit_search_is_itself_recorded_with_its_query() -> None:
    event = export(event="audit.search", action=AuditAction.EXECUTE, subtype="search-type",
                   agent_who="cli:auditor", query="patient=Patient/p-1")  # fmt: skip
    (query,) = [e for e in event["entity"] if e["role"]["code"] == "24"]
    assert base64.b64decode(query["query"]).decode() == "patient=Patient/p-1"


def test_events_outside_rest_are_application_or_authentication_activity() -> None:
    assert export(event="login", action=AuditAction.EXECUTE)["type"]["code"] == "110114"
    odd = export(event="analysis.finished", action=AuditAction.EXECUTE, subtype="not-a-rest-interaction")
    assert odd["type"]["code"] == "110100"
    assert [c["code"] for c in odd["subtype"]] == ["analysis.finished"]
