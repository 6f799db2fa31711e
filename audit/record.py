"""``AuditRecord``: one thing that happened, as the audit store keeps it and BALP exports it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class AuditAction(StrEnum):
    """FHIR AuditEvent.action: Create, Read, Update, Delete, Execute."""

    CREATE = "C"
    READ = "R"
    UPDATE = "U"
    DELETE = "D"
    EXECUTE = "E"


class AuditOutcome(StrEnum):
    """FHIR AuditEvent.outcome (R4): 0 success, 4 minor, 8 serious, 12 major failure."""

    SUCCESS = "0"
    MINOR_FAILURE = "4"
    SERIOUS_FAILURE = "8"
    MAJOR_FAILURE = "12"


@dataclass(frozen=True)
class AuditRecord:
    """Who did what to which data, when, from where, with what outcome and why.

    ``event`` is Photomarker's own name for what happened (``photo.read``,
    ``analysis.finished``, ``input.refused`` …); ``subtype`` is the FHIR RESTful interaction
    (``read``, ``create``, ``search-type`` …) when the event maps to one.
    """

    event: str
    action: AuditAction
    recorded: datetime
    outcome: AuditOutcome = AuditOutcome.SUCCESS
    outcome_reason: str | None = None  # failure code + message; never patient data
    subtype: str | None = None
    # Who: a FHIR reference for a user (Practitioner/1), a client id, "service:inbox", "cli:<user>".
    agent_who: str | None = None
    agent_client_id: str | None = None
    agent_token_jti: str | None = None
    source_ip: str | None = None
    patient: str | None = None  # "Patient/123"
    entities: tuple[str, ...] = field(default_factory=tuple)  # references to the data touched
    purpose_of_use: str | None = None  # v3 PurposeOfUse code, e.g. TREAT
    query: str | None = None  # search parameters, for search/query events
