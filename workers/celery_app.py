"""The Celery app, bound to the Flask app and its settings (Flask's ``celery_init_app`` pattern).

One broker URL decides the transport: the embedded SQLite queue under the data dir by default
(``sqla+sqlite:///…``), Redis in production — the same code either way. Two queues, ``skin``
and ``conjunctiva``, so each kind of photo can get its own (GPU) workers. Messages are JSON and
carry references only: the job id, the FHIR base, the resource reference and a credential
handle. Tasks are acknowledged late and rejected when their worker is lost, so a job whose
worker dies goes to another; the job store makes doing it again harmless.

:class:`Services` holds what web and worker share (settings, job store, credential store, audit
store). It lives in ``app.extensions`` and opens its connections lazily in each process, so a
prefork child never reuses a socket its parent opened.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from celery import Celery, Task
from flask import Flask, current_app
from kombu.entity import Exchange, Queue

from audit.record import AuditRecord
from audit.store import AuditStore
from models.results import PhotoKind
from plugin.settings import Settings
from workers.broker import outage_retries
from workers.credentials import CredentialStore
from workers.job_records import Job
from workers.jobs import JobStore

log = logging.getLogger(__name__)

QUEUES: tuple[PhotoKind, ...] = ("skin", "conjunctiva")
# Where a photo goes when nobody said what it shows: every worker can analyse either kind
# (the quality gate finds out), so this only decides whose capacity it uses.
DEFAULT_QUEUE: PhotoKind = "skin"
ANALYSE_TASK = "photomarker.analyse_job"
SWEEP_TASK = "photomarker.sweep_jobs"
# The inbox's poll tick (workers.inbox.tasks), scheduled when the inbox is configured.
INBOX_POLL_TASK = "photomarker.inbox_poll"
EXTENSION = "photomarker"
# One direct exchange; each queue is bound under its own name as routing key.
EXCHANGE = "photomarker"
# How often beat looks for jobs nobody is working on, and how old they must be.
SWEEP_EVERY_S = 60.0


def queue_for(kind: str | None) -> PhotoKind:
    """Routing by photo kind: skin and conjunctiva photos go to their own queues."""
    if kind == "conjunctiva":
        return "conjunctiva"
    if kind == "skin":
        return "skin"
    return DEFAULT_QUEUE


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery configuration, all of it derived from the one settings object."""
    broker = settings.effective_broker_url
    transport_options: dict[str, Any] = {}
    if broker.startswith(("redis://", "rediss://", "redis+socket://")):
        transport_options = {
            # A message whose worker died comes back after this; the job lease stops a slow but
            # live worker's jobs from being done twice when it is too short.
            "visibility_timeout": settings.broker_visibility_timeout_s,
            "unacked_restore_interval": settings.broker_restore_interval_s,
            "unacked_restore_throttle": 1,
            "socket_connect_timeout": 5,
            "socket_timeout": 30,
            "health_check_interval": 10,
        }
    elif broker.startswith(("sqla+sqlite", "sqlalchemy+sqlite")):
        # kombu hands these to create_engine: wait for the web/worker's write lock, don't fail.
        transport_options = {"connect_args": {"timeout": 30}}
    return {
        "broker_url": broker,
        "broker_transport_options": transport_options,
        "broker_connection_retry_on_startup": True,
        # A worker rides out an outage this long, then exits non-zero for its supervisor.
        "broker_connection_max_retries": outage_retries(settings.broker_outage_limit_s),
        "broker_connection_timeout": 5,
        # The job store is the record of every job; Celery keeps no results.
        "task_ignore_result": True,
        "result_backend": None,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Failures are recorded in the job store; redelivering them would only repeat them.
        "task_acks_on_failure_or_timeout": True,
        # One message at a time per process: batching happens in the job store, not in prefetch.
        "worker_prefetch_multiplier": 1,
        # A task that lost its broker connection cannot ack; cancel it (it comes back) rather
        # than let it finish and be delivered again anyway.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_queues": [
            Queue(name, Exchange(EXCHANGE, type="direct"), routing_key=name)  # type: ignore[no-untyped-call]
            for name in QUEUES
        ],
        "task_default_exchange": EXCHANGE,
        "task_default_routing_key": DEFAULT_QUEUE,
        "task_default_queue": DEFAULT_QUEUE,
        "task_publish_retry": True,
        "task_publish_retry_policy": {
            "max_retries": 3,
            "interval_start": 0.2,
            "interval_step": 0.5,
            "interval_max": 2,
        },
        "worker_hijack_root_logger": False,
        "beat_schedule": {
            "sweep-jobs": {"task": SWEEP_TASK, "schedule": SWEEP_EVERY_S, "options": {"expires": 50}},
            **_inbox_schedule(settings),
        },
        "beat_schedule_filename": str(settings.data_dir / "beat-schedule"),
    }


