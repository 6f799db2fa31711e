"""Micro-batching: the jobs one message owns go through the models together, then back to FHIR.

A worker that takes the message for job X claims X and up to ``batch_max_jobs - 1`` other
waiting jobs of the same queue, waiting at most ``batch_max_wait_s`` for the batch to fill. It
fetches their photos, runs :func:`workers.footage.analyse_requests` once over all of them (each
pipeline runs once per batch of photos, on one device; a video's or a series' frames are batched
among themselves), and writes each job's results back in its own transaction Bundle of
conditional creates; a series job keeps its photos as a FHIR ``List`` of references. Each job then
ends on its own: done, failed with its reason, or — when the FHIR server stayed unavailable —
released so the message comes back later.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Any, TypeVar, cast

from audit.record import AuditOutcome
from fhir_mappings.inputs import InputContext, load_json, photo_from_resource
from fhir_mappings.photo import Photo
from models.errors import (
    BinaryUnavailable,
    FhirServerUnavailable,
    InternalError,
    InvalidRequest,
    PhotomarkerError,
    SettingsError,
    UnsupportedResource,
)
from plugin.settings import Settings
from workers.analysis import AnalysedPhoto, PhotoRequest, RequestedKind
from workers.celery_app import Services
from workers.fetch import photo_bytes
from workers.fhir_client import FhirClient, RetryPolicy
from workers.footage import AnyRequest, SeriesRequest, analyse_requests
from workers.job_records import Job, job_audit_record
from workers.job_resources import requester_of, series_references, written_references
from workers.jobs import JobStore
from workers.liveness import LeaseKeeper, worker_id
from workers.progress import FrameCallback, ProgressBoard
from workers.writeback import (
    check_one_body_site,
    interpret,
    result_bundle,
    series_bundle,
    series_patient,
    series_sites,
    stored_as_file,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
# Poll for more waiting jobs this often while a batch fills.
_FILL_POLL_S = 0.01


@dataclass(frozen=True)
class BatchOutcome:
    """What became of a message's batch; ``retry_in`` says the message must come back then."""

    done: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    retry_in: float | None = None


def run_batch(svc: Services, owner_id: str) -> BatchOutcome:
    """Claim the batch that the message for ``owner_id`` is responsible for, and work it off."""
    settings = svc.settings
    store = svc.jobs
    me = worker_id()
    claim = store.claim(owner_id, worker=me, lease_s=settings.job_lease_s, max_jobs=settings.batch_max_jobs)
    if claim.lease_held_until is not None:
        # A live worker holds this batch; come back when its lease would have run out.
        return BatchOutcome(retry_in=max(1.0, claim.lease_held_until - store.now() + 1.0))
    batch = list(claim.jobs)
    if not batch:
        return BatchOutcome()  # finished already, or another message's batch has it
    with LeaseKeeper(store, owner_id, me, settings.job_lease_s) as lease:
        batch += _fill(store, owner_id, me, settings, have=len(batch))
        return _Batch(svc, owner_id, me, lease).run(batch)


def _fill(store: JobStore, owner_id: str, me: str, settings: Settings, *, have: int) -> list[Job]:
    """More waiting jobs for a batch that is not full, for at most ``batch_max_wait_s``."""
    extra: list[Job] = []
    deadline = time.monotonic() + settings.batch_max_wait_s
    while have + len(extra) < settings.batch_max_jobs and time.monotonic() < deadline:
        time.sleep(_FILL_POLL_S)
        extra += store.claim_more(
            owner_id,
            worker=me,
            lease_s=settings.job_lease_s,
            limit=settings.batch_max_jobs - have - len(extra),
        )
    return extra


@dataclass
class _Prepared:
    """A job whose photo (video, or series' photos) is in hand, ready for the models."""

    job: Job
    photos: tuple[Photo, ...]
    datas: tuple[bytes, ...]
    client: FhirClient | None
    series: bool = False

    @property
    def photo(self) -> Photo:
        return self.photos[0]

    def request(self, on_frames: FrameCallback | None = None) -> AnyRequest:
        """The analysis request; ``on_frames`` hears how many of a video's frames (or a series'
        photos) are analysed so far."""
        requests = tuple(
            PhotoRequest(
                data,
                requested=cast(RequestedKind, self.job.kind),
                kind_hint=photo.kind_hint,
                declared_content_type=photo.content_type,
                # A photo written back as a new Media keeps its full resolution.
                full_resolution=stored_as_file(photo),
                on_frames=None if self.series else on_frames,
            )
            for photo, data in zip(self.photos, self.datas, strict=True)
        )
        return SeriesRequest(requests, on_frames=on_frames) if self.series else requests[0]


