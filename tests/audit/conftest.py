"""Audit-store fixtures: a fresh store on SQLite and on a real PostgreSQL, and a tampering helper."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from audit.store import AuditStore
from tests.audit.tampering import MakeRecord, Tamperer, make_record
from tests.postgres import fresh_database, postgres_server


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    with fresh_database(postgres_server_url) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'audit.sqlite'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """A URL to a fresh, empty audit database on each backend."""
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[AuditStore]:
    with AuditStore.from_url(db_url) as opened:
        yield opened


@pytest.fixture(name="make_record")
def make_record_fixture() -> MakeRecord:
    return make_record


@pytest.fixture
def tamper(db_url: str) -> Iterator[Tamperer]:
    tamperer = Tamperer(db_url)
    yield tamperer
    tamperer.close()
