"""The inbox's memory, in the job store's database: each photo version seen once, and poll cursors.

``photomarker_inbox_photo`` has the primary key (FHIR base, resource type, id, versionId). A
trigger — a notification, a redelivery, the poller — first *inserts* that key; only the one
insert that succeeds goes on to create a job, every other sighting is a duplicate. That is what
makes "one job per photo version" hold across web processes, workers and both triggers, without
locks. A row then moves claimed → queued (a job exists) → following-up → done, or ends skipped /
refused / failed. A row left "claimed" by a process that died is taken over after a while.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from workers.job_records import TERMINAL
from workers.job_schema import jobs
from workers.jobs import JobStore

metadata = MetaData()

inbox_photos = Table(
    "photomarker_inbox_photo",
    metadata,
    Column("fhir_base", String(500), primary_key=True),
    Column("resource_type", String(32), primary_key=True),
    Column("resource_id", String(64), primary_key=True),
    # "" when the server keeps no versions: then an edit is not a new photo to score.
    Column("version_id", String(64), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("job_id", String(32)),
    Column("source", String(16), nullable=False),  # subscription | poll
    Column("attempts", Integer, nullable=False),  # jobs created for this version
    Column("first_seen", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_photomarker_inbox_photo_job", "job_id"),
    Index("ix_photomarker_inbox_photo_state", "state", "updated_at"),
)

inbox_cursors = Table(
    "photomarker_inbox_cursor",
    metadata,
    Column("fhir_base", String(500), primary_key=True),
    Column("resource_type", String(32), primary_key=True),
    Column("last_updated", String(40), nullable=False),  # the server's own meta.lastUpdated text
    Column("updated_at", Float, nullable=False),
)

# A row still "claimed" this long after it was claimed belongs to a process that died.
CLAIM_STALE_S = 120.0
# A follow-up still running after this long was abandoned by its worker.
FOLLOWUP_STALE_S = 600.0


@dataclass(frozen=True)
class PhotoVersion:
    """One version of one photo resource on one FHIR server."""

    fhir_base: str
    resource_type: str  # Media | DocumentReference
    id: str
    version_id: str  # "" when the server gives none

    @property
    def reference(self) -> str:
        base = f"{self.resource_type}/{self.id}"
        return f"{base}/_history/{self.version_id}" if self.version_id else base

    def where(self) -> Any:
        c = inbox_photos.c
        return and_(
            c.fhir_base == self.fhir_base,
            c.resource_type == self.resource_type,
            c.resource_id == self.id,
            c.version_id == self.version_id,
        )


@dataclass(frozen=True)
class InboxPhoto:
    version: PhotoVersion
    state: str
    job_id: str | None
    source: str
    attempts: int


class InboxStore:
    """Dedupe rows and poll cursors, on the job store's engine (tables created on first use)."""

    def __init__(self, jobs_store: JobStore) -> None:
        self._jobs = jobs_store
        with jobs_store.write() as connection:
            metadata.create_all(connection)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._jobs.write() as connection:
            yield connection

    # --- exactly once --------------------------------------------------------------------------

    def claim(self, version: PhotoVersion, *, source: str, job_id: str) -> bool:
        """True for the one caller that sees ``version`` first (or takes over an abandoned claim)."""
        now = time.time()
        values = {
            "fhir_base": version.fhir_base,
            "resource_type": version.resource_type,
            "resource_id": version.id,
            "version_id": version.version_id,
            "state": "claimed",
            "job_id": job_id,
            "source": source,
            "attempts": 1,
            "first_seen": now,
            "updated_at": now,
        }
        with self._write() as connection:
            if _insert_or_ignore(connection, values):
                return True
            # Someone claimed it first; only a claim whose process died may be taken over.
            taken = connection.execute(
                update(inbox_photos)
                .where(
                    version.where(),
                    inbox_photos.c.state == "claimed",
                    inbox_photos.c.updated_at < now - CLAIM_STALE_S,
                )
                .values(job_id=job_id, source=source, updated_at=now, attempts=inbox_photos.c.attempts + 1)
            )
            return bool(taken.rowcount == 1)

    def settle(self, version: PhotoVersion, state: str) -> None:
        """claimed → queued | skipped | refused."""
        with self._write() as connection:
            connection.execute(
                update(inbox_photos).where(version.where()).values(state=state, updated_at=time.time())
            )

    def forget(self, version: PhotoVersion) -> None:
        """Undo a claim whose job could not be queued, so the next sighting tries again."""
        with self._write() as connection:
            connection.execute(delete(inbox_photos).where(version.where()))

    def release_claim(self, version: PhotoVersion) -> None:
        """Give up a claim that has no job yet (its decision failed half-way)."""
        with self._write() as connection:
            connection.execute(delete(inbox_photos).where(version.where(), inbox_photos.c.state == "claimed"))

    def get(self, version: PhotoVersion) -> InboxPhoto | None:
        with self._jobs.engine.connect() as connection:
            row = connection.execute(select(inbox_photos).where(version.where())).mappings().first()
        return _photo(row) if row is not None else None

    def by_job(self, job_id: str) -> InboxPhoto | None:
        with self._jobs.engine.connect() as connection:
            row = (
                connection.execute(select(inbox_photos).where(inbox_photos.c.job_id == job_id))
                .mappings()
                .first()
            )
        return _photo(row) if row is not None else None

    def counts(self) -> dict[str, int]:
        query = select(inbox_photos.c.state, func.count()).group_by(inbox_photos.c.state)
        with self._jobs.engine.connect() as connection:
            return {str(state): int(n) for state, n in connection.execute(query)}

    # --- follow-ups (retake requests, retries with a fresh token) ------------------------------

    def begin_followup(self, job_id: str) -> InboxPhoto | None:
        """The inbox row of a finished job, for the one caller that follows it up."""
        now = time.time()
        with self._write() as connection:
            claimed = connection.execute(
                update(inbox_photos)
                .where(
                    inbox_photos.c.job_id == job_id,
                    or_(
                        inbox_photos.c.state == "queued",
                        and_(
                            inbox_photos.c.state == "following-up",
                            inbox_photos.c.updated_at < now - FOLLOWUP_STALE_S,
                        ),
                    ),
                )
                .values(state="following-up", updated_at=now)
            )
            if claimed.rowcount != 1:
                return None
            row = (
                connection.execute(select(inbox_photos).where(inbox_photos.c.job_id == job_id))
                .mappings()
                .first()
            )
        return _photo(row) if row is not None else None

    def end_followup(self, job_id: str, state: str) -> None:
        with self._write() as connection:
            connection.execute(
                update(inbox_photos)
                .where(inbox_photos.c.job_id == job_id, inbox_photos.c.state == "following-up")
                .values(state=state, updated_at=time.time())
            )

    def replace_job(self, old_job_id: str, new_job_id: str) -> None:
        """Point a version at a new job (the first failed for a reason a fresh token may cure)."""
        with self._write() as connection:
            connection.execute(
                update(inbox_photos)
                .where(inbox_photos.c.job_id == old_job_id)
                .values(
                    job_id=new_job_id,
                    state="queued",
                    attempts=inbox_photos.c.attempts + 1,
                    updated_at=time.time(),
                )
            )

    def finished_jobs_to_follow_up(self, limit: int = 200) -> list[str]:
        """Jobs of queued inbox rows that have finished (their follow-up has not run yet)."""
        now = time.time()
        query = (
            select(inbox_photos.c.job_id)
            .join(jobs, jobs.c.id == inbox_photos.c.job_id)
            .where(
                jobs.c.status.in_(TERMINAL),
                or_(
                    inbox_photos.c.state == "queued",
                    and_(
                        inbox_photos.c.state == "following-up",
                        inbox_photos.c.updated_at < now - FOLLOWUP_STALE_S,
                    ),
                ),
            )
            .limit(limit)
        )
        with self._jobs.engine.connect() as connection:
            return [str(job_id) for job_id in connection.execute(query).scalars()]

    # --- poll cursors ---------------------------------------------------------------------------

    def cursor(self, fhir_base: str, resource_type: str) -> str | None:
        query = select(inbox_cursors.c.last_updated).where(
            inbox_cursors.c.fhir_base == fhir_base, inbox_cursors.c.resource_type == resource_type
        )
        with self._jobs.engine.connect() as connection:
            value = connection.execute(query).scalar()
        return str(value) if value is not None else None

    def set_cursor(self, fhir_base: str, resource_type: str, last_updated: str) -> None:
        now = time.time()
        with self._write() as connection:
            changed = connection.execute(
                update(inbox_cursors)
                .where(inbox_cursors.c.fhir_base == fhir_base, inbox_cursors.c.resource_type == resource_type)
                .values(last_updated=last_updated, updated_at=now)
            )
            if changed.rowcount == 0:
                connection.execute(
                    insert(inbox_cursors).values(
                        fhir_base=fhir_base,
                        resource_type=resource_type,
                        last_updated=last_updated,
                        updated_at=now,
                    )
                )


def _insert_or_ignore(connection: Connection, values: dict[str, Any]) -> bool:
    """INSERT that does nothing on a duplicate key; True when the row went in."""
    dialect = connection.dialect.name
    if dialect == "sqlite":
        result = connection.execute(sqlite.insert(inbox_photos).values(**values).on_conflict_do_nothing())
        return bool(result.rowcount == 1)
    if dialect == "postgresql":
        result = connection.execute(postgresql.insert(inbox_photos).values(**values).on_conflict_do_nothing())
        return bool(result.rowcount == 1)
    try:  # any other database: a savepoint keeps the transaction usable after the duplicate
        with connection.begin_nested():
            connection.execute(insert(inbox_photos).values(**values))
        return True
    except IntegrityError:
        return False


def _photo(row: Any) -> InboxPhoto:
    return InboxPhoto(
        version=PhotoVersion(row["fhir_base"], row["resource_type"], row["resource_id"], row["version_id"]),
        state=row["state"],
        job_id=row["job_id"],
        source=row["source"],
        attempts=int(row["attempts"]),
    )
