"""``AuditRecord`` → FHIR R4 AuditEvent following IHE BALP (Basic Audit Log Patterns).

Shape, per BALP: ``type`` rest + a restful-interaction ``subtype`` for FHIR interactions (else
DICOM "Application Activity" / "User Authentication"), plus Photomarker's own event name as a
second subtype; the user agent (``requestor``; OAuth ``jti`` in ``policy`` as
``urn:ietf:params:oauth:jti:<jti>`` with BALP's UserOauthAgent type); the application agent
(OAuth client id, network address); ``source`` = Photomarker; one "System Object" entity per
resource touched, the patient as a "Person"/"Patient" entity, and the search as a "Query"
entity. Failures carry the reason in ``outcomeDesc``. Profiles are followed, not claimed.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from audit.record import AuditAction, AuditOutcome, AuditRecord
from fhir_mappings import codes
from fhir_mappings.context import fhir_instant
from fhir_mappings.validation import Resource, validate_resource

_RESTFUL_INTERACTIONS = frozenset(
    {
        "read", "vread", "update", "patch", "delete", "history", "history-instance",
        "history-type", "history-system", "create", "search", "search-type", "search-system",
        "capabilities", "transaction", "batch", "operation",
    }
)  # fmt: skip
# Events about signing in or launching are "User Authentication" (DICOM 110114).
_AUTHENTICATION_PREFIXES = ("login", "logout", "launch", "auth")
_REFERENCE = re.compile(
    r"^(https?://\S+|urn:uuid:[0-9a-f-]{36}|[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}(/_history/[A-Za-z0-9\-.]{1,64})?)$"
)


def _coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def _who(value: str, system: str) -> dict[str, Any]:
    """A FHIR reference when ``value`` is one, else a named identifier (``service:inbox``)."""
    if _REFERENCE.match(value):
        return {"reference": value}
    return {"identifier": {"system": system, "value": value}, "display": value}


def _type(record: AuditRecord) -> tuple[dict[str, str], list[dict[str, str]]]:
    if record.subtype in _RESTFUL_INTERACTIONS:
        return (
            _coding(codes.AUDIT_EVENT_TYPE, "rest", "Restful Operation"),
            [_coding(codes.RESTFUL_INTERACTION, record.subtype, record.subtype)],
        )
    # An unknown subtype stays readable in the event name below rather than failing an export.
    if record.event.startswith(_AUTHENTICATION_PREFIXES):
        return _coding(codes.DICOM, "110114", "User Authentication"), []
    return _coding(codes.DICOM, "110100", "Application Activity"), []


def _user_agent(record: AuditRecord, who: str, canonical: str) -> dict[str, Any]:
    type_codings = []
    if record.agent_token_jti:
        type_codings.append(
            _coding(codes.BALP_USER_AGENT_TYPES, "UserOauthAgent", "User OAuth Agent participant")
        )
    if record.action is AuditAction.READ:
        type_codings.append(_coding(codes.V3_PARTICIPATION_TYPE, "IRCP", "information recipient"))
    else:
        type_codings.append(_coding(codes.V3_PARTICIPATION_TYPE, "AUT", "author (originator)"))
    agent: dict[str, Any] = {
        "type": {"coding": type_codings},
        "who": _who(who, codes.agent_system(canonical)),
    }
    agent["requestor"] = True
    if record.agent_token_jti:
        agent["policy"] = [f"urn:ietf:params:oauth:jti:{record.agent_token_jti}"]
    if record.purpose_of_use:
        agent["purposeOfUse"] = [{"coding": [{"system": codes.V3_ACT_REASON, "code": record.purpose_of_use}]}]
    return agent


def _application_agent(record: AuditRecord, canonical: str, software_version: str) -> dict[str, Any]:
    if record.agent_client_id:
        who = {
            "identifier": {"system": codes.oauth_client_system(canonical), "value": record.agent_client_id},
            "display": record.agent_client_id,
        }
    else:
        who = _software(canonical, software_version)
    agent: dict[str, Any] = {
        "type": {"coding": [_coding(codes.DICOM, "110150", "Application")]},
        "who": who,
        "requestor": record.agent_who is None,
    }
    if record.source_ip:
        agent["network"] = {"address": record.source_ip, "type": "2"}  # 2 = IP address
    return agent


def _software(canonical: str, software_version: str) -> dict[str, Any]:
    return {
        "identifier": {
            "system": codes.software_system(canonical),
            "value": f"photomarker-{software_version}",
        },
        "display": f"Photomarker {software_version}",
    }


def _entities(record: AuditRecord, canonical: str) -> list[dict[str, Any]]:
    system_object = _coding(codes.AUDIT_ENTITY_TYPE, "2", "System Object")
    entities: list[dict[str, Any]] = [
        {
            "what": _who(ref, f"{canonical}/identifier/audit-entity"),
            "type": system_object,
            "role": _coding(codes.AUDIT_OBJECT_ROLE, "4", "Domain Resource"),
        }
        for ref in dict.fromkeys(record.entities)
        if ref != record.patient
    ]
    if record.patient:
        entities.append(
            {
                "what": {"reference": record.patient},
                "type": _coding(codes.AUDIT_ENTITY_TYPE, "1", "Person"),
                "role": _coding(codes.AUDIT_OBJECT_ROLE, "1", "Patient"),
            }
        )
    if record.query:
        entities.append(
            {
                "type": system_object,
                "role": _coding(codes.AUDIT_OBJECT_ROLE, "24", "Query"),
                "query": base64.b64encode(record.query.encode("utf-8")).decode("ascii"),
            }
        )
    return entities


def build_audit_event(
    record: AuditRecord, *, canonical: str, software_version: str, site: str | None = None
) -> Resource:
    """The BALP-shaped AuditEvent for one audit record; ``site`` names the deployment."""
    event_type, subtypes = _type(record)
    subtypes.append(_coding(codes.audit_event_system(canonical), record.event, record.event))
    event: Resource = {
        "resourceType": "AuditEvent",
        "type": event_type,
        "subtype": subtypes,
        "action": record.action.value,
        "recorded": fhir_instant(record.recorded),
        "outcome": record.outcome.value,
    }
    if record.outcome is not AuditOutcome.SUCCESS:
        # BALP: failures carry their reason; say so when the record has none rather than omit it.
        event["outcomeDesc"] = record.outcome_reason or "Failed; no reason was recorded"
    if record.purpose_of_use:
        event["purposeOfEvent"] = [
            {"coding": [{"system": codes.V3_ACT_REASON, "code": record.purpose_of_use}]}
        ]
    agents = []
    if record.agent_who:
        agents.append(_user_agent(record, record.agent_who, canonical))
    agents.append(_application_agent(record, canonical, software_version))
    event["agent"] = agents
    source: dict[str, Any] = {
        "observer": _software(canonical, software_version),
        "type": [_coding(codes.AUDIT_SOURCE_TYPE, "4", "Application Server")],
    }
    if site:
        source["site"] = site
    event["source"] = source
    entities = _entities(record, canonical)
    if entities:
        event["entity"] = entities
    validate_resource(event)
    return event
