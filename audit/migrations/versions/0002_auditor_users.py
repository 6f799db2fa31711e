"""Add auditor accounts: a name and a salted scrypt hash of the password, nothing else.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

The accounts live beside the trail they give access to, so a console and
``photomarker audit user create`` agree on them whichever database the trail is in. Unlike the
event tables they may change (a password is replaced), so they get no append-only triggers;
every change is recorded as an audit event by the code that makes it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "auditor_user",
        sa.Column("name", sa.Text, primary_key=True),
        # "scrypt$n$r$p$salt-hex$hash-hex": the parameters travel with the hash so they can grow.
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("auditor_user")
