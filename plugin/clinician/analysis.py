"""Analyse, from the clinician's side: one job per photo, as the jobs API makes them.

With write scopes the job carries only references and the handle of the clinician's encrypted
token (the worker reads the photo and writes the results as this clinician); without them the
photo travels inline in the job and nothing is sent back to the EHR.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from audit.record import AuditOutcome
from models.errors import QueueUnavailable
from plugin.clinician import photos as photo_io
from plugin.clinician.context import ClinicianContext
from workers.celery_app import celery_for, enqueue, queue_for, services
from workers.fetch import photo_bytes
from workers.fhir_client import FhirClient
from workers.jobs import Job, NewJob, job_audit_record

log = logging.getLogger(__name__)


def submit_job(
    context: ClinicianContext,
    client: FhirClient,
    reference: str,
    resource: dict[str, Any],
    photo: Any,
    *,
    saved: bool,
    source_ip: str | None,
) -> Job:
    """One analysis job for one photo, made and queued exactly as the jobs API does it."""
    svc = services()
    if saved:
        # The worker reads the photo and writes the results as this clinician; the message
        # carries only the handle of the encrypted token.
        new = NewJob(
            id=uuid.uuid4().hex,
            queue=queue_for(photo.kind_hint),
            kind="auto",
            requested_by=context.who,
            fhir_base=context.launch.iss,
            reference=reference,
            credential=svc.credentials.put(context.launch.access_token or ""),
            patient=context.patient,
        )
    else:
        # No write permission: the photo goes into the job itself and nothing is sent back.
        data = photo_bytes(photo, client, max_bytes=context.settings.max_photo_bytes)
        inline = photo_io.inline_copy(resource, photo, data)
        new = NewJob(
            id=uuid.uuid4().hex,
            queue=queue_for(photo.kind_hint),
            kind="auto",
            requested_by=context.who,
            resource=json.dumps(inline, separators=(",", ":")),
            patient=context.patient,
        )
    job = svc.jobs.create(new)
    svc.audit(job_audit_record(job, "requested", AuditOutcome.SUCCESS, source_ip=source_ip))
    try:
        enqueue(celery_for(), job)
    except Exception as exc:  # whatever the transport raises, the clinician gets a clear page
        log.warning("could not queue job %s (%s)", job.id, type(exc).__name__)
        error = QueueUnavailable("the analysis could not be queued; try again in a minute")
        if svc.jobs.fail(job.id, code=error.code, message=error.message):
            svc.audit(job_audit_record(job, "failed", AuditOutcome.SERIOUS_FAILURE, reason=error.code))
        raise error from None
    return job
