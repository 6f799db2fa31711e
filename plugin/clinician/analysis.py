"""Analyse, from the clinician's side: one job per photo or video, or one for a series, as the jobs
API makes them.

With write scopes the job carries only references and the handle of the clinician's encrypted
token (the worker reads the photo and writes the results as this clinician); without them the
photo travels inline in the job (a series as a ``List`` containing its photos) and nothing is
sent back to the EHR.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from audit.record import AuditOutcome
from fhir_mappings.photo import Photo
from models.errors import InvalidRequest, InvalidSeries, QueueUnavailable
from models.video_container import is_video_type
from plugin.clinician import photos as photo_io
from plugin.clinician.context import ClinicianContext
from plugin.clinician.wording import series_label
from plugin.smart.store import Run
from workers.celery_app import celery_for, enqueue, queue_for, services
from workers.fetch import photo_bytes
from workers.fhir_client import FhirClient
from workers.job_records import Job, NewJob, job_audit_record
from workers.writeback import check_one_body_site

log = logging.getLogger(__name__)

# Most photos one click may analyse.
MAX_PHOTOS_PER_RUN = 20

Checked = tuple[str, dict[str, Any], Photo]  # (reference, resource, photo), the patient's own


def start_run(
    context: ClinicianContext,
    client: FhirClient,
    references: list[str],
    *,
    as_series: bool,
    source_ip: str | None,
) -> Run:
    """The jobs for one click on Analyse; every photo is checked before any job exists."""
    if not references:
        raise InvalidRequest("choose at least one photo to analyse")
    if len(references) > MAX_PHOTOS_PER_RUN:
        raise InvalidRequest(f"choose at most {MAX_PHOTOS_PER_RUN} photos at a time")
    checked = [(ref, *photo_io.fetch_photo(ref, context, client)) for ref in references]
    saved = context.can_save
    if as_series:
        _check_series(checked, context.settings.series_max_photos)
        job = submit_series_job(context, client, checked, saved=saved, source_ip=source_ip)
        label = series_label(len(checked), photo_io.label_of(checked[0][1], checked[0][2]))
        return Run(
            jobs=[job.id],
            photos=[references[0]],
            saved=saved,
            created_at=time.time(),
            labels=[label],
            members={job.id: references},
        )
    jobs = [
        submit_job(context, client, ref, resource, photo, saved=saved, source_ip=source_ip)
        for ref, resource, photo in checked
    ]
    return Run(
        jobs=[job.id for job in jobs],
        photos=references,
        saved=saved,
        created_at=time.time(),
        labels=[photo_io.label_of(resource, photo) for _, resource, photo in checked],
    )


def _check_series(checked: list[Checked], limit: int) -> None:
    if not 2 <= len(checked) <= limit:
        raise InvalidSeries(f"a series is 2 to {limit} photos of one lesion; {len(checked)} were chosen")
    if any(is_video_type(photo.content_type) for _, _, photo in checked):
        raise InvalidSeries("a video is many frames already: analyse it on its own, not in a series")
    check_one_body_site([photo for _, _, photo in checked])


def submit_job(
    context: ClinicianContext,
    client: FhirClient,
    reference: str,
    resource: dict[str, Any],
    photo: Photo,
    *,
    saved: bool,
    source_ip: str | None,
) -> Job:
    """One analysis job for one photo or video, made and queued exactly as the jobs API does it."""
    if saved:
        # The worker reads the photo and writes the results as this clinician; the message
        # carries only the handle of the encrypted token.
        return _queued(_saved_job(context, photo, reference=reference), source_ip)
    # No write permission: the photo goes into the job itself and nothing is sent back.
    inline = photo_io.inline_copy(resource, photo, _bytes_of(context, client, photo))
    return _queued(_unsaved_job(context, photo, inline), source_ip)


def submit_series_job(
    context: ClinicianContext,
    client: FhirClient,
    checked: list[Checked],
    *,
    saved: bool,
    source_ip: str | None,
) -> Job:
    """One job for photos of one lesion: a FHIR ``List`` of their references (saved), or of the
    photos themselves as contained resources (shown, not saved)."""
    first = checked[0][2]
    series: dict[str, Any] = {
        "resourceType": "List",
        "status": "current",
        "mode": "working",
        "title": "Photos of one lesion, analysed as one",
    }
    if saved:
        series["entry"] = [{"item": {"reference": ref}} for ref, _, _ in checked]
        return _queued(_saved_job(context, first, resource=series), source_ip)
    contained = []
    for place, (_, resource, photo) in enumerate(checked, start=1):
        inline = photo_io.inline_copy(resource, photo, _bytes_of(context, client, photo))
        contained.append({**inline, "id": f"p{place}"})
    series["contained"] = contained
    series["entry"] = [{"item": {"reference": f"#p{place}"}} for place in range(1, len(checked) + 1)]
    return _queued(_unsaved_job(context, first, series), source_ip)


def _saved_job(
    context: ClinicianContext,
    photo: Photo,
    *,
    reference: str | None = None,
    resource: dict[str, Any] | None = None,
) -> NewJob:
    return NewJob(
        id=uuid.uuid4().hex,
        queue=queue_for(photo.kind_hint),
        kind="auto",
        requested_by=context.who,
        fhir_base=context.launch.iss,
        reference=reference,
        resource=json.dumps(resource, separators=(",", ":")) if resource is not None else None,
        credential=services().credentials.put(context.launch.access_token or ""),
        patient=context.patient,
    )


def _unsaved_job(context: ClinicianContext, photo: Photo, resource: dict[str, Any]) -> NewJob:
    return NewJob(
        id=uuid.uuid4().hex,
        queue=queue_for(photo.kind_hint),
        kind="auto",
        requested_by=context.who,
        resource=json.dumps(resource, separators=(",", ":")),
        patient=context.patient,
    )


def _bytes_of(context: ClinicianContext, client: FhirClient, photo: Photo) -> bytes:
    settings = context.settings
    limit = settings.video_max_bytes if is_video_type(photo.content_type) else settings.max_photo_bytes
    return photo_bytes(photo, client, max_bytes=limit)


def _queued(new: NewJob, source_ip: str | None) -> Job:
    svc = services()
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
