"""Helpers for the audit tests: a plausible event factory and what a tamperer with database access does."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text, update
from sqlalchemy.engine import Engine

from audit import chain
from audit.engine import make_engine
from audit.record import AuditAction, AuditOutcome, AuditRecord
from audit.schema import EVENT_TRIGGERS, HEAD_TRIGGERS, POSTGRES_TRUNCATE_TRIGGERS, audit_event, row_to_record

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
MakeRecord = Callable[..., AuditRecord]


def make_record(number: int, **changes: Any) -> AuditRecord:
    """A plausible event; ``number`` varies patient, agent, kind and time."""
    fields: dict[str, Any] = {
        "event": ("photo.read", "analysis.finished", "input.refused")[number % 3],
        "action": (AuditAction.READ, AuditAction.CREATE, AuditAction.EXECUTE)[number % 3],
        "recorded": T0 + timedelta(minutes=number),
        "outcome": AuditOutcome.SERIOUS_FAILURE if number % 3 == 2 else AuditOutcome.SUCCESS,
        "outcome_reason": "unsupported-media-type: image/gif" if number % 3 == 2 else None,
        "subtype": ("read", "create", None)[number % 3],
        "agent_who": f"Practitioner/{number % 4}",
        "agent_client_id": "photomarker-web",
        "agent_token_jti": f"jti-{number}",
        "source_ip": "192.0.2.10",
        "patient": f"Patient/{number % 5}",
        "entities": (f"Media/{number}",),
        "purpose_of_use": "TREAT",
    }
    fields.update(changes)
    return AuditRecord(**fields)


class Tamperer:
    """What someone with direct database access might do, bypassing the store."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = make_engine(url)

    def close(self) -> None:
        self.engine.dispose()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def drop_triggers(self) -> None:
        """Remove the event and head triggers, as a database owner could."""
        postgres = self.dialect == "postgresql"
        statements = [
            f"DROP TRIGGER {name}" + (f" ON {table}" if postgres else "")
            for names, table in ((EVENT_TRIGGERS, "audit_event"), (HEAD_TRIGGERS, "audit_chain_head"))
            for name in names
        ]
        if postgres:
            statements += [f"DROP TRIGGER {name} ON {table}" for name, table in POSTGRES_TRUNCATE_TRIGGERS]
        with self.engine.begin() as connection:
            for statement in statements:
                connection.execute(text(statement))

    def execute(self, sql: str, **params: Any) -> None:
        with self.engine.begin() as connection:
            connection.execute(text(sql), params)

    def set(self, seq: int, /, **values: Any) -> None:
        with self.engine.begin() as connection:
            connection.execute(update(audit_event).where(audit_event.c.seq == seq).values(**values))

    def delete(self, seq: int) -> None:
        self.execute("DELETE FROM audit_event WHERE seq = :seq", seq=seq)

    def swap(self, first: int, second: int) -> None:
        """Exchange two events' places (the rows keep their content and hashes)."""
        self.set(first, seq=-1)
        self.set(second, seq=first)
        self.set(-1, seq=second)

    def renumber_down_after(self, seq: int, last: int) -> None:
        """Close the gap a deletion left: every later event moves one place up."""
        for current in range(seq + 1, last + 1):
            self.set(current, seq=current - 1)

    def rewrite(self, seq: int, key: bytes | None = None, **values: Any) -> None:
        """Change an event and recompute its hash, as someone who knows the algorithm would."""
        with self.engine.begin() as connection:
            row = connection.execute(audit_event.select().where(audit_event.c.seq == seq)).mappings().one()
            changed = {**row, **values}
            digest = chain.event_hash(row_to_record(changed), row["prev_hash"], key)
            connection.execute(
                update(audit_event).where(audit_event.c.seq == seq).values(**values, hash=digest)
            )
