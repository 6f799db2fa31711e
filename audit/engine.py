"""Database connections for the audit store, and bringing its schema to the newest migration.

One SQLAlchemy engine per store. On SQLite the driver's own transaction handling is switched off
so that a writer can open its transaction with ``BEGIN IMMEDIATE``: it takes the database's write
lock before reading the chain head, which is what keeps concurrent writers (threads and processes)
on one linear chain. Readers use a plain ``BEGIN`` and, in WAL mode, never wait for writers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url

# Own version table: the audit store may share a PostgreSQL database with other Alembic users.
VERSION_TABLE = "audit_alembic_version"
# Execution option that marks a connection whose next transaction writes the chain.
WRITE_OPTION = "audit_write"
# pg_advisory_xact_lock key taken while migrating, so that processes starting together
# do not both create the tables ("audit" in ASCII).
_MIGRATION_LOCK_KEY = 0x61756469
# How long an SQLite writer waits for the write lock before giving up.
_SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (the driver the project installs), not psycopg2."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, **engine_options: Any) -> Engine:
    """An engine for ``url`` set up for the audit store's transaction discipline."""
    url = normalise_url(url)
    if not url.startswith("sqlite"):
        # A server restart must not turn the next audit append into an error.
        engine_options.setdefault("pool_pre_ping", True)
    engine = create_engine(url, **engine_options)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to the "begin" hook below instead of the driver.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
        # WAL: readers do not block the writer; FULL: an appended event survives power loss.
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        writing = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    config.set_main_option("path_separator", "os")
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def migrate(engine: Engine) -> None:
    """Bring the audit schema to the newest revision; a no-op when it already is.

    The upgrade runs in one transaction that first takes the database-wide write lock (SQLite
    ``BEGIN IMMEDIATE``, PostgreSQL advisory lock), so that processes starting at the same
    moment migrate once and the others find the work done.
    """
    if current_revision(engine) == head_revision():
        return
    config = _alembic_config()
    with engine.connect().execution_options(**{WRITE_OPTION: True}) as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
