"""The launch behind a clinician request: found by URL id + browser cookie, its token kept fresh.

A page and its thumbnails arrive together, so several requests may find the token about to
expire at once. Only one of them refreshes (a lock per launch in this process; the others wait
and then read the new token), and a request that loses a refresh race with another process
(the server rotated the refresh token under it) takes the token that process stored.

The EHR may also stop accepting a token before it says it expires (revoked, logged out). When its
FHIR server answers 401 or 403, the request's client (``EhrAccessGuard``) renews the token once
with the refresh token, when there is one, and repeats that one request; if the server still
refuses, or nothing could be renewed, the session ends: the launch is forgotten, the end is
audited, and the clinician is told to open Photomarker again from the chart — no page retries.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from audit.record import AuditOutcome
from models.errors import ClinicianSessionExpired, LaunchContextMissing, PhotomarkerError
from plugin.settings import Settings
from plugin.smart import session
from plugin.smart.discovery import SmartConfiguration
from plugin.smart.oauth import refresh
from plugin.smart.scopes import missing_write_scopes
from plugin.smart.store import Launch
from workers.fhir_client import FhirClient, RetryPolicy

# Refresh this long before the access token runs out, so a page never fails half-way.
_REFRESH_MARGIN_S = 60
# A fixed pool of locks (by launch id) instead of one per launch: nothing to clean up.
_REFRESH_LOCKS = tuple(threading.Lock() for _ in range(64))


@dataclass
class ClinicianContext:
    """One request's view of a launch."""

    launch_id: str
    browser: str
    launch: Launch
    settings: Settings

    @property
    def patient(self) -> str:
        if self.launch.patient is None:  # the callback never stores a launch without one
            raise LaunchContextMissing("the launch selected no patient")
        return self.launch.patient

    @property
    def who(self) -> str:
        return session.clinician_who(self.launch.fhir_user)

    @property
    def missing_write(self) -> list[str]:
        return missing_write_scopes(self.launch.scopes, heatmaps=self.settings.inference_heatmaps)

    @property
    def writes_to_this_server(self) -> bool:
        """Workers write only to PHOTOMARKER_FHIR_BASE_URL; another launch server gets results unsaved."""
        return self.settings.fhir_base == self.launch.iss

    @property
    def can_save(self) -> bool:
        return not self.missing_write and self.writes_to_this_server

    def fhir(self) -> FhirClient:
        """A client for the launch's FHIR server carrying the clinician's (current) token."""
        return FhirClient(
            self.launch.iss,
            timeout=self.settings.fhir_timeout_s,
            # A person is waiting: one quick retry, not a worker's patience.
            retry=RetryPolicy(retries=1, backoff_s=0.2, backoff_max_s=1.0),
            transport=EhrAccessGuard(self),
        )

    def update(self, change: Callable[[Launch], None]) -> None:
        """Change the stored launch (read afresh under its write lock) and keep the result."""
        updated = session.launch_store().update(self.launch_id, change)
        if updated is None:
            raise ClinicianSessionExpired("this Photomarker session has ended")
        self.launch = updated


def load_context(launch_id: str, settings: Settings) -> ClinicianContext:
    """The launch ``launch_id`` of this browser, refreshed when its token is about to expire."""
    browser = session.browser_id()
    launch = _stored(launch_id, browser)
    if launch is None or browser is None:
        raise ClinicianSessionExpired("there is no Photomarker session for this page in this browser")
    context = ClinicianContext(launch_id, browser, launch, settings)
    if _expiring(launch):
        with _lock(context):
            _refresh(context)
    return context


def _stored(launch_id: str, browser: str | None) -> Launch | None:
    if not browser or len(launch_id) > 64:
        return None
    launch = session.launch_store().get(launch_id, browser)
    return launch if launch is not None and launch.access_token else None


def _expiring(launch: Launch) -> bool:
    return launch.expires_at is not None and launch.expires_at - time.time() < _REFRESH_MARGIN_S


def _refresh(context: ClinicianContext) -> None:
    if not _renew(context, usable=lambda launch: not _expiring(launch)):
        end_session(context, "its access token expired and could not be renewed")
        raise ClinicianSessionExpired("your access to the EHR has expired and could not be renewed")


def _lock(context: ClinicianContext) -> threading.Lock:
    return _REFRESH_LOCKS[zlib.crc32(context.launch_id.encode()) % len(_REFRESH_LOCKS)]


def _renew(context: ClinicianContext, *, usable: Callable[[Launch], bool]) -> bool:
    """A usable token for ``context``: one stored meanwhile, or one refresh; False when neither."""
    # Another request may have refreshed while this one waited for the lock.
    current = _stored(context.launch_id, context.browser)
    if current is None:
        return False
    if usable(current):
        context.launch = current
        return True
    if not current.refresh_token:
        return False
    config = SmartConfiguration.from_json(current.config)
    try:
        tokens = refresh(config, current, context.settings)
    except PhotomarkerError as error:
        again = _stored(context.launch_id, context.browser)
        if again is not None and usable(again):
            context.launch = again  # another process won the race and stored a fresh token
            return True
        session.audit(
            "smart.token-refresh",
            outcome=AuditOutcome.MINOR_FAILURE,
            reason=f"{error.code}: {error.message}",
            who=context.who,
            patient=current.patient,
        )
        return False

    def renewed(stored: Launch) -> None:
        stored.access_token = tokens.access_token
        stored.refresh_token = tokens.refresh_token
        stored.expires_at = tokens.expires_at
        stored.scopes = tokens.scopes or stored.scopes

    context.update(renewed)
    session.audit("smart.token-refresh", who=context.who, patient=context.launch.patient)
    return True


def end_session(context: ClinicianContext, why: str) -> None:
    """Forget the launch (its tokens are of no more use) and audit that, once."""
    if session.launch_store().forget(context.launch_id):
        session.audit(
            "smart.session-ended",
            outcome=AuditOutcome.MINOR_FAILURE,
            reason=f"{ClinicianSessionExpired.code}: {why}",
            who=context.who,
            patient=context.launch.patient,
        )


class EhrAccessGuard(httpx.HTTPTransport):
    """Sends the launch's current token; on 401/403 renews it once and repeats, else ends the session.

    One guard per client, one client per request: a page gets at most one renewal, never a loop.
    """

    def __init__(self, context: ClinicianContext) -> None:
        super().__init__()
        self._context = context
        self._renewed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.headers["Authorization"] = f"Bearer {self._context.launch.access_token}"
        response = super().handle_request(request)
        if response.status_code not in (401, 403):
            return response
        response.close()
        status = response.status_code
        why = f"the EHR's FHIR server answered {status} to this session's token"
        if not self._renewed:
            self._renewed = True
            refused = self._context.launch.access_token
            with _lock(self._context):
                renewed = _renew(self._context, usable=lambda launch: launch.access_token != refused)
                if not renewed:
                    # Under the lock: a request waiting for it then finds no launch, not a second refresh.
                    end_session(self._context, why)
            if renewed:
                request.headers["Authorization"] = f"Bearer {self._context.launch.access_token}"
                response = super().handle_request(request)
                if response.status_code not in (401, 403):
                    return response
                response.close()
                status = response.status_code
                why = f"the EHR's FHIR server answered {status} even to a renewed token"
        end_session(self._context, why)
        raise ClinicianSessionExpired(f"the EHR's FHIR server no longer accepts this session (HTTP {status})")
