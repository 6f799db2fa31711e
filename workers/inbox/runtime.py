"""What the inbox keeps per process: its Backend Services client (token cache) and its store.

Lives in ``app.extensions`` beside :class:`workers.celery_app.Services`, opened lazily and
re-opened after a fork (a prefork child must not share its parent's HTTP connections).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from flask import Flask, current_app

from audit.record import AuditAction, AuditOutcome, AuditRecord
from models.errors import PhotomarkerError
from plugin.settings import Settings
from workers.celery_app import Services
from workers.fhir_client import FhirClient
from workers.inbox.backend_auth import BackendServicesClient
from workers.inbox.store import InboxStore

EXTENSION = "photomarker.inbox"
# Who the inbox is in audit events, Provenance and job records.
INBOX_AGENT = "service:inbox"
INBOX_ANALYSE_TASK = "photomarker.inbox_analyse_job"


@dataclass
class InboxRuntime:
    settings: Settings
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _pid: int = field(default_factory=os.getpid, repr=False)
    _auth: BackendServicesClient | None = field(default=None, repr=False)
    _store: InboxStore | None = field(default=None, repr=False)
    _client: FhirClient | None = field(default=None, repr=False)
    _client_token: str | None = field(default=None, repr=False)
    _retired: list[FhirClient] = field(default_factory=list, repr=False)

    def auth(self) -> BackendServicesClient:
        with self._lock:
            self._check_process()
            if self._auth is None:
                self._auth = BackendServicesClient(self.settings)
            return self._auth

    def fhir_client(self) -> FhirClient:
        """The process's FHIR client for the current token, shared by threads (httpx is thread-safe).

        Shared because making an HTTP client costs tens of milliseconds (its TLS context), which
        a burst of notifications would pay once each.
        """
        auth = self.auth()
        token = auth.token()
        with self._lock:
            if self._client is None or self._client_token != token.value:
                if self._client is not None:
                    # Another thread may still be using it: closed two renewals later, not now.
                    self._retired.append(self._client)
                    while len(self._retired) > 2:
                        self._retired.pop(0).close()
                self._client = auth.fhir_client(token)
                self._client_token = token.value
            return self._client

    def store(self, svc: Services) -> InboxStore:
        jobs = svc.jobs  # outside our lock: Services has its own
        with self._lock:
            self._check_process()
            if self._store is None:
                self._store = InboxStore(jobs)
            return self._store

    def _check_process(self) -> None:
        if self._pid != os.getpid():
            self._auth = None  # its HTTP pool and token belong to the parent
            self._store = None
            self._client = None
            self._client_token = None
            self._retired = []
            self._pid = os.getpid()

    def close(self) -> None:
        with self._lock:
            for client in (*self._retired, self._client):
                if client is not None:
                    client.close()
            if self._auth is not None:
                self._auth.close()
            self._auth = None
            self._store = None
            self._client = None
            self._retired = []


def inbox_runtime(app: Flask | None = None) -> InboxRuntime:
    return cast(InboxRuntime, (app or current_app).extensions[EXTENSION])


def inbox_record(
    event: str,
    *,
    outcome: AuditOutcome = AuditOutcome.SUCCESS,
    error: PhotomarkerError | None = None,
    reason: str | None = None,
    action: AuditAction = AuditAction.EXECUTE,
    subtype: str | None = None,
    patient: str | None = None,
    entities: tuple[str, ...] = (),
    source_ip: str | None = None,
    query: str | None = None,
) -> AuditRecord:
    """An ``inbox.*`` audit event; a refusal carries the error's stable code and message."""
    if error is not None:
        reason = f"{error.code}: {error.message}"
        if outcome == AuditOutcome.SUCCESS:
            outcome = AuditOutcome.MINOR_FAILURE
    return AuditRecord(
        event=event,
        action=action,
        recorded=datetime.now().astimezone(),
        outcome=outcome,
        outcome_reason=reason,
        subtype=subtype,
        agent_who=INBOX_AGENT,
        source_ip=source_ip,
        patient=patient,
        entities=entities,
        query=query,
    )
