"""The hash chain: how one audit event is turned into bytes and hashed onto its predecessor.

Each stored event carries ``prev_hash`` (the ``hash`` of the event before it; 64 zeros for the
first) and ``hash`` = SHA-256, or HMAC-SHA-256 under the store's key, of one UTF-8 JSON
document with exactly these members:

    action           AuditRecord.action code ("C", "R", "U", "D", "E")
    agent_client_id  string or null
    agent_token_jti  string or null
    agent_who        string or null
    entities         array of strings, in the record's order
    event            string
    outcome          AuditRecord.outcome code ("0", "4", "8", "12")
    outcome_reason   string or null
    patient          string or null
    prev             the predecessor's hash, 64 lowercase hex digits
    purpose_of_use   string or null
    query            string or null
    recorded         UTC, "YYYY-MM-DDTHH:MM:SS.ffffffZ" (always six fraction digits)
    source_ip        string or null
    subtype          string or null

Encoding: keys sorted, no whitespace (``,`` and ``:``), strings as UTF-8 with only ``"``, ``\\``
and control characters escaped. For documents made only of strings, nulls and arrays of strings
that is exactly RFC 8785 (JCS), so another implementation can recompute the hash. Hashes are
written as 64 lowercase hex digits.

The sequence number is deliberately *not* hashed: the ``prev`` link alone fixes the order, and
leaving ``seq`` out lets verification tell a moved event (its hash still matches, its link does
not) from an edited one. Fields added to ``AuditRecord`` later must be hashed only when set,
so that existing hashes stay valid.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

from audit.record import AuditRecord
from models.errors import AuditKeyMismatch, InvalidAuditRecord

GENESIS_HASH = "0" * 64
ALGORITHM_SHA256 = "sha256"
ALGORITHM_HMAC_SHA256 = "hmac-sha256"
# One encoder for every document: json.dumps would build a new one per call (bulk loads notice).
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
# Hashed under the key to recognise it later without storing it.
_KEY_CHECK_MESSAGE = b"photomarker audit chain key check v1"


def utc_timestamp(moment: datetime) -> str:
    """``recorded`` as hashed: UTC with microseconds; a naive time is refused, never guessed."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidAuditRecord("audit record time must be timezone-aware", expression="recorded")
    # isoformat with a fixed timespec is the same text as strftime("%Y-%m-%dT%H:%M:%S.%fZ"), faster.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def canonical_document(record: AuditRecord, prev_hash: str) -> bytes:
    """The exact bytes that are hashed for ``record`` following the event whose hash is ``prev_hash``."""
    document = {
        "action": str(record.action),
        "agent_client_id": record.agent_client_id,
        "agent_token_jti": record.agent_token_jti,
        "agent_who": record.agent_who,
        "entities": list(record.entities),
        "event": record.event,
        "outcome": str(record.outcome),
        "outcome_reason": record.outcome_reason,
        "patient": record.patient,
        "prev": prev_hash,
        "purpose_of_use": record.purpose_of_use,
        "query": record.query,
        "recorded": utc_timestamp(record.recorded),
        "source_ip": record.source_ip,
        "subtype": record.subtype,
    }
    return _ENCODER.encode(document).encode()


def event_hash(record: AuditRecord, prev_hash: str, key: bytes | None) -> str:
    """The chain hash of ``record`` after ``prev_hash``: HMAC-SHA-256 under ``key`` or plain SHA-256."""
    document = canonical_document(record, prev_hash)
    if key is None:
        return hashlib.sha256(document).hexdigest()
    return hmac.new(key, document, hashlib.sha256).hexdigest()


def algorithm_for(key: bytes | None) -> str:
    return ALGORITHM_SHA256 if key is None else ALGORITHM_HMAC_SHA256


def key_check(key: bytes | None) -> str | None:
    """A value that tells whether a later key is the same one, without revealing the key."""
    if key is None:
        return None
    return hmac.new(key, _KEY_CHECK_MESSAGE, hashlib.sha256).hexdigest()


def same_key_check(stored: str | None, key: bytes | None) -> bool:
    expected = key_check(key)
    if stored is None or expected is None:
        return stored is expected
    return hmac.compare_digest(stored, expected)


def check_key(algorithm: str, stored_check: str | None, key: bytes | None) -> None:
    """Raise ``AuditKeyMismatch`` unless ``key`` is the key the chain was started with."""
    if algorithm != algorithm_for(key) or not same_key_check(stored_check, key):
        expected = "an HMAC key" if algorithm == ALGORITHM_HMAC_SHA256 else "no HMAC key"
        given = "no key" if key is None else "a different key"
        raise AuditKeyMismatch(f"this audit chain was started with {expected}; {given} was given")
