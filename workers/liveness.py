"""Leases that prove a worker is alive, and what happens to a dead worker's jobs.

Three pieces, all on the job store (the queue is never the record of who does what):

- :class:`LeaseKeeper` renews a running batch's lease on a daemon thread every third of
  ``job_lease_s``. A killed worker stops renewing, so its jobs are free ``job_lease_s`` later —
  not when the broker's visibility timeout (an hour) would redeliver its message.
- :class:`WorkerHeartbeat` runs in every worker's main process: every ``worker_heartbeat_s`` it
  records that the worker is alive (``/healthz`` reads it) and puts jobs whose lease ran out back
  in the queue with a fresh message. Every worker does it; the conditional requeue makes sure one
  of them wins per job.
- A worker that lost its lease learns it from the keeper and does not write back; the store only
  lets the lease holder finish a job, and every write-back is a conditional create on an
  idempotency identifier, so a takeover can never produce a second set of results.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from types import TracebackType

from celery import Celery
from celery.signals import worker_ready, worker_shutdown
from flask import Flask
from sqlalchemy import delete, func, insert, select, update

from plugin.settings import Settings
from workers.celery_app import celery_for, enqueue, services
from workers.job_schema import workers
from workers.jobs import JobStore

log = logging.getLogger(__name__)


def worker_id() -> str:
    """``host:pid`` of this process (read each time: prefork children differ from their parent)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class LeaseKeeper:
    """Renews the lease of the batch ``owner_id`` while the ``with`` block runs."""

    def __init__(self, store: JobStore, owner_id: str, worker: str, lease_s: float) -> None:
        self._store = store
        self._owner_id = owner_id
        self._worker = worker
        self._lease_s = lease_s
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{owner_id[:8]}", daemon=True)

    @property
    def lost(self) -> bool:
        """True once the batch was taken over (or finished) by someone else: write nothing more."""
        return self._lost.is_set()

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=self._lease_s)

    def _run(self) -> None:
        while not self._stop.wait(self._lease_s / 3):
            try:
                held = self._store.renew(self._owner_id, worker=self._worker, lease_s=self._lease_s)
            except Exception as exc:  # the job store is away: keep trying, the lease may still hold
                log.warning("batch %s: could not renew its lease (%s)", self._owner_id, type(exc).__name__)
                continue
            if held == 0 and not self._stop.is_set():
                log.warning("batch %s: lease lost to another worker; its results will not be written here",
                            self._owner_id)  # fmt: skip
                self._lost.set()
                return


# --- the workers table ----------------------------------------------------------------------------


# Rows of workers silent this long are dropped: every restart adds a row (host:pid).
FORGET_AFTER_S = 7 * 24 * 3600.0


def announce(store: JobStore, name: str, queues: str) -> None:
    """Record that the worker ``name`` is alive now (and forget workers long gone)."""
    now = store.now()
    with store.write() as connection:
        seen = connection.execute(
            update(workers).where(workers.c.name == name).values(last_seen=now, queues=queues)
        )
        if seen.rowcount == 0:
            connection.execute(
                insert(workers).values(name=name, queues=queues, started_at=now, last_seen=now)
            )
            connection.execute(delete(workers).where(workers.c.last_seen < now - FORGET_AFTER_S))


def last_worker_seen(store: JobStore) -> float | None:
    """When any worker last announced itself (Unix seconds), or None if none ever did."""
    with store.engine.connect() as connection:
        value = connection.execute(select(func.max(workers.c.last_seen))).scalar()
    return float(value) if value is not None else None


def requeue_expired(store: JobStore, celery_app: Celery) -> int:
    """Put every job whose lease ran out back in the queue with a new message; returns how many."""
    sent = 0
    for job in store.expired_leases():
        again = store.requeue(job.id, reset_failures=False)
        if again is None:
            continue  # another worker's reaper, or the lease holder, got there first
        enqueue(celery_app, again)
        sent += 1
        log.info("job %s: its lease ran out (worker %s gone); queued again", job.id, job.worker or "none")
    return sent


class WorkerHeartbeat:
    """Announce this worker and reap expired leases every ``worker_heartbeat_s``, on a thread."""

    def __init__(self, app: Flask, queues: list[str]) -> None:
        self._services = services(app)
        self._celery = celery_for(app)
        self._queues = ",".join(queues)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="photomarker-heartbeat", daemon=True)
        self._failing = False

    @property
    def settings(self) -> Settings:
        return self._services.settings

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.settings.worker_heartbeat_s * 2)

    def beat(self) -> None:
        """One round: announce, then reap. Failures are logged once per change of state."""
        try:
            announce(self._services.jobs, worker_id(), self._queues)
            requeue_expired(self._services.jobs, self._celery)
        except Exception as exc:  # job store or broker away: the next round tries again
            if not self._failing:
                log.warning("worker heartbeat failing (%s); retrying every %.0f s",
                            type(exc).__name__, self.settings.worker_heartbeat_s)  # fmt: skip
            self._failing = True
            return
        if self._failing:
            log.info("worker heartbeat back")
        self._failing = False

    def _run(self) -> None:
        self.beat()
        while not self._stop.wait(self.settings.worker_heartbeat_s):
            self.beat()


def keep_alive(app: Flask, queues: list[str]) -> None:
    """Start the heartbeat when this worker is ready to consume, stop it when the worker stops."""
    heartbeat = WorkerHeartbeat(app, queues)
    worker_ready.connect(lambda **_: heartbeat.start(), weak=False)
    worker_shutdown.connect(lambda **_: heartbeat.stop(), weak=False)
