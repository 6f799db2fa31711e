"""``AuditStore``: append events to the hash chain, find them again, verify and export the chain.

Writers serialise on the chain head: PostgreSQL locks its one row (``SELECT … FOR UPDATE``),
SQLite takes the database write lock up front (``BEGIN IMMEDIATE``). Either way the head read,
the hashes computed from it, the INSERT and the head's move happen under one lock in one
transaction, so any number of threads and processes produce one gap-free linear chain. The
database's triggers refuse any INSERT that does not follow the previous event, every UPDATE or
DELETE of an event, and any move of the head other than forward to the last event.

Reading the trail is itself an auditable act: callers that serve searches or exports to people
(the auditor console, ``photomarker audit``) append an event saying so.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TextIO

from sqlalchemy import ColumnElement, Select, bindparam, insert, select, update
from sqlalchemy.engine import Connection, Engine

from audit import chain, engine, export
from audit.events import AuditFilter, Page, StoredEvent, VerifyResult
from audit.record import AuditRecord
from audit.schema import (
    HEAD_ROW_ID,
    audit_chain_config,
    audit_chain_head,
    audit_event,
    record_to_row,
    row_to_record,
)
from audit.verify import verify_chain

MAX_PAGE_SIZE = 10_000

# Built once: building a statement costs about as much as running it on SQLite.
_READ_HEAD = select(audit_chain_head.c.seq, audit_chain_head.c.hash).where(
    audit_chain_head.c.id == HEAD_ROW_ID
)
# FOR UPDATE is what serialises PostgreSQL writers; SQLite renders no clause and is already
# serialised by BEGIN IMMEDIATE.
_LOCK_HEAD = _READ_HEAD.with_for_update()
_INSERT_EVENT = insert(audit_event)
_MOVE_HEAD = (
    update(audit_chain_head)
    .where(audit_chain_head.c.id == HEAD_ROW_ID)
    .values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
)


class AuditStore:
    """The append-only audit trail in one SQL database (SQLite file or PostgreSQL)."""

    def __init__(self, db: Engine, *, hmac_key: bytes | None = None) -> None:
        """Use an engine made by ``audit.engine.make_engine`` whose schema is already migrated."""
        if hmac_key is not None and not hmac_key:
            # An empty key would give a keyed chain that anyone can recompute.
            raise ValueError("the audit HMAC key is empty; give a real key or none")
        self._engine = db
        self._key = hmac_key
        # The chain's key never changes (write-once row), so one successful check is enough.
        self._key_confirmed = False

    @classmethod
    def from_url(
        cls, url: str, *, hmac_key: bytes | None = None, migrate: bool = True, **engine_options: Any
    ) -> AuditStore:
        """Open the store at a SQLAlchemy URL, bringing its schema up to date unless told not to.

        ``postgresql://`` URLs use psycopg 3. An SQLite file is created when missing (its
        directory must exist).
        """
        db = engine.make_engine(url, **engine_options)
        if migrate:
            engine.migrate(db)
        return cls(db, hmac_key=hmac_key)

    @property
    def engine(self) -> Engine:
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- writing ---------------------------------------------------------------------------------

    def append(self, record: AuditRecord) -> StoredEvent:
        """Add one event at the end of the chain, durably, and return it with its place and hash."""
        return self.append_many([record])[0]

    def append_many(self, records: Iterable[AuditRecord]) -> list[StoredEvent]:
        """Add events in the given order in one transaction: all of them or, on error, none.

        Also the fast path for loading many events (one lock, one commit, one ``executemany``).
        """
        batch = list(records)
        if not batch:
            return []
        rows = [record_to_row(record) for record in batch]
        stored: list[StoredEvent] = []
        with self._write_connection() as connection, connection.begin():
            seq, prev_hash = self._lock_head(connection)
            self._confirm_key(connection)
            for record, row in zip(batch, rows, strict=True):
                seq += 1
                digest = chain.event_hash(record, prev_hash, self._key)
                row.update(seq=seq, prev_hash=prev_hash, hash=digest)
                stored.append(StoredEvent(seq=seq, record=record, prev_hash=prev_hash, hash=digest))
                prev_hash = digest
            connection.execute(_INSERT_EVENT, rows)
            # Once per transaction, not per event: a row updated thousands of times in one
            # PostgreSQL transaction grows a version chain that every later update must walk.
            connection.execute(_MOVE_HEAD, {"new_seq": seq, "new_hash": prev_hash})
        return stored

    def _write_connection(self) -> Connection:
        return self._engine.connect().execution_options(**{engine.WRITE_OPTION: True})

    @staticmethod
    def _lock_head(connection: Connection) -> tuple[int, str]:
        row = connection.execute(_LOCK_HEAD).one()
        return int(row.seq), str(row.hash)

    def _confirm_key(self, connection: Connection) -> None:
        """Refuse to extend a chain started under another key (or without one)."""
        if self._key_confirmed:
            return
        config = connection.execute(select(audit_chain_config)).mappings().first()
        if config is None:
            # First writer ever; the head lock we hold makes this INSERT race-free.
            connection.execute(
                insert(audit_chain_config).values(
                    id=HEAD_ROW_ID,
                    algorithm=chain.algorithm_for(self._key),
                    key_check=chain.key_check(self._key),
                )
            )
        else:
            chain.check_key(config["algorithm"], config["key_check"], self._key)
        self._key_confirmed = True

    def check_key(self) -> None:
        """Raise ``AuditKeyMismatch`` now if appends would be refused for the key.

        For callers that must record what they are about to do (an export is audited) and so
        should find out before doing it.
        """
        with self._engine.connect() as connection:
            config = connection.execute(select(audit_chain_config)).mappings().first()
        if config is not None:
            chain.check_key(config["algorithm"], config["key_check"], self._key)

    # --- reading ---------------------------------------------------------------------------------

    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the last event; ``(0, 64 zeros)`` for an empty chain."""
        with self._engine.connect() as connection:
            row = connection.execute(_READ_HEAD).one()
            return int(row.seq), str(row.hash)

    def get(self, seq: int) -> StoredEvent | None:
        with self._engine.connect() as connection:
            row = connection.execute(select(audit_event).where(audit_event.c.seq == seq)).mappings().first()
        return _stored(row) if row is not None else None

    def search(
        self,
        filter: AuditFilter | None = None,
        *,
        after_seq: int | None = None,
        limit: int = 100,
        newest_first: bool = False,
    ) -> Page:
        """One page of matching events in ``seq`` order (newest first when asked).

        Keyset paging: ``after_seq`` is the last ``seq`` of the previous page, "after" in the page's
        own order, so a page costs the same however deep into the trail it is.
        """
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}")
        query = _search_query(filter or AuditFilter(), after_seq, newest_first).limit(limit + 1)
        with self._engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        events = [_stored(row) for row in rows[:limit]]
        more = len(rows) > limit
        return Page(events=events, next_after_seq=events[-1].seq if more else None)

    def iter_events(
        self, filter: AuditFilter | None = None, *, newest_first: bool = False, page_size: int = 1000
    ) -> Iterator[StoredEvent]:
        """Every matching event, fetched a page at a time (exports of any size in little memory)."""
        after: int | None = None
        while True:
            page = self.search(filter, after_seq=after, limit=page_size, newest_first=newest_first)
            yield from page.events
            if page.next_after_seq is None:
                return
            after = page.next_after_seq

    # --- checking and exporting --------------------------------------------------------------------

    def verify(self) -> VerifyResult:
        """Recompute the whole chain; raises ``AuditKeyMismatch`` if this store has the wrong key."""
        return verify_chain(self._engine, self._key)

    def export(
        self,
        out: TextIO,
        fmt: export.ExportFormat | str,
        filter: AuditFilter | None = None,
        *,
        bundle_type: str = "collection",
        builder: export.AuditEventBuilder | None = None,
        chain_extension_url: str | None = None,
        timestamp: datetime | None = None,
    ) -> int:
        """Write matching events to ``out`` as a FHIR Bundle, NDJSON or CSV; returns how many."""
        return export.export_events(
            self.iter_events(filter),
            out,
            export.ExportFormat(fmt),
            bundle_type=bundle_type,
            builder=builder,
            chain_extension_url=chain_extension_url,
            timestamp=timestamp,
        )


def _search_query(filter: AuditFilter, after_seq: int | None, newest_first: bool) -> Select[Any]:
    conditions: list[ColumnElement[bool]] = []
    column = audit_event.c
    for value, target in (
        (filter.patient, column.patient),
        (filter.agent, column.agent_who),
        (filter.event, column.event),
        (str(filter.outcome) if filter.outcome is not None else None, column.outcome),
    ):
        if value is not None:
            conditions.append(target == value)
    if filter.since is not None:
        conditions.append(column.recorded >= filter.since)
    if filter.until is not None:
        conditions.append(column.recorded < filter.until)
    if after_seq is not None:
        conditions.append(column.seq < after_seq if newest_first else column.seq > after_seq)
    order = column.seq.desc() if newest_first else column.seq.asc()
    return select(audit_event).where(*conditions).order_by(order)


def _stored(row: Any) -> StoredEvent:
    return StoredEvent(
        seq=int(row["seq"]), record=row_to_record(row), prev_hash=row["prev_hash"], hash=row["hash"]
    )
