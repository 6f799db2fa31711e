"""Chain verification in the background: at a million events it takes tens of seconds on SQLite.

A request only starts the run (one at a time per web process) and returns; the verdict is
appended to the trail as an ``audit.verify`` event by whoever asked, and the console shows the
newest such event (console and CLI runs alike) plus, while one runs here, who started it when.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from audit.record import AuditAction, AuditOutcome, AuditRecord
from audit.store import AuditStore
from models.errors import AuditError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunningVerification:
    started: datetime
    by: str


class ChainVerifier:
    """Runs ``AuditStore.verify`` in a daemon thread and records the verdict."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: RunningVerification | None = None

    @property
    def running(self) -> RunningVerification | None:
        with self._lock:
            return self._running

    def start(self, store: AuditStore, *, who: str, source_ip: str | None) -> bool:
        """Start a run; False when one is already running in this process."""
        with self._lock:
            if self._running is not None:
                return False
            self._running = RunningVerification(datetime.now(UTC), who)
        thread = threading.Thread(
            target=self._run, args=(store, who, source_ip), name="audit-verify", daemon=True
        )
        thread.start()
        return True

    def _run(self, store: AuditStore, who: str, source_ip: str | None) -> None:
        try:
            try:
                result = store.verify()
                outcome = AuditOutcome.SUCCESS if result.ok else AuditOutcome.SERIOUS_FAILURE
                reason = None if result.ok else result.describe()
            except AuditError as error:
                outcome, reason = AuditOutcome.SERIOUS_FAILURE, f"{error.code}: {error.message}"
            store.append(
                AuditRecord(
                    event="audit.verify",
                    action=AuditAction.EXECUTE,
                    recorded=datetime.now(UTC),
                    outcome=outcome,
                    outcome_reason=reason,
                    agent_who=who,
                    source_ip=source_ip,
                )
            )
        except Exception:  # a thread's exception would vanish; the log shows it (no patient data in it)
            log.exception("audit chain verification could not run")
        finally:
            with self._lock:
                self._running = None
