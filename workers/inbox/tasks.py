"""The inbox's Celery tasks: analyse an inbox job then follow it up, and the poll tick (beat).

``inbox_analyse_job`` is ``workers.tasks.analyse_job`` plus the follow-up of every job its batch
finished, so a retake request goes out seconds after the quality verdict. ``inbox_poll`` runs
on beat's schedule: the polling fallback, then the follow-up of inbox jobs that an ordinary
message's batch happened to finish. Both refuse to run, audited, when the server will not
give the inbox a token it can use.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from celery import Task, shared_task

from models.errors import FhirServerUnavailable, PhotomarkerError
from workers.celery_app import INBOX_POLL_TASK, celery_for, job_of_message, services
from workers.inbox.followup import follow_up
from workers.inbox.intake import Intake
from workers.inbox.poller import PollReport, poll_once
from workers.inbox.runtime import INBOX_ANALYSE_TASK, inbox_record, inbox_runtime

log = logging.getLogger(__name__)


@shared_task(  # type: ignore[untyped-decorator]
    bind=True,
    name=INBOX_ANALYSE_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=None,
)
def inbox_analyse_job(
    self: Task,
    job_id: str,
    fhir_base: str | None = None,
    reference: str | None = None,
    credential: str | None = None,
) -> dict[str, int]:
    """Analyse the batch the message for ``job_id`` owns, then follow up the inbox jobs in it."""
    sent = {"fhir_base": fhir_base, "reference": reference, "credential": credential}
    if job_of_message(job_id, sent) is None:
        return {"done": 0, "failed": 0}
    svc = services()
    # Imported here: it brings the models (torch), which the web process that registers this
    # task never needs.
    from workers.batching import run_batch

    outcome = run_batch(svc, job_id)
    finished = (*outcome.done, *outcome.failed)
    if finished:
        try:
            follow_up(svc, inbox_runtime(), celery_for(), finished)
        except PhotomarkerError as error:
            # The analysis stands; the follow-up is taken again by the next poll tick.
            log.warning("inbox follow-up postponed: %s", error.code)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in, max_retries=None)
    return {"done": len(outcome.done), "failed": len(outcome.failed)}


@shared_task(name=INBOX_POLL_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
def inbox_poll(since: str | None = None) -> dict[str, Any]:
    """One poll for new photos, then the follow-ups still owed; run by beat, or `photomarker inbox poll`."""
    svc = services()
    settings = svc.settings
    if settings.fhir_base is None or not settings.inbox_client_id:
        return {"skipped": "the inbox is not configured"}
    runtime = inbox_runtime()
    intake = Intake(svc, runtime, celery_for())
    start = datetime.fromisoformat(since.replace("Z", "+00:00")) if since else None
    try:
        # Polling off: the tick still follows up, below.
        report = (
            poll_once(intake, since=start) if settings.inbox_poll_interval_s > 0 or since else PollReport()
        )
    except FhirServerUnavailable as error:
        svc.audit(inbox_record("inbox.poll", error=error, subtype="search-type"))
        return {"postponed": error.code}
    except PhotomarkerError as error:  # a refused assertion, a missing scope, no key
        svc.audit(inbox_record("inbox.poll", error=error, subtype="search-type"))
        log.warning("inbox poll refused: %s", error.code)
        return {"refused": error.code}
    svc.audit(inbox_record("inbox.poll", subtype="search-type", query=" ".join(report.searches) or None))
    store = runtime.store(svc)
    try:
        followed = follow_up(svc, runtime, celery_for(), store.finished_jobs_to_follow_up())
    except PhotomarkerError as error:
        log.warning("inbox follow-ups postponed: %s", error.code)
        followed = None
    result = report.as_dict()
    result["followed_up"] = dict(followed or {})
    return result
