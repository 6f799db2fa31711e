"""What the audit store hands back: stored events, pages of them, search filters, verdicts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from audit.record import AuditOutcome, AuditRecord


@dataclass(frozen=True)
class StoredEvent:
    """An ``AuditRecord`` as kept: its place in the chain and the hashes that fix it there."""

    seq: int  # 1, 2, 3 … with no gaps
    record: AuditRecord
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class AuditFilter:
    """Which events an auditor asks for; unset fields match everything.

    ``since`` is inclusive and ``until`` exclusive, both compared with ``recorded``.
    """

    patient: str | None = None
    agent: str | None = None  # AuditRecord.agent_who
    event: str | None = None
    outcome: AuditOutcome | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class Page:
    """One page of a search; pass ``next_after_seq`` back as ``after_seq`` for the next one."""

    events: list[StoredEvent]
    next_after_seq: int | None  # None: this was the last page


class ChainProblem(StrEnum):
    """Why verification stopped at an event."""

    ALTERED = "altered"  # its content no longer hashes to its stored hash
    REMOVED = "removed"  # events that the chain says existed are missing
    REORDERED = "re-ordered"  # an intact event sits at another place than where it was appended


@dataclass(frozen=True)
class VerifyResult:
    """The verdict on the whole chain.

    ``head_seq``/``head_hash`` identify the chain as verified; keeping them somewhere else
    (a ticket, a signed e-mail) lets a later check prove that nothing was cut off the end.
    """

    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: ChainProblem | None = None
    detail: str | None = None

    def describe(self) -> str:
        """One line for a person: what was checked or the first event that is wrong and why."""
        if self.ok:
            return f"audit chain intact: {self.checked} events, head {self.head_seq} {self.head_hash}"
        return f"audit chain broken at event {self.first_bad_seq} ({self.problem}): {self.detail}"