def _inbox_schedule(settings: Settings) -> dict[str, Any]:
    """The inbox tick on beat's schedule when the inbox has a client id: a poll (unless polling is
    off) and the follow-ups (retake requests) of inbox jobs that an ordinary message finished."""
    if not settings.inbox_client_id:
        return {}
    interval = settings.inbox_poll_interval_s or SWEEP_EVERY_S
    # A tick that waited past the next one is dropped: the next one covers the same ground.
    return {"inbox-poll": {"task": INBOX_POLL_TASK, "schedule": interval, "options": {"expires": interval}}}


@dataclass
class Services:
    """What the web process and the workers share, opened lazily once per process."""

    settings: Settings
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _pid: int = field(default_factory=os.getpid, repr=False)
    _jobs: JobStore | None = field(default=None, repr=False)
    _credentials: CredentialStore | None = field(default=None, repr=False)
    _audit: AuditStore | None = field(default=None, repr=False)

    def _check_process(self) -> None:
        if self._pid != os.getpid():
            # Forked: the parent's pooled connections are not ours to use.
            for store in (self._jobs,):
                if store is not None:
                    store.after_fork()
            if self._audit is not None:
                self._audit.engine.dispose(close=False)
            self._pid = os.getpid()

    @property
    def jobs(self) -> JobStore:
        with self._lock:
            self._check_process()
            if self._jobs is None:
                self.settings.data_dir.mkdir(parents=True, exist_ok=True)
                self._jobs = JobStore.from_url(self.settings.effective_jobs_database_url)
            return self._jobs

    @property
    def credentials(self) -> CredentialStore:
        jobs = self.jobs
        with self._lock:
            if self._credentials is None:
                self._credentials = CredentialStore.from_settings(self.settings, jobs)
            return self._credentials

    @property
    def audit_store(self) -> AuditStore:
        with self._lock:
            self._check_process()
            if self._audit is None:
                self.settings.data_dir.mkdir(parents=True, exist_ok=True)
                key = self.settings.audit_hmac_key
                self._audit = AuditStore.from_url(
                    self.settings.effective_audit_database_url,
                    hmac_key=key.get_secret_value().encode() if key is not None else None,
                )
            return self._audit

    def audit(self, record: AuditRecord) -> None:
        self.audit_store.append(record)

    def close(self) -> None:
        with self._lock:
            for closable in (self._jobs, self._audit):
                if closable is not None:
                    closable.close()
            self._jobs = self._audit = None
            self._credentials = None


def services(app: Flask | None = None) -> Services:
    """The current app's :class:`Services` (inside a request or a task)."""
    return cast(Services, (app or current_app).extensions[EXTENSION])


def celery_init_app(app: Flask, settings: Settings) -> Celery:
    """Create the Celery app for ``app``; tasks run inside its application context."""

    class FlaskTask(Task):  # type: ignore[misc]
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(app.config["CELERY"])
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    app.extensions.setdefault(EXTENSION, Services(settings))
    return celery_app


def celery_for(app: Flask | None = None) -> Celery:
    return cast(Celery, (app or current_app).extensions["celery"])


def enqueue(celery_app: Celery, job: Job) -> None:
    """Send the message for ``job``: references only, to the queue of its photo kind."""
    celery_app.send_task(
        ANALYSE_TASK,
        args=(job.id,),
        kwargs=dict(message_references(job)),
        queue=job.queue,
        exchange=EXCHANGE,
        routing_key=job.queue,
    )


def message_references(job: Job) -> Mapping[str, str | None]:
    """What a message carries besides the job id — never image bytes, never a token."""
    return {"fhir_base": job.fhir_base, "reference": job.reference, "credential": job.credential}


_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def job_of_message(job_id: object, sent: Mapping[str, str | None]) -> Job | None:
    """The stored job a task message names, or None (logged) for a malformed or unknown id.

    The job store is the truth: when the message's references differ from it, the store's win.
    """
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        log.warning("ignoring a message with a malformed job id")
        return None
    job = services().jobs.get(job_id)
    if job is None:
        log.warning("ignoring a message for unknown job %s", job_id)
        return None
    if dict(sent) != dict(message_references(job)):
        log.warning("job %s: the message's references differ from the job store's; using the store's", job_id)
    return job
