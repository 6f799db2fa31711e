"""Create the hash-chained audit tables, their indexes and the triggers that keep them append-only.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Tables and their meaning are described in ``audit.schema``.

Triggers: events refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL) and any INSERT not
linked to event ``seq - 1``; the head row moves only forward, onto the last event; the config
row is written once.

Indexes serve the auditor's searches with keyset paging on ``seq``: (patient, seq),
(agent_who, seq), (event, seq), (outcome, seq) answer "this patient / user / kind of event /
failures, in order, after seq N" from the index alone; (recorded, seq) serves time windows.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

GENESIS_HASH = "0" * 64  # frozen here: a migration must not change when audit.chain does

_SQLITE_TRIGGERS = [
    """CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event
       BEGIN SELECT RAISE(ABORT, 'audit_event is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event
       BEGIN SELECT RAISE(ABORT, 'audit_event is append-only: DELETE refused'); END""",
    f"""CREATE TRIGGER audit_event_link_check BEFORE INSERT ON audit_event
       WHEN NOT ((NEW.seq = 1 AND NEW.prev_hash = '{GENESIS_HASH}')
                 OR EXISTS (SELECT 1 FROM audit_event WHERE seq = NEW.seq - 1 AND hash = NEW.prev_hash))
       BEGIN SELECT RAISE(ABORT, 'audit_event INSERT refused: it does not follow the last event'); END""",  # noqa: S608
    """CREATE TRIGGER audit_chain_head_no_delete BEFORE DELETE ON audit_chain_head
       BEGIN SELECT RAISE(ABORT, 'audit_chain_head DELETE refused'); END""",
    """CREATE TRIGGER audit_chain_head_advance_only BEFORE UPDATE ON audit_chain_head
       WHEN NEW.id <> OLD.id OR NEW.seq <= OLD.seq
            OR NOT EXISTS (SELECT 1 FROM audit_event WHERE seq = NEW.seq AND hash = NEW.hash)
            OR EXISTS (SELECT 1 FROM audit_event WHERE seq > NEW.seq)
       BEGIN SELECT RAISE(ABORT, 'audit_chain_head may only advance to the last event'); END""",
    """CREATE TRIGGER audit_chain_config_no_update BEFORE UPDATE ON audit_chain_config
       BEGIN SELECT RAISE(ABORT, 'audit_chain_config is write-once: UPDATE refused'); END""",
    """CREATE TRIGGER audit_chain_config_no_delete BEFORE DELETE ON audit_chain_config
       BEGIN SELECT RAISE(ABORT, 'audit_chain_config is write-once: DELETE refused'); END""",
]

_POSTGRES_FUNCTIONS = [
    """CREATE FUNCTION audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
       END $$""",
    f"""CREATE FUNCTION audit_event_link_check() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NOT ((NEW.seq = 1 AND NEW.prev_hash = '{GENESIS_HASH}')
                 OR EXISTS (SELECT 1 FROM audit_event WHERE seq = NEW.seq - 1 AND hash = NEW.prev_hash)) THEN
           RAISE EXCEPTION 'audit_event INSERT refused: event % does not follow the last event', NEW.seq;
         END IF;
         RETURN NEW;
       END $$""",  # noqa: S608 (only constants are interpolated)
    """CREATE FUNCTION audit_chain_head_advance_only() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NEW.id <> OLD.id OR NEW.seq <= OLD.seq
            OR NOT EXISTS (SELECT 1 FROM audit_event WHERE seq = NEW.seq AND hash = NEW.hash)
            OR EXISTS (SELECT 1 FROM audit_event WHERE seq > NEW.seq) THEN
           RAISE EXCEPTION 'audit_chain_head may only advance to the last event';
         END IF;
         RETURN NEW;
       END $$""",
]

_POSTGRES_TRIGGERS = [
    "CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event "
    "FOR EACH ROW EXECUTE FUNCTION audit_refuse()",
    "CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event "
    "FOR EACH ROW EXECUTE FUNCTION audit_refuse()",
    "CREATE TRIGGER audit_event_link_check BEFORE INSERT ON audit_event "
    "FOR EACH ROW EXECUTE FUNCTION audit_event_link_check()",
    "CREATE TRIGGER audit_chain_head_no_delete BEFORE DELETE ON audit_chain_head "
    "FOR EACH ROW EXECUTE FUNCTION audit_refuse()",
    "CREATE TRIGGER audit_chain_head_advance_only BEFORE UPDATE ON audit_chain_head "
    "FOR EACH ROW EXECUTE FUNCTION audit_chain_head_advance_only()",
    "CREATE TRIGGER audit_chain_config_no_update BEFORE UPDATE ON audit_chain_config "
    "FOR EACH ROW EXECUTE FUNCTION audit_refuse()",
    "CREATE TRIGGER audit_chain_config_no_delete BEFORE DELETE ON audit_chain_config "
    "FOR EACH ROW EXECUTE FUNCTION audit_refuse()",
    # Row triggers do not see TRUNCATE on PostgreSQL.
    "CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse()",
    "CREATE TRIGGER audit_chain_head_no_truncate BEFORE TRUNCATE ON audit_chain_head "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse()",
    "CREATE TRIGGER audit_chain_config_no_truncate BEFORE TRUNCATE ON audit_chain_config "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse()",
]


def upgrade() -> None:
    seq_type = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "audit_event",
        sa.Column("seq", seq_type, primary_key=True, autoincrement=False),
        sa.Column("recorded", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("action", sa.String(1), nullable=False),
        sa.Column("subtype", sa.Text()),
        sa.Column("outcome", sa.String(2), nullable=False),
        sa.Column("outcome_reason", sa.Text()),
        sa.Column("agent_who", sa.Text()),
        sa.Column("agent_client_id", sa.Text()),
        sa.Column("agent_token_jti", sa.Text()),
        sa.Column("source_ip", sa.Text()),
        sa.Column("patient", sa.Text()),
        sa.Column("entities", sa.Text(), nullable=False),
        sa.Column("purpose_of_use", sa.Text()),
        sa.Column("query", sa.Text()),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    for column in ("patient", "agent_who", "event", "outcome", "recorded"):
        op.create_index(f"ix_audit_event_{column}_seq", "audit_event", [column, "seq"])

    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("seq", seq_type, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_audit_chain_head_single_row"),
    )
    op.create_table(
        "audit_chain_config",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("algorithm", sa.Text(), nullable=False),
        sa.Column("key_check", sa.Text()),
        sa.CheckConstraint("id = 1", name="ck_audit_chain_config_single_row"),
    )
    # Seeded before the triggers exist: from here on only an appended event moves it.
    op.execute(
        sa.text("INSERT INTO audit_chain_head (id, seq, hash) VALUES (1, 0, :genesis)").bindparams(
            genesis=GENESIS_HASH
        )
    )

    if op.get_bind().dialect.name == "postgresql":
        statements = _POSTGRES_FUNCTIONS + _POSTGRES_TRIGGERS
    else:
        statements = _SQLITE_TRIGGERS
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    # Dropping the audit trail is not a schema change anyone should be able to run by accident.
    raise RuntimeError("the audit trail cannot be downgraded; archive it and drop it by hand")
