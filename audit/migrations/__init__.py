"""Alembic migrations of the audit store (run by ``audit.engine.migrate``); a package so wheels ship it."""
