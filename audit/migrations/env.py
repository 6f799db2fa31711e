"""Alembic environment of the audit store.

``audit.engine.migrate`` hands over an open connection (already inside the transaction that
holds the migration lock) in ``config.attributes["connection"]``. Run by hand
(``alembic -c <ini>``), the URL comes from ``sqlalchemy.url`` or
``PHOTOMARKER_AUDIT_DATABASE_URL``.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy.engine import Connection

from audit.engine import VERSION_TABLE, make_engine
from audit.schema import metadata

config = context.config


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("PHOTOMARKER_AUDIT_DATABASE_URL")
    if not url:
        raise RuntimeError("set sqlalchemy.url or PHOTOMARKER_AUDIT_DATABASE_URL")
    return url


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=metadata, version_table=VERSION_TABLE, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif (given := config.attributes.get("connection")) is not None:
    _run(given)
else:
    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            _run(connection)
            connection.commit()
    finally:
        engine.dispose()
