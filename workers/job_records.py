"""The job records: what a job is as stored (``Job``), as the API accepts it (``NewJob``) and as a
worker claims it (``Claim``), its states, and how a job reads in the audit trail.

They live apart from ``workers.jobs`` (the SQL store that creates and moves them) so that code
which only reads, reports or audits jobs needs no part of the store. ``job_from_row`` is the one
place a ``workers.job_schema.jobs`` row becomes a ``Job``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy.engine import RowMapping

from audit.record import AuditAction, AuditOutcome, AuditRecord

JobStatus = Literal["queued", "running", "done", "failed"]
TERMINAL: tuple[JobStatus, ...] = ("done", "failed")


@dataclass(frozen=True)
class Job:
    """One job as stored."""

    id: str
    status: JobStatus
    queue: str
    kind: str
    fhir_base: str | None
    reference: str | None
    resource: str | None
    credential: str | None
    requested_by: str
    patient: str | None
    batch_owner: str | None
    worker: str | None
    lease_until: float | None
    attempts: int
    transient_failures: int
    error_code: str | None
    error_message: str | None
    written: tuple[str, ...]
    result_bundle: dict[str, Any] | None
    created_at: float
    started_at: float | None
    finished_at: float | None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class NewJob:
    """What the API knows when it accepts a job."""

    id: str
    queue: str
    kind: str
    requested_by: str
    fhir_base: str | None = None
    reference: str | None = None
    resource: str | None = None
    credential: str | None = None
    patient: str | None = None


@dataclass(frozen=True)
class Claim:
    """What a message may work on now: its batch, or the time another worker's lease ends."""

    jobs: tuple[Job, ...] = ()
    lease_held_until: float | None = None


def job_from_row(row: RowMapping) -> Job:
    """A ``jobs`` row as a ``Job``: JSON columns decoded, counters never None."""
    written = json.loads(row["written"]) if row["written"] else []
    bundle = json.loads(row["result_bundle"]) if row["result_bundle"] else None
    return Job(
        id=row["id"],
        status=cast(JobStatus, row["status"]),
        queue=row["queue"],
        kind=row["kind"],
        fhir_base=row["fhir_base"],
        reference=row["reference"],
        resource=row["resource"],
        credential=row["credential"],
        requested_by=row["requested_by"],
        patient=row["patient"],
        batch_owner=row["batch_owner"],
        worker=row["worker"],
        lease_until=row["lease_until"],
        attempts=int(row["attempts"] or 0),
        transient_failures=int(row["transient_failures"] or 0),
        error_code=row["error_code"],
        error_message=row["error_message"],
        written=tuple(str(ref) for ref in written),
        result_bundle=bundle,
        created_at=float(row["created_at"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


def job_audit_record(
    job: Job,
    what: str,
    outcome: AuditOutcome,
    *,
    reason: str | None = None,
    entities: tuple[str, ...] = (),
    source_ip: str | None = None,
) -> AuditRecord:
    """``job.<what>``: who asked, for which patient and photo, how it ended and why."""
    photo = (job.reference,) if job.reference else ()
    return AuditRecord(
        event=f"job.{what}",
        action=AuditAction.EXECUTE,
        recorded=datetime.now().astimezone(),
        outcome=outcome,
        outcome_reason=reason,
        agent_who=job.requested_by,
        source_ip=source_ip,
        patient=job.patient,
        entities=(job_urn(job.id), *photo, *entities),
    )


def job_urn(job_id: str) -> str:
    return f"urn:photomarker:job:{job_id}"
