"""Fixtures for the auditor console: an app with one auditor account, and a logged-in helper."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from audit.events import AuditFilter, StoredEvent
from audit.record import AuditAction, AuditOutcome, AuditRecord
from audit.store import AuditStore
from audit.users import AuditorUsers
from plugin.app import create_app
from plugin.settings import load_settings
from workers.celery_app import services

AUDITOR = "ana.auditor"
PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(page: TestResponse) -> str:
    found = _CSRF.search(page.get_data(as_text=True))
    assert found, "the page has no CSRF field"
    return found.group(1)


def sample_events(patients: int = 3, per_patient: int = 60) -> list[AuditRecord]:
    """Events for a few patients, one a minute from 2026-03-01 on (UTC), some failed."""
    start = datetime(2026, 3, 1, tzinfo=UTC)
    records = []
    for i in range(patients * per_patient):
        records.append(
            AuditRecord(
                event="photo.read" if i % 3 else "analysis.finished",
                action=AuditAction.READ if i % 3 else AuditAction.EXECUTE,
                recorded=start + timedelta(minutes=i),
                outcome=AuditOutcome.SUCCESS if i % 10 else AuditOutcome.MINOR_FAILURE,
                agent_who=f"Practitioner/{i % 2}",
                source_ip="10.0.0.7",
                patient=f"Patient/p{i % patients}",
                entities=(f"Media/m{i}",),
            )
        )
    return records


class Console:
    """The test client plus the repeated bits: log in, post a form with its token, read the trail."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.client: FlaskClient = app.test_client()

    def login(self, name: str = AUDITOR, password: str = PASSWORD) -> TestResponse:
        token = csrf_from(self.client.get("/audit/login"))
        form = {"name": name, "password": password, "csrf_token": token}
        return self.client.post("/audit/login", data=form)

    def post(self, path: str, data: dict[str, str] | None = None) -> TestResponse:
        token = csrf_from(self.client.get("/audit/"))
        return self.client.post(path, data={**(data or {}), "csrf_token": token})

    @property
    def store(self) -> AuditStore:
        with self.app.app_context():
            return services().audit_store

    def events(self, name: str) -> list[StoredEvent]:
        return list(self.store.iter_events(AuditFilter(event=name)))


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    settings = load_settings(data_dir=tmp_path / "data")
    app = create_app(settings)
    with app.app_context():
        AuditorUsers(services().audit_store.engine).create(AUDITOR, PASSWORD)
    yield app
    services(app).close()


@pytest.fixture
def console(app: Flask) -> Console:
    return Console(app)
