"""The job store: every analysis job, who asked for it, where it stands and what it wrote.

One SQL database (SQLite under the data dir by default, PostgreSQL in production) shared by the
web process and every worker; the queue only carries job ids. The tables are created with
``metadata.create_all`` — small, additive, no migrations yet.

State moves queued → running → done | failed, and each move is one conditional UPDATE, so a
redelivered message can never move a job backwards or finish it twice. A message for job X
*owns a batch*: X itself when it was still queued, plus other queued jobs of the same queue it
claims on the way (micro-batching). Claimed jobs carry a lease; while it runs nobody else works
on them. The lease is short and renewed by a thread while the batch runs; when it ends (the
worker died), any worker's reaper (``workers.liveness``) puts the jobs back in the queue and
re-sends their messages. Only the lease holder can finish a job, so a worker that lost its lease
to a takeover cannot record a result twice.

The records the store reads and writes (``Job``, ``NewJob``, ``Claim``) and the audit record of
a job are in ``workers.job_records``; the tables are in ``workers.job_schema``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    and_,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine, RowMapping

from audit.engine import WRITE_OPTION, make_engine
from workers.job_records import Claim, Job, JobStatus, NewJob, job_from_row
from workers.job_schema import jobs, metadata

# pg_advisory_xact_lock key held while creating tables, so processes starting together create once.
_CREATE_LOCK_KEY = 0x6A6F6273  # "jobs"


class JobStore:
    """Jobs, API tokens and encrypted credentials in one SQL database."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock

    @classmethod
    def from_url(cls, url: str) -> JobStore:
        """Open (and create the tables of) the store at a SQLAlchemy URL."""
        engine = make_engine(url)
        store = cls(engine)
        store.create_tables()
        return store

    @property
    def engine(self) -> Engine:
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    def after_fork(self) -> None:
        """Drop connections inherited from the parent process (never share a socket across fork)."""
        self._engine.dispose(close=False)

    def create_tables(self) -> None:
        with self.write() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CREATE_LOCK_KEY})
            metadata.create_all(connection)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction; on SQLite it takes the write lock up front (no upgrade deadlocks)."""
        with (
            self._engine.connect().execution_options(**{WRITE_OPTION: True}) as connection,
            connection.begin(),
        ):
            yield connection

    def now(self) -> float:
        return float(self._clock())

    def ping(self) -> None:
        with self._engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    # --- creating and reading -----------------------------------------------------------------

    def create(self, new: NewJob) -> Job:
        values = {
            "id": new.id,
            "status": "queued",
            "queue": new.queue,
            "kind": new.kind,
            "fhir_base": new.fhir_base,
            "reference": new.reference,
            "resource": new.resource,
            "credential": new.credential,
            "requested_by": new.requested_by,
            "patient": new.patient,
            "attempts": 0,
            "transient_failures": 0,
            "created_at": self.now(),
        }
        with self.write() as connection:
            connection.execute(insert(jobs).values(**values))
        job = self.get(new.id)
        if job is None:  # pragma: no cover - the row was just committed
            raise RuntimeError("job vanished after insert")
        return job

    def get(self, job_id: str) -> Job | None:
        with self._engine.connect() as connection:
            row = connection.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
        return job_from_row(row) if row is not None else None

    def list_jobs(self, *, status: JobStatus | None = None, limit: int = 50) -> list[Job]:
        """Newest first."""
        query = select(jobs).order_by(jobs.c.created_at.desc()).limit(limit)
        if status is not None:
            query = query.where(jobs.c.status == status)
        with self._engine.connect() as connection:
            return [job_from_row(row) for row in connection.execute(query).mappings()]

    def counts(self) -> dict[str, int]:
        query = select(jobs.c.status, func.count()).group_by(jobs.c.status)
        with self._engine.connect() as connection:
            return {str(status): int(n) for status, n in connection.execute(query)}

    # --- claiming (workers) -------------------------------------------------------------------

    def claim(self, owner_id: str, *, worker: str, lease_s: float, max_jobs: int) -> Claim:
        """The batch the message for ``owner_id`` is responsible for, leased to ``worker``.

        A queued owner is claimed together with up to ``max_jobs - 1`` other queued jobs of its
        queue. An owner already running (a redelivery) gets back the jobs of its batch that are
        not finished — unless their lease is still running, which means a live worker has them.
        A finished owner, or one that another batch owns, gives an empty claim.
        """
        now = self.now()
        with self.write() as connection:
            owner = connection.execute(
                select(jobs.c.status, jobs.c.queue).where(jobs.c.id == owner_id).with_for_update()
            ).first()
            if owner is None:
                return Claim()
            fresh = owner.status == "queued"
            if fresh:
                connection.execute(
                    update(jobs)
                    .where(jobs.c.id == owner_id, jobs.c.status == "queued")
                    .values(status="running", batch_owner=owner_id)
                )
            members = self._members(connection, owner_id)
            if not members:
                return Claim()
            # A lease without a worker is a batch parked for a retry: its own message may take it.
            held = [
                m["lease_until"]
                for m in members
                if m["worker"] is not None and m["lease_until"] and m["lease_until"] > now
            ]
            if held:
                return Claim(lease_held_until=max(held))
            if fresh and len(members) < max_jobs:
                self._claim_queued(connection, owner_id, owner.queue, max_jobs - len(members))
            self._lease(connection, owner_id, worker, now + lease_s, count_attempt=True, now=now)
            return Claim(tuple(job_from_row(row) for row in self._members(connection, owner_id)))

    def claim_more(self, owner_id: str, *, worker: str, lease_s: float, limit: int) -> tuple[Job, ...]:
        """Up to ``limit`` more queued jobs for a batch that is still filling (micro-batching)."""
        if limit <= 0:
            return ()
        now = self.now()
        with self.write() as connection:
            queue = connection.execute(select(jobs.c.queue).where(jobs.c.id == owner_id)).scalar()
            if queue is None:
                return ()
            ids = self._claim_queued(connection, owner_id, queue, limit)
            if not ids:
                return ()
            self._lease(connection, owner_id, worker, now + lease_s, count_attempt=True, now=now, only=ids)
            rows = connection.execute(select(jobs).where(jobs.c.id.in_(ids))).mappings().all()
            return tuple(job_from_row(row) for row in rows)

    def renew(self, owner_id: str, *, worker: str, lease_s: float) -> int:
        """Keep the lease of a batch that is still being worked on; returns how many jobs ``worker``
        still holds (0: the batch was taken over or finished)."""
        with self.write() as connection:
            result = connection.execute(
                update(jobs)
                .where(jobs.c.batch_owner == owner_id, jobs.c.status == "running", jobs.c.worker == worker)
                .values(lease_until=self.now() + lease_s)
            )
            return int(result.rowcount)

    def release_for_retry(self, job_ids: Sequence[str], *, worker: str, until: float) -> None:
        """Give up ``worker``'s lease of jobs that hit a transient failure; they wait, parked under
        their batch with no worker, until ``until`` (their message's retry is due before that; only
        if it never comes does the reaper take them up)."""
        with self.write() as connection:
            connection.execute(
                update(jobs)
                .where(jobs.c.id.in_(job_ids), jobs.c.status == "running", jobs.c.worker == worker)
                .values(worker=None, lease_until=until, transient_failures=jobs.c.transient_failures + 1)
            )

    def expired_leases(self) -> list[Job]:
        """Running jobs whose lease has run out: their worker died, or their retry was never taken up."""
        query = select(jobs).where(jobs.c.status == "running", jobs.c.lease_until < self.now())
        with self._engine.connect() as connection:
            return [job_from_row(row) for row in connection.execute(query).mappings()]

    def _members(self, connection: Connection, owner_id: str) -> Sequence[RowMapping]:
        query = select(jobs).where(jobs.c.batch_owner == owner_id, jobs.c.status == "running")
        return connection.execute(query.order_by(jobs.c.created_at)).mappings().all()

    def _claim_queued(self, connection: Connection, owner_id: str, queue: str, limit: int) -> list[str]:
        # SKIP LOCKED: on PostgreSQL two workers filling batches at once take different jobs
        # instead of waiting on each other (SQLite is already serialised by BEGIN IMMEDIATE).
        candidates = (
            select(jobs.c.id)
            .where(jobs.c.status == "queued", jobs.c.queue == queue)
            .order_by(jobs.c.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        ids = list(connection.execute(candidates).scalars())
        if ids:
            connection.execute(
                update(jobs)
                .where(jobs.c.id.in_(ids), jobs.c.status == "queued")
                .values(status="running", batch_owner=owner_id)
            )
        return ids

    def _lease(
        self,
        connection: Connection,
        owner_id: str,
        worker: str,
        until: float,
        *,
        count_attempt: bool,
        now: float,
        only: Iterable[str] | None = None,
    ) -> None:
        condition = and_(jobs.c.batch_owner == owner_id, jobs.c.status == "running")
        if only is not None:
            condition = and_(condition, jobs.c.id.in_(list(only)))
        values: dict[str, Any] = {
            "worker": worker,
            "lease_until": until,
            "started_at": func.coalesce(jobs.c.started_at, now),
        }
        if count_attempt:
            values["attempts"] = jobs.c.attempts + 1
        connection.execute(update(jobs).where(condition).values(**values))

    # --- finishing ----------------------------------------------------------------------------

    def set_patient(self, job_id: str, patient: str) -> None:
        with self.write() as connection:
            connection.execute(update(jobs).where(jobs.c.id == job_id).values(patient=patient))

    def finish(
        self,
        job_id: str,
        *,
        written: Sequence[str],
        result_bundle: dict[str, Any] | None = None,
        worker: str | None = None,
    ) -> bool:
        """running → done. False when the job was not running (someone else finished it) or, with
        ``worker``, when that worker no longer holds it (its lease was taken over)."""
        return self._transition(
            job_id,
            ("running",),
            worker=worker,
            status="done",
            written=json.dumps(list(written)),
            result_bundle=json.dumps(result_bundle) if result_bundle is not None else None,
            error_code=None,
            error_message=None,
        )

    def fail(self, job_id: str, *, code: str, message: str, worker: str | None = None) -> bool:
        """queued | running → failed. False when the job had already finished (or, with ``worker``,
        when that worker no longer holds it)."""
        return self._transition(
            job_id,
            ("queued", "running"),
            worker=worker,
            status="failed",
            error_code=code,
            error_message=message[:2000],
        )

    def _transition(
        self, job_id: str, allowed: tuple[JobStatus, ...], *, worker: str | None, **values: Any
    ) -> bool:
        condition = and_(jobs.c.id == job_id, jobs.c.status.in_(allowed))
        if worker is not None:
            condition = and_(condition, jobs.c.worker == worker)
        with self.write() as connection:
            result = connection.execute(
                update(jobs).where(condition).values(finished_at=self.now(), lease_until=None, **values)
            )
            return bool(result.rowcount == 1)

    # --- operators: retry and recovery --------------------------------------------------------

    def requeue(self, job_id: str, *, reset_failures: bool = True) -> Job | None:
        """failed, queued, or running with no live lease → queued afresh; None if not allowed.

        An operator's retry starts the transient-failure count again; a takeover after a lease ran
        out keeps it, so a job cannot wait for a down FHIR server for ever.
        """
        now = self.now()
        with self.write() as connection:
            result = connection.execute(
                update(jobs)
                .where(
                    jobs.c.id == job_id,
                    or_(
                        jobs.c.status.in_(("failed", "queued")),
                        and_(
                            jobs.c.status == "running",
                            or_(jobs.c.lease_until.is_(None), jobs.c.lease_until <= now),
                        ),
                    ),
                )
                .values(
                    status="queued",
                    batch_owner=None,
                    lease_until=None,
                    transient_failures=0 if reset_failures else jobs.c.transient_failures,
                    error_code=None,
                    error_message=None,
                    finished_at=None,
                )
            )
            if result.rowcount != 1:
                return None
        return self.get(job_id)

    def stale(self, *, older_than_s: float) -> list[Job]:
        """Jobs that nobody seems to be working on: queued or with a lease long expired."""
        limit = self.now() - older_than_s
        query = select(jobs).where(
            or_(
                and_(jobs.c.status == "queued", jobs.c.created_at < limit),
                and_(jobs.c.status == "running", jobs.c.lease_until < limit),
            )
        )
        with self._engine.connect() as connection:
            return [job_from_row(row) for row in connection.execute(query).mappings()]
