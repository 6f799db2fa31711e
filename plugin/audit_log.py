"""Opening the audit store from settings, and the audit events the CLI itself records."""

from __future__ import annotations

import getpass
from datetime import datetime

from audit.record import AuditAction, AuditOutcome, AuditRecord
from audit.store import AuditStore
from models.errors import PhotomarkerError
from plugin.settings import Settings


def open_audit_store(settings: Settings) -> AuditStore:
    """The audit store the settings name; the embedded default lives under the data dir."""
    if settings.audit_database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = settings.audit_hmac_key.get_secret_value().encode() if settings.audit_hmac_key else None
    return AuditStore.from_url(settings.effective_audit_database_url, hmac_key=key)


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name in some containers
        return "cli:unknown"


def refusal_record(
    error: PhotomarkerError, *, who: str, entities: tuple[str, ...] = (), patient: str | None = None
) -> AuditRecord:
    """A refused input: the stable code and the reason (messages never carry patient data)."""
    return AuditRecord(
        event="input.refused",
        action=AuditAction.EXECUTE,
        recorded=datetime.now().astimezone(),
        outcome=AuditOutcome.MINOR_FAILURE,
        outcome_reason=f"{error.code}: {error.message}",
        agent_who=who,
        patient=patient,
        entities=entities,
    )


def analysis_record(*, who: str, entities: tuple[str, ...], patient: str | None) -> AuditRecord:
    return AuditRecord(
        event="analysis.finished",
        action=AuditAction.EXECUTE,
        recorded=datetime.now().astimezone(),
        outcome=AuditOutcome.SUCCESS,
        agent_who=who,
        patient=patient,
        entities=entities,
    )


def written_record(*, who: str, locations: tuple[str, ...]) -> AuditRecord:
    return AuditRecord(
        event="resources.written",
        action=AuditAction.CREATE,
        subtype="transaction",
        recorded=datetime.now().astimezone(),
        agent_who=who,
        entities=locations,
    )
