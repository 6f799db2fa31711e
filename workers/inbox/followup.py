"""After an inbox job: a retake request when the photo failed the quality gate, or one more try.

Runs in the worker right after the batch (and again from the poll tick for jobs that another
message's batch finished). Each finished inbox job is followed up once: the store's conditional
update picks the one caller that does it.
- done: the job's photo-quality Observation is read back from the server; "retake" → a
  Communication (or Task) for the patient, written by conditional create (idempotent);
- failed because the server refused the token or the credential expired while the job waited:
  a new job with a fresh token, at most ``MAX_ATTEMPTS`` per photo version;
- failed otherwise: nothing more (the job's own audit event says why).
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from celery import Celery

from audit.record import AuditAction, AuditOutcome
from fhir_mappings.retake import (
    build_retake_request,
    is_quality_observation,
    needs_retake,
    retake_transaction,
)
from models.errors import BackendAuthRefused, FhirServerUnavailable, PhotomarkerError, ScopeNotGranted
from workers.celery_app import Services
from workers.inbox.intake import send_inbox_job
from workers.inbox.runtime import INBOX_AGENT, InboxRuntime, inbox_record
from workers.inbox.store import InboxPhoto
from workers.job_records import Job, NewJob, job_audit_record
from workers.job_resources import written_references

log = logging.getLogger(__name__)

# Jobs per photo version: the first, and two more when a fresh token might help.
MAX_ATTEMPTS = 3
# Failures that a new job with a new token may cure (an expired or rejected token looks like these).
RETRYABLE_CODES = frozenset({"fhir-server-error", "credential-unavailable"})


def follow_up(
    svc: Services, runtime: InboxRuntime, celery_app: Celery, job_ids: Iterable[str]
) -> Counter[str]:
    """Follow up each finished inbox job among ``job_ids`` (other jobs are ignored)."""
    store = runtime.store(svc)
    counts: Counter[str] = Counter()
    for job_id in job_ids:
        row = store.begin_followup(job_id)
        if row is None:
            continue  # not an inbox job, not finished, or someone else follows it up
        job = svc.jobs.get(job_id)
        if job is None or not job.finished:
            store.end_followup(job_id, "queued")
            continue
        try:
            state = _follow_up(svc, runtime, celery_app, row, job)
        except (FhirServerUnavailable, BackendAuthRefused, ScopeNotGranted) as error:
            # Not this photo's fault: the next poll tick tries again.
            store.end_followup(job_id, "queued")
            if not isinstance(error, FhirServerUnavailable):
                svc.audit(inbox_record("inbox.followup.postponed", error=error, entities=_photo(job)))
            counts["postponed"] += 1
            continue
        except PhotomarkerError as error:  # e.g. the server refused the retake request as invalid
            svc.audit(
                inbox_record("inbox.followup.failed", error=error, patient=job.patient, entities=_photo(job))
            )
            state = "failed"
        counts[state] += 1
        if state != "retried":
            store.end_followup(job_id, state)
    return counts


def _follow_up(svc: Services, runtime: InboxRuntime, celery_app: Celery, row: InboxPhoto, job: Job) -> str:
    if job.status == "failed":
        if job.error_code in RETRYABLE_CODES and row.attempts < MAX_ATTEMPTS:
            _retry(svc, runtime, celery_app, job)
            return "retried"
        return "failed"
    if svc.settings.inbox_retake_resource == "none" or not job.reference:
        return "done"
    return _retake_if_needed(svc, runtime, job)


def _retake_if_needed(svc: Services, runtime: InboxRuntime, job: Job) -> str:
    canonical = svc.settings.canonical
    kind = svc.settings.inbox_retake_resource
    if kind == "none" or job.reference is None:
        return "done"
    client = runtime.fhir_client()
    quality = None
    for reference in job.written:
        if reference.startswith("Observation/"):
            observation = client.read(reference)
            if is_quality_observation(observation, canonical):
                quality = observation
                break
    if quality is None or not needs_retake(quality, canonical):
        return "done"
    request = build_retake_request(
        kind,
        quality=quality,
        photo_reference=job.reference,
        canonical=canonical,
        issued=datetime.now().astimezone(),
    )
    written = written_references(client.transaction(retake_transaction(request)))
    svc.audit(
        inbox_record(
            "inbox.retake.requested",
            action=AuditAction.CREATE,
            subtype="transaction",
            patient=job.patient,
            entities=(*_photo(job), *written),
        )
    )
    log.info("inbox: retake requested for job %s", job.id)
    return "retake-requested"


def _retry(svc: Services, runtime: InboxRuntime, celery_app: Celery, job: Job) -> None:
    """A new job for the same photo version, with a token fetched now."""
    token = runtime.auth().token()
    new = svc.jobs.create(
        NewJob(
            id=uuid.uuid4().hex,
            queue=job.queue,
            kind=job.kind,
            requested_by=INBOX_AGENT,
            fhir_base=job.fhir_base,
            reference=job.reference,
            credential=svc.credentials.put(token.value),
            patient=job.patient,
        )
    )
    runtime.store(svc).replace_job(job.id, new.id)
    svc.audit(
        job_audit_record(
            new, "requested", AuditOutcome.SUCCESS, reason=None, entities=(f"urn:photomarker:job:{job.id}",)
        )
    )
    send_inbox_job(celery_app, new)
    log.info("inbox: job %s failed (%s); trying again as job %s", job.id, job.error_code, new.id)


def _photo(job: Job) -> tuple[str, ...]:
    return (job.reference,) if job.reference else ()
