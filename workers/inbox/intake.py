"""One sighting of a photo (a notification event, a poll hit) → at most one job for its version.

The steps, top to bottom: where is the resource (only on our FHIR server), which version is
it (read it when the notification gave only an id), has this version been seen before (the
insert-or-ignore in :mod:`workers.inbox.store`), is it a photo we may take (the input reader's
refusals), is it patient-submitted and what kind (the site rules) — then the job, its
encrypted credential and its message. Every outcome but a plain re-sighting by the poller is
audited; the application log gets counts and job ids only.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from celery import Celery

from audit.record import AuditOutcome
from fhir_mappings.attachments import is_picture_type
from fhir_mappings.inputs import InputContext, photo_from_resource
from models.errors import (
    BackendAuthRefused,
    FhirServerError,
    FhirServerUnavailable,
    InvalidResource,
    PhotomarkerError,
    QueueUnavailable,
    ScopeNotGranted,
    SettingsError,
)
from workers.celery_app import EXCHANGE, Services, message_references, queue_for
from workers.fhir_client import FhirClient
from workers.inbox.notification import PHOTO_TYPES, focus_on_server
from workers.inbox.rules import InboxRules
from workers.inbox.runtime import INBOX_AGENT, INBOX_ANALYSE_TASK, InboxRuntime, inbox_record
from workers.inbox.store import PhotoVersion
from workers.job_records import Job, NewJob, job_audit_record

log = logging.getLogger(__name__)

Source = Literal["subscription", "poll"]
Outcome = Literal["queued", "duplicate", "skipped", "refused", "ignored"]


@dataclass
class Intake:
    """Takes the sightings of one notification or one poll, and counts what became of them."""

    svc: Services
    runtime: InboxRuntime
    celery_app: Celery
    source_ip: str | None = None
    outcomes: Counter[str] = field(default_factory=Counter)

    @property
    def fhir_base(self) -> str:
        base = self.svc.settings.fhir_base
        if base is None:
            raise SettingsError("PHOTOMARKER_FHIR_BASE_URL: the inbox needs a FHIR server")
        return base

    def client(self) -> FhirClient:
        return self.runtime.fhir_client()

    # --- the one entry point ---------------------------------------------------------------------

    def consider(self, reference: str, resource: Mapping[str, Any] | None, source: Source) -> Outcome:
        """Decide about one sighting; transient failures (server, queue) are raised for a retry."""
        outcome = self._consider(reference, resource, source)
        self.outcomes[outcome] += 1
        return outcome

    def _consider(self, reference: str, resource: Mapping[str, Any] | None, source: Source) -> Outcome:
        try:
            focus = focus_on_server(reference, self.fhir_base)
        except PhotomarkerError as error:
            self._audit_refusal(error, entities=())
            return "refused"
        if focus.resource_type not in PHOTO_TYPES:
            return "ignored"  # a topic may cover other types; they are none of the inbox's business
        try:
            resource = self._resource(focus.reference, focus.version_id, resource)
        except (FhirServerUnavailable, BackendAuthRefused, ScopeNotGranted, SettingsError):
            raise  # not this photo's fault: the notification is to be delivered again
        except PhotomarkerError as error:  # gone (404/410), refused, larger than any resource may be
            self._audit_refusal(error, entities=(focus.reference,))
            return "refused"
        meta = resource.get("meta")
        version_id = meta.get("versionId") if isinstance(meta, dict) else None
        version = PhotoVersion(
            self.fhir_base, focus.resource_type, focus.id, version_id if isinstance(version_id, str) else ""
        )
        job_id = uuid.uuid4().hex
        store = self.runtime.store(self.svc)
        patient = _subject(resource)
        if not store.claim(version, source=source, job_id=job_id):
            if source == "subscription":
                # A redelivery or a second notification: recorded, never scored again.
                self.svc.audit(
                    inbox_record("inbox.photo.duplicate", patient=patient, entities=(version.reference,))
                )
            return "duplicate"
        try:
            return self._decide(version, resource, job_id, patient)
        except BaseException:
            # No token, no server, no queue: let the next sighting have it instead of waiting out the claim.
            store.release_claim(version)
            raise

    # --- the steps --------------------------------------------------------------------------------

    def _resource(
        self, reference: str, version_id: str | None, given: Mapping[str, Any] | None
    ) -> Mapping[str, Any]:
        """The resource itself: the full-resource payload when it names its version, else a read."""
        given_version = _version(given) if given is not None else None
        if (
            given is not None
            and given_version is not None
            and f"{given.get('resourceType')}/{given.get('id')}" == reference
            and version_id in (None, given_version)
        ):
            return given
        path = f"{reference}/_history/{version_id}" if version_id else reference
        read = self.client().read(path)
        if f"{read.get('resourceType')}/{read.get('id')}" != reference:
            raise FhirServerError("the FHIR server answered with another resource than the one named")
        return read

    def _decide(
        self, version: PhotoVersion, resource: Mapping[str, Any], job_id: str, patient: str | None
    ) -> Outcome:
        settings = self.svc.settings
        store = self.runtime.store(self.svc)
        if version.resource_type == "DocumentReference" and not _has_image(resource):
            store.settle(version, "ignored")  # a letter or a PDF, not a photo
            return "ignored"
        try:
            photo = photo_from_resource(
                resource,
                InputContext(
                    fhir_base=self.fhir_base,
                    max_bytes=settings.max_photo_bytes,
                    max_video_bytes=settings.video_max_bytes,
                ),
            )
        except PhotomarkerError as error:
            store.settle(version, "refused")
            self._audit_refusal(error, entities=(version.reference,), patient=patient)
            return "refused"
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            log.warning("a photo resource broke the reader (%s)", type(exc).__name__)
            store.settle(version, "refused")
            unreadable = InvalidResource("the resource has a value that cannot be read")
            self._audit_refusal(unreadable, entities=(version.reference,), patient=patient)
            return "refused"
        decision = InboxRules.from_settings(settings).decide(resource, photo)
        if decision.kind is None:
            store.settle(version, "skipped")
            self.svc.audit(
                inbox_record(
                    "inbox.photo.skipped",
                    reason=decision.reason,
                    patient=photo.subject,
                    entities=(version.reference,),
                )
            )
            return "skipped"
        token = self.runtime.auth().token()
        new = NewJob(
            id=job_id,
            queue=queue_for(decision.kind if decision.kind != "auto" else photo.kind_hint),
            kind=decision.kind,
            requested_by=INBOX_AGENT,
            fhir_base=self.fhir_base,
            reference=version.reference,
            credential=self.svc.credentials.put(token.value),
            patient=photo.subject,
        )
        job = self.svc.jobs.create(new)
        store.settle(version, "queued")
        self.svc.audit(job_audit_record(job, "requested", AuditOutcome.SUCCESS, source_ip=self.source_ip))
        try:
            send_inbox_job(self.celery_app, job)
        except Exception as exc:  # whatever the transport raises: undo, so the next sighting retries
            log.warning("could not queue inbox job %s (%s)", job.id, type(exc).__name__)
            unqueued = QueueUnavailable("the inbox job could not be queued; it will be taken again")
            if self.svc.jobs.fail(job.id, code=unqueued.code, message=unqueued.message):
                self.svc.audit(
                    job_audit_record(job, "failed", AuditOutcome.SERIOUS_FAILURE, reason=unqueued.code)
                )
            store.forget(version)
            raise unqueued from None
        log.info("inbox: queued job %s", job.id)
        return "queued"

    def _audit_refusal(
        self, error: PhotomarkerError, *, entities: tuple[str, ...], patient: str | None = None
    ) -> None:
        self.svc.audit(
            inbox_record(
                "inbox.photo.refused",
                error=error,
                patient=patient,
                entities=entities,
                source_ip=self.source_ip,
            )
        )


def send_inbox_job(celery_app: Celery, job: Job) -> None:
    """The inbox's own task (analysis, then the follow-up), on the queue of the photo's kind."""
    celery_app.send_task(
        INBOX_ANALYSE_TASK,
        args=(job.id,),
        kwargs=dict(message_references(job)),
        queue=job.queue,
        exchange=EXCHANGE,
        routing_key=job.queue,
    )


def _version(resource: Mapping[str, Any]) -> str | None:
    meta = resource.get("meta")
    value = meta.get("versionId") if isinstance(meta, dict) else None
    return value if isinstance(value, str) and value else None


def _subject(resource: Mapping[str, Any]) -> str | None:
    subject = resource.get("subject")
    reference = subject.get("reference") if isinstance(subject, dict) else None
    return reference if isinstance(reference, str) and reference.startswith("Patient/") else None


def _has_image(document: Mapping[str, Any]) -> bool:
    """A photo or a video (scored like a photo) among the attachments."""
    content = document.get("content")
    for item in content if isinstance(content, list) else []:
        attachment = item.get("attachment") if isinstance(item, dict) else None
        if isinstance(attachment, dict) and is_picture_type(attachment.get("contentType")):
            return True
    return False
