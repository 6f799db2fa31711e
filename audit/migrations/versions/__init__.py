"""Alembic revisions of the audit store; a package only so that wheels ship these files."""
