"""Walk the whole chain and name the first event that was altered, removed or re-ordered.

Per event, in ``seq`` order, from one consistent snapshot:

1. ``seq`` must be the next number — a gap means events were **removed**.
2. Its columns must hash (``audit.chain``) to its stored ``hash`` — if not, it was **altered**.
3. Its ``prev_hash`` must be the previous event's ``hash``. When it is not, the stored event
   whose hash it names tells what happened: found elsewhere in the table, the event was
   **re-ordered**; found nowhere, either the previous event was rewritten with a recomputed hash
   (only possible without an HMAC key) — reported as that event **altered** — or events were
   removed and the later ones renumbered, which leaves fewer events than the chain head counts —
   reported as **removed**.

At the end the last event must be the chain head, which the database lets move only forward onto
the last event: missing events at the end read as **removed**, an event beyond the head or a
rewritten last one as **altered**.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine

from audit import chain
from audit.events import ChainProblem, VerifyResult
from audit.schema import HEAD_ROW_ID, audit_chain_config, audit_chain_head, audit_event, row_to_record

_BATCH = 5_000


class _Broken(Exception):
    def __init__(self, seq: int, problem: ChainProblem, detail: str) -> None:
        super().__init__(detail)
        self.seq = seq
        self.problem = problem
        self.detail = detail


def verify_chain(db: Engine, key: bytes | None) -> VerifyResult:
    """Check every event up to the chain head; raises ``AuditKeyMismatch`` for the wrong key."""
    connection_options: dict[str, Any] = {}
    if db.dialect.name == "postgresql":
        # One snapshot for head and events, so concurrent appends cannot look like tampering.
        connection_options["isolation_level"] = "REPEATABLE READ"
    with db.connect().execution_options(**connection_options) as connection, connection.begin():
        head = connection.execute(
            select(audit_chain_head.c.seq, audit_chain_head.c.hash).where(
                audit_chain_head.c.id == HEAD_ROW_ID
            )
        ).one()
        head_seq, head_hash = int(head.seq), str(head.hash)
        config = connection.execute(select(audit_chain_config)).mappings().first()
        if config is not None:
            chain.check_key(config["algorithm"], config["key_check"], key)
        try:
            checked = _walk(connection, key, head_seq, head_hash)
        except _Broken as broken:
            return VerifyResult(
                ok=False,
                checked=broken.seq - 1,
                head_seq=head_seq,
                head_hash=head_hash,
                first_bad_seq=broken.seq,
                problem=broken.problem,
                detail=broken.detail,
            )
    return VerifyResult(ok=True, checked=checked, head_seq=head_seq, head_hash=head_hash)


def _walk(connection: Connection, key: bytes | None, head_seq: int, head_hash: str) -> int:
    expected_seq = 1
    prev_hash = chain.GENESIS_HASH
    while True:
        rows = (
            connection.execute(
                select(audit_event)
                .where(audit_event.c.seq >= expected_seq)
                .order_by(audit_event.c.seq)
                .limit(_BATCH)
            )
            .mappings()
            .all()
        )
        if not rows:
            break
        for row in rows:
            seq = int(row["seq"])
            if seq > head_seq:
                raise _Broken(
                    seq,
                    ChainProblem.ALTERED,
                    f"event {seq} lies beyond the chain head "
                    f"({head_seq}): it was inserted outside the audit store",
                )
            if seq != expected_seq:
                raise _Broken(expected_seq, ChainProblem.REMOVED, _missing(expected_seq, seq - 1))
            _check_content(row, key)
            if row["prev_hash"] != prev_hash:
                _explain_broken_link(connection, row, head_seq)
            prev_hash = row["hash"]
            expected_seq += 1
    last_seq = expected_seq - 1
    if last_seq < head_seq:
        raise _Broken(
            expected_seq,
            ChainProblem.REMOVED,
            _missing(expected_seq, head_seq) + " from the end of the chain",
        )
    if prev_hash != head_hash:
        raise _Broken(
            last_seq,
            ChainProblem.ALTERED,
            f"event {last_seq} does not hash to the value the chain head recorded for it",
        )
    return last_seq


def _check_content(row: Any, key: bytes | None) -> None:
    seq = int(row["seq"])
    try:
        record = row_to_record(row)
        digest = chain.event_hash(record, row["prev_hash"], key)
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        # A value no writer could have stored (bad code, naive time, broken JSON) is an edit.
        detail = f"event {seq} holds a value no writer stores: {exc}"
        raise _Broken(seq, ChainProblem.ALTERED, detail) from None
    if digest != row["hash"]:
        raise _Broken(seq, ChainProblem.ALTERED, f"event {seq}'s content no longer matches its hash")


def _explain_broken_link(connection: Connection, row: Any, head_seq: int) -> None:
    seq = int(row["seq"])
    # Only reached on a broken chain, so a scan of the hash column is acceptable.
    named = connection.execute(
        select(audit_event.c.seq).where(audit_event.c.hash == row["prev_hash"]).limit(1)
    ).scalar()
    if named is not None:
        raise _Broken(
            seq,
            ChainProblem.REORDERED,
            f"event {seq} was appended after the event now stored as {named}, not after {seq - 1}",
        )
    stored = connection.execute(select(func.count()).select_from(audit_event)).scalar_one()
    if stored < head_seq:
        raise _Broken(
            seq,
            ChainProblem.REMOVED,
            f"event {seq} follows an event that is no longer stored; "
            f"{head_seq - stored} event(s) were removed and the later ones renumbered",
        )
    if seq == 1:
        raise _Broken(seq, ChainProblem.ALTERED, "event 1 does not start from the genesis hash")
    raise _Broken(
        seq - 1,
        ChainProblem.ALTERED,
        f"event {seq - 1} was rewritten: event {seq} recorded a different hash for it",
    )


def _missing(first: int, last: int) -> str:
    return f"event {first} is missing" if first == last else f"events {first}–{last} are missing"