@dataclass
class _Batch:
    svc: Services
    owner_id: str
    me: str
    lease: LeaseKeeper
    issued: datetime = field(default_factory=lambda: datetime.now().astimezone())
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    transient: list[tuple[Job, FhirServerUnavailable]] = field(default_factory=list)
    clients: dict[tuple[str, str | None], FhirClient] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return self.svc.settings

    @property
    def store(self) -> JobStore:
        return self.svc.jobs

    def run(self, batch: list[Job]) -> BatchOutcome:
        try:
            for job in batch:
                self._audit(job, "started", AuditOutcome.SUCCESS)
            prepared: list[_Prepared] = []
            for job in batch:
                item = self._guard(job, partial(self._prepare, job))
                if item is not None:
                    prepared.append(item)
            for ready, analysed in self._analyse(prepared):
                if self.lease.lost:
                    break  # another worker has the batch now; it writes the results
                self._guard(ready.job, partial(self._write_back, ready, analysed))
            return self._outcome()
        finally:
            for client in self.clients.values():
                client.close()

    # --- the steps --------------------------------------------------------------------------------

    def _prepare(self, job: Job) -> _Prepared:
        client = self._client(job)
        if job.resource is not None:
            resource = load_json(job.resource)
        elif job.reference is not None:
            resource = self._read_photo_resource(job.reference, client)
        else:
            raise InvalidRequest("the job names no photo")
        ctx = InputContext(
            fhir_base=job.fhir_base,
            max_bytes=self.settings.max_photo_bytes,
            max_video_bytes=self.settings.video_max_bytes,
        )
        series = resource.get("resourceType") == "List"
        resources = self._series_members(resource, client) if series else [resource]
        photos = tuple(photo_from_resource(item, ctx) for item in resources)
        if series:
            check_one_body_site(photos)
        subject = series_patient(photos) if series else photos[0].subject
        if subject and subject != job.patient:
            self.store.set_patient(job.id, subject)
            job = replace(job, patient=subject)
        datas = tuple(
            photo_bytes(photo, client, max_bytes=ctx.byte_limit(photo.content_type) or 0) for photo in photos
        )
        return _Prepared(job, photos, datas, client, series=series)

    def _series_members(self, series: dict[str, Any], client: FhirClient | None) -> list[dict[str, Any]]:
        """A series ``List``'s photos: read from the FHIR server, or — for results that are shown,
        not saved — carried in the List itself as contained resources ("#p1")."""
        contained = {
            f"#{item.get('id')}": item for item in series.get("contained") or [] if isinstance(item, dict)
        }
        members: list[dict[str, Any]] = []
        for reference in series_references(series):
            if reference.startswith("#"):
                if reference not in contained:
                    raise InvalidRequest(f"the series names {reference}, which it does not contain")
                members.append(contained[reference])
            else:
                members.append(self._read_photo_resource(reference, client))
        return members

    def _read_photo_resource(self, reference: str, client: FhirClient | None) -> dict[str, Any]:
        if client is None:
            raise BinaryUnavailable(f"the photo is {reference} but no FHIR server is configured")
        resource = client.read(reference)
        if resource.get("resourceType") not in ("Media", "DocumentReference"):
            raise UnsupportedResource(f"{reference} is a {resource.get('resourceType')}, not a photo")
        return resource

    def _analyse(self, prepared: list[_Prepared]) -> list[tuple[_Prepared, AnalysedPhoto]]:
        if not prepared:
            return []
        try:
            board = ProgressBoard(self.store.engine)
            requests = [
                item.request(board.reporter(item.job.id, "photo" if item.series else "frame"))
                for item in prepared
            ]
            outcomes = analyse_requests(requests, self.settings)
        except PhotomarkerError as error:
            # The models themselves could not run (weights, device): every photo fails with it.
            for item in prepared:
                self._fail(item.job, error)
            return []
        except Exception:
            log.exception("the models failed on a batch of %d photos", len(prepared))
            for item in prepared:
                self._fail(item.job, _internal())
            return []
        ready: list[tuple[_Prepared, AnalysedPhoto]] = []
        for item, outcome in zip(prepared, outcomes, strict=True):
            if isinstance(outcome, PhotomarkerError):
                self._fail(item.job, outcome)
            else:
                ready.append((item, outcome))
        return ready

    def _write_back(self, item: _Prepared, analysed: AnalysedPhoto) -> None:
        job, photo = item.job, item.photo
        sites = series_sites(item.photos) if item.series else None
        analysed, facts = interpret(
            photo, analysed, self.settings, client=item.client, issued=self.issued, sites=sites
        )
        requester = requester_of(job.requested_by)
        if item.series:
            bundle = series_bundle(
                item.photos,
                item.datas,
                analysed,
                self.settings,
                issued=self.issued,
                requester=requester,
                facts=facts,
            )
        else:
            data = item.datas[0]
            bundle = result_bundle(
                photo, data, analysed, self.settings, issued=self.issued, requester=requester, facts=facts
            )
        if item.client is None:
            self._finish(job, written=(), result_bundle=bundle)
            return
        response = item.client.transaction(bundle)
        self._finish(job, written=written_references(response))

    def _outcome(self) -> BatchOutcome:
        retry_in: float | None = None
        if self.transient:
            failures = 1 + max(job.transient_failures for job, _ in self.transient)
            if failures > self.settings.job_max_retries:
                for job, error in self.transient:
                    self._fail(job, error)
            else:
                backoff = self.settings.job_retry_backoff_s * 2 ** (failures - 1)
                asked = max((error.retry_after or 0.0) for _, error in self.transient)
                # Retry-After is honoured, but a server cannot park a job for ever.
                retry_in = min(max(backoff, asked), self.settings.fhir_backoff_max_s * 20)
                # Parked a lease longer than the retry: the reaper steps in only if it never comes.
                until = self.store.now() + retry_in + self.settings.job_lease_s
                waiting = [job.id for job, _ in self.transient]
                self.store.release_for_retry(waiting, worker=self.me, until=until)
                log.info(
                    "%d job(s) wait for the FHIR server; retry %d in %.0f s",
                    len(self.transient),
                    failures,
                    retry_in,
                )
        return BatchOutcome(tuple(self.done), tuple(self.failed), retry_in)

    # --- bookkeeping ------------------------------------------------------------------------------

    def _guard(self, job: Job, step: Callable[[], T]) -> T | None:
        """Run one job's step; its failure ends that job only."""
        try:
            return step()
        except FhirServerUnavailable as error:
            self.transient.append((job, error))
        except PhotomarkerError as error:
            self._fail(job, error)
        except Exception:
            log.exception("job %s: unexpected error", job.id)
            self._fail(job, _internal())
        return None

    def _client(self, job: Job) -> FhirClient | None:
        if job.fhir_base is None:
            return None
        if job.fhir_base != self.settings.fhir_base:
            # Web and workers must be configured alike; a worker talks to its own FHIR server only.
            raise SettingsError("the job's FHIR server is not the one PHOTOMARKER_FHIR_BASE_URL names here")
        key = (job.fhir_base, job.credential)
        if key not in self.clients:
            token = self.svc.credentials.get(job.credential) if job.credential else None
            self.clients[key] = FhirClient(
                job.fhir_base,
                token=token,
                timeout=self.settings.fhir_timeout_s,
                retry=RetryPolicy(
                    retries=self.settings.fhir_retries,
                    backoff_s=self.settings.fhir_backoff_s,
                    backoff_max_s=self.settings.fhir_backoff_max_s,
                ),
            )
        return self.clients[key]

    def _finish(
        self, job: Job, *, written: tuple[str, ...], result_bundle: dict[str, Any] | None = None
    ) -> None:
        if not self.store.finish(job.id, written=written, result_bundle=result_bundle, worker=self.me):
            log.info("job %s was finished or taken over elsewhere", job.id)
            return
        self.done.append(job.id)
        self._audit(job, "finished", AuditOutcome.SUCCESS, entities=written)
        self._forget_credential(job)

    def _fail(self, job: Job, error: PhotomarkerError) -> None:
        if not self.store.fail(job.id, code=error.code, message=error.message, worker=self.me):
            return
        self.failed.append(job.id)
        log.info("job %s failed: %s", job.id, error.code)
        self._audit(job, "failed", AuditOutcome.SERIOUS_FAILURE, reason=f"{error.code}: {error.message}")
        self._forget_credential(job)

    def _forget_credential(self, job: Job) -> None:
        # A finished job needs its FHIR token no longer; keeping it would only widen exposure.
        if job.credential and not any(j.credential == job.credential for j, _ in self.transient):
            self.svc.credentials.delete(job.credential)

    def _audit(
        self,
        job: Job,
        what: str,
        outcome: AuditOutcome,
        *,
        reason: str | None = None,
        entities: tuple[str, ...] = (),
    ) -> None:
        self.svc.audit(job_audit_record(job, what, outcome, reason=reason, entities=entities))


def _internal() -> InternalError:
    return InternalError("unexpected error while analysing the photo; the worker log has the details")
