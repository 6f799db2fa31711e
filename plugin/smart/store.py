"""Launches kept server-side: PKCE verifier, state, tokens and context, Fernet-encrypted at rest.

One row per launch in the job store database (``photomarker_smart_launch``). The browser holds
only a random cookie; the row keeps its SHA-256, so a copy of the database cannot be turned into
a session. While the authorization round trip is pending, the row also keeps the SHA-256 of the
``state``; the callback consumes it with one conditional UPDATE, so a state works exactly once
and only in the browser that started the launch. Everything else — the code verifier, nonce,
access/refresh/id tokens, patient and user — is one Fernet-encrypted JSON document.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import (
    Column,
    Float,
    Index,
    LargeBinary,
    MetaData,
    String,
    Table,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine

from workers.jobs import JobStore

# Time a pending launch may take at the authorization server (login, consent).
PENDING_MAX_AGE_S = 600

smart_metadata = MetaData()

launches = Table(
    "photomarker_smart_launch",
    smart_metadata,
    Column("id", String(64), primary_key=True),  # random; the clinician pages' URLs carry it
    Column("browser", String(64), nullable=False),  # SHA-256 of the browser's cookie
    Column("state", String(64), unique=True),  # SHA-256 of the pending state; NULL once used
    Column("ciphertext", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Index("ix_photomarker_smart_launch_expiry", "expires_at"),
)


@dataclass
class Run:
    """One click on Analyse: its jobs, and whether their results are written to the EHR."""

    jobs: list[str]
    photos: list[str]
    saved: bool
    created_at: float
    # "Photo of 20 Nov 2026 · Left forearm" per photo, as read when Analyse was clicked.
    labels: list[str] = field(default_factory=list)
    # A series job → the photos it analyses as one lesion (its ``photos`` entry is the first).
    members: dict[str, list[str]] = field(default_factory=dict)

    def label(self, index: int) -> str:
        return self.labels[index] if index < len(self.labels) else self.photos[index]


@dataclass
class Launch:
    """Everything one launch knows; encrypted as a whole."""

    iss: str
    config: dict[str, Any]  # SmartConfiguration.as_json()
    redirect_uri: str
    code_verifier: str
    nonce: str
    ehr_launch: bool
    launch: str | None = None
    # Filled in by the callback:
    access_token: str | None = None
    refresh_token: str | None = None
    expires_at: float | None = None
    scopes: list[str] = field(default_factory=list)
    patient: str | None = None  # "Patient/123"
    encounter: str | None = None
    fhir_user: str | None = None  # from a verified id_token only
    need_patient_banner: bool = True
    smart_style_url: str | None = None
    style: dict[str, str] | None = None  # the checked values of smart_style_url, once read
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    runs: dict[str, Run] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Launch:
        data = json.loads(raw)
        data["runs"] = {key: Run(**value) for key, value in data.get("runs", {}).items()}
        return cls(**data)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class LaunchStore:
    """Launch rows in the job store's database, encrypted with the credential key."""

    def __init__(self, jobs: JobStore, fernet: Fernet, *, clock: Any = time.time) -> None:
        self._jobs = jobs
        self._fernet = fernet
        self._clock = clock
        smart_metadata.create_all(jobs.engine)

    @property
    def engine(self) -> Engine:
        return self._jobs.engine

    def start(self, browser: str, state: str, launch: Launch) -> str:
        """Record a pending launch; returns its id."""
        launch_id = secrets.token_urlsafe(24)
        now = float(self._clock())
        with self._jobs.write() as connection:
            connection.execute(
                insert(launches).values(
                    id=launch_id,
                    browser=_digest(browser),
                    state=_digest(state),
                    ciphertext=self._fernet.encrypt(launch.to_json()),
                    created_at=now,
                    expires_at=now + PENDING_MAX_AGE_S,
                )
            )
        return launch_id

    def consume_state(self, browser: str, state: str) -> tuple[str, Launch] | None:
        """The pending launch ``state`` belongs to, used up; None when unknown, used, stale or foreign."""
        now = float(self._clock())
        with self._jobs.write() as connection:
            row = connection.execute(
                select(launches.c.id, launches.c.ciphertext).where(
                    launches.c.state == _digest(state),
                    launches.c.browser == _digest(browser),
                    launches.c.expires_at > now,
                )
            ).first()
            if row is None:
                return None
            used = connection.execute(
                update(launches)
                .where(launches.c.id == row.id, launches.c.state.is_not(None))
                .values(state=None)
            )
            if used.rowcount != 1:
                return None
        launch = self._decrypt(row.ciphertext)
        return (row.id, launch) if launch is not None else None

    def get(self, launch_id: str, browser: str) -> Launch | None:
        """A completed launch of this browser that has not expired."""
        with self.engine.connect() as connection:
            ciphertext = connection.execute(
                select(launches.c.ciphertext).where(
                    launches.c.id == launch_id,
                    launches.c.browser == _digest(browser),
                    launches.c.state.is_(None),
                    launches.c.expires_at > float(self._clock()),
                )
            ).scalar()
        return self._decrypt(ciphertext) if ciphertext is not None else None

    def update(self, launch_id: str, change: Callable[[Launch], None]) -> Launch | None:
        """Apply ``change`` to the launch as stored now, in one write transaction; the result.

        Requests of one launch run side by side (a page and its thumbnails); reading, changing
        and writing back under the row's write lock means none of them undoes another's change.
        """
        with self._jobs.write() as connection:
            ciphertext = connection.execute(
                select(launches.c.ciphertext).where(launches.c.id == launch_id).with_for_update()
            ).scalar()
            launch = self._decrypt(ciphertext) if ciphertext is not None else None
            if launch is None:
                return None
            change(launch)
            connection.execute(
                update(launches)
                .where(launches.c.id == launch_id)
                .values(ciphertext=self._fernet.encrypt(launch.to_json()))
            )
        return launch

    def save(self, launch_id: str, launch: Launch, *, max_age_s: float | None = None) -> None:
        """Store ``launch`` whole (by the callback, its only writer then); ``max_age_s``: new lifetime."""
        values: dict[str, Any] = {"ciphertext": self._fernet.encrypt(launch.to_json())}
        if max_age_s is not None:
            values["expires_at"] = float(self._clock()) + max_age_s
        with self._jobs.write() as connection:
            connection.execute(update(launches).where(launches.c.id == launch_id).values(**values))

    def forget(self, launch_id: str) -> bool:
        """Delete the launch; False when it was already gone."""
        with self._jobs.write() as connection:
            result = connection.execute(delete(launches).where(launches.c.id == launch_id))
            return bool(result.rowcount)

    def delete_expired(self) -> int:
        with self._jobs.write() as connection:
            result = connection.execute(delete(launches).where(launches.c.expires_at <= float(self._clock())))
            return int(result.rowcount or 0)

    def _decrypt(self, ciphertext: bytes) -> Launch | None:
        try:
            return Launch.from_json(self._fernet.decrypt(ciphertext))
        except InvalidToken:  # encrypted under a key this process no longer has
            return None
