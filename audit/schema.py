"""The audit tables as SQLAlchemy Core sees them, and the mapping between rows and records.

The tables are created (and protected by triggers) only by the Alembic migrations in
``audit/migrations``; this module describes them for queries and must agree with the latest one.

- ``audit_event``: one row per event, append-only (UPDATE and DELETE refused by triggers; an
  INSERT is refused unless its ``prev_hash`` is the hash of event ``seq - 1``, or it is event 1
  after the genesis hash — so the table can only ever hold one gap-free chain).
- ``audit_chain_head``: exactly one row (id 1) with the last event's ``seq`` and ``hash``; its
  trigger lets it move only forward, onto the last stored event. Writers lock this row to keep
  one linear chain, and verification compares it with the last event so that a cut-off tail
  shows.
- ``audit_chain_config``: at most one row, written once, naming the hash algorithm and a key
  check, so that a store opened with the wrong HMAC key refuses to append.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import RowMapping

from audit.record import AuditAction, AuditOutcome, AuditRecord

metadata = MetaData()

# Names of the protecting triggers, created by the migration (tests drop them to tamper).
EVENT_TRIGGERS = ("audit_event_no_update", "audit_event_no_delete", "audit_event_link_check")
HEAD_TRIGGERS = ("audit_chain_head_no_delete", "audit_chain_head_advance_only")
CONFIG_TRIGGERS = ("audit_chain_config_no_update", "audit_chain_config_no_delete")
# PostgreSQL only, (trigger, table): TRUNCATE bypasses row triggers there.
POSTGRES_TRUNCATE_TRIGGERS = (
    ("audit_event_no_truncate", "audit_event"),
    ("audit_chain_head_no_truncate", "audit_chain_head"),
    ("audit_chain_config_no_truncate", "audit_chain_config"),
)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, UTC-aware datetimes out, on every backend.

    SQLite has no time-zone type: there the value is stored as naive UTC text of fixed width, so
    comparisons and the ``recorded`` index still order correctly.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("audit times must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite makes an INTEGER PRIMARY KEY the rowid itself: one B-tree fewer to write.
_Seq = BigInteger().with_variant(Integer(), "sqlite")

audit_event = Table(
    "audit_event",
    metadata,
    Column("seq", _Seq, primary_key=True, autoincrement=False),
    Column("recorded", UtcDateTime(), nullable=False),
    Column("event", Text, nullable=False),
    Column("action", String(1), nullable=False),
    Column("subtype", Text),
    Column("outcome", String(2), nullable=False),
    Column("outcome_reason", Text),
    Column("agent_who", Text),
    Column("agent_client_id", Text),
    Column("agent_token_jti", Text),
    Column("source_ip", Text),
    Column("patient", Text),
    Column("entities", Text, nullable=False),  # JSON array of references
    Column("purpose_of_use", Text),
    Column("query", Text),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

audit_chain_head = Table(
    "audit_chain_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", _Seq, nullable=False),
    Column("hash", String(64), nullable=False),
)

audit_chain_config = Table(
    "audit_chain_config",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("algorithm", Text, nullable=False),
    Column("key_check", Text),
)

HEAD_ROW_ID = 1


def record_to_row(record: AuditRecord) -> dict[str, Any]:
    """The ``audit_event`` columns for ``record`` (without ``seq`` and the hashes)."""
    return {
        "recorded": record.recorded,
        "event": record.event,
        "action": str(record.action),
        "subtype": record.subtype,
        "outcome": str(record.outcome),
        "outcome_reason": record.outcome_reason,
        "agent_who": record.agent_who,
        "agent_client_id": record.agent_client_id,
        "agent_token_jti": record.agent_token_jti,
        "source_ip": record.source_ip,
        "patient": record.patient,
        "entities": json.dumps(list(record.entities), ensure_ascii=False),
        "purpose_of_use": record.purpose_of_use,
        "query": record.query,
    }


def row_to_record(row: RowMapping) -> AuditRecord:
    """The record a stored row says happened (as read, so tampered rows read back tampered)."""
    entities = json.loads(row["entities"]) if row["entities"] else []
    return AuditRecord(
        event=row["event"],
        action=AuditAction(row["action"]),
        recorded=row["recorded"],
        outcome=AuditOutcome(row["outcome"]),
        outcome_reason=row["outcome_reason"],
        subtype=row["subtype"],
        agent_who=row["agent_who"],
        agent_client_id=row["agent_client_id"],
        agent_token_jti=row["agent_token_jti"],
        source_ip=row["source_ip"],
        patient=row["patient"],
        entities=tuple(str(entity) for entity in entities),
        purpose_of_use=row["purpose_of_use"],
        query=row["query"],
    )
