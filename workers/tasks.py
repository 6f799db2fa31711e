"""The Celery tasks: analyse a job's batch, and sweep up jobs that nobody is working on.

Defined with ``shared_task`` so they import without an app; ``photomarker worker`` binds them to
the app made from the settings. The message is references only (job id, FHIR base, photo
reference, credential handle); the job store row is what a worker trusts, so a stale or forged
message can never point a worker at another server.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task

from models.engine.options import EngineOptions
from models.intake import keep_decode_buffers
from models.pipelines import ANALYSES_BY_KIND, installed_pipeline
from plugin.settings import Settings
from workers.batching import run_batch
from workers.celery_app import ANALYSE_TASK, SWEEP_TASK, celery_for, enqueue, job_of_message, services
from workers.jobs import JobStore

log = logging.getLogger(__name__)


@shared_task(  # type: ignore[untyped-decorator]
    bind=True,
    name=ANALYSE_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    # Retries here mean "come back later" (a lease held elsewhere, the FHIR server down); how
    # many times a job may wait for the FHIR server is counted in the job store.
    max_retries=None,
)
def analyse_job(
    self: Task,
    job_id: str,
    fhir_base: str | None = None,
    reference: str | None = None,
    credential: str | None = None,
) -> dict[str, int]:
    """Analyse the batch that the message for ``job_id`` owns and write its results back."""
    sent = {"fhir_base": fhir_base, "reference": reference, "credential": credential}
    if job_of_message(job_id, sent) is None:
        return {"done": 0, "failed": 0}
    outcome = run_batch(services(), job_id)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in, max_retries=None)
    return {"done": len(outcome.done), "failed": len(outcome.failed)}


@shared_task(name=SWEEP_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
def sweep_jobs(older_than_s: float | None = None) -> dict[str, Any]:
    """Re-send jobs whose message seems lost (queued, or their lease long expired); run by beat.

    Extra messages are harmless: a message whose job is running elsewhere or finished does nothing.
    """
    svc = services()
    settings = svc.settings
    age = (
        older_than_s
        if older_than_s is not None
        else 2 * max(settings.job_lease_s, settings.broker_visibility_timeout_s)
    )
    resent = resend_stale(svc.jobs, older_than_s=age)
    expired = svc.credentials.delete_expired()
    return {"resent": resent, "credentials_expired": expired}


def resend_stale(store: JobStore, *, older_than_s: float) -> int:
    """Requeue (if needed) and re-send every stale job; returns how many messages went out."""
    celery_app = celery_for()
    sent = 0
    for job in store.stale(older_than_s=older_than_s):
        again = job if job.status == "queued" else store.requeue(job.id)
        if again is None:
            continue
        enqueue(celery_app, again)
        sent += 1
    if sent:
        log.info("re-sent %d stale job(s)", sent)
    return sent


def warm_models(settings: Settings) -> None:
    """Load every installed pipeline now, once per worker process, not on the first photo."""
    keep_decode_buffers()
    options = EngineOptions.from_settings(settings)
    for analyses in ANALYSES_BY_KIND.values():
        for analysis in analyses:
            installed_pipeline(analysis, options)
