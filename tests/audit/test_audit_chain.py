"""The hashed form of an event: exact bytes, UTC normalisation, key handling."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta, timezone

import pytest

from audit import chain
from audit.record import AuditAction, AuditRecord
from models.errors import AuditKeyMismatch, InvalidAuditRecord

TOKYO = timezone(timedelta(hours=9))


def test_canonical_document_is_sorted_compact_utf8_json() -> None:
    record = AuditRecord(
        event="photo.read",
        action=AuditAction.READ,
        recorded=datetime(2025, 3, 1, 17, 0, 0, 250, tzinfo=TOKYO),
        patient="Patient/ä",
        entities=("Media/1", "Binary/2"),
    )
    expected = (
        '{"action":"R","agent_client_id":null,"agent_token_jti":null,"agent_who":null,'
        '"entities":["Media/1","Binary/2"],"event":"photo.read","outcome":"0","outcome_reason":null,'
        '"patient":"Patient/ä","prev":"' + "0" * 64 + '","purpose_of_use":null,"query":null,'
        '"recorded":"2025-03-01T08:00:00.000250Z","source_ip":null,"subtype":null}'
    ).encode()
    assert chain.canonical_document(record, chain.GENESIS_HASH) == expected
    assert chain.event_hash(record, chain.GENESIS_HASH, None) == hashlib.sha256(expected).hexdigest()
    keyed = hmac.new(b"k", expected, "sha256").hexdigest()
    assert chain.event_hash(record, chain.GENESIS_HASH, b"k") == keyed


def test_the_same_moment_in_any_zone_hashes_the_same() -> None:
    utc = AuditRecord(event="e", action=AuditAction.READ, recorded=datetime(2025, 1, 1, tzinfo=UTC))
    tokyo = AuditRecord(event="e", action=AuditAction.READ, recorded=datetime(2025, 1, 1, 9, tzinfo=TOKYO))
    genesis = chain.GENESIS_HASH
    assert chain.event_hash(utc, genesis, None) == chain.event_hash(tokyo, genesis, None)


def test_every_field_and_the_link_change_the_hash() -> None:
    base = AuditRecord(event="e", action=AuditAction.READ, recorded=datetime(2025, 1, 1, tzinfo=UTC))
    digest = chain.event_hash(base, chain.GENESIS_HASH, None)
    assert chain.event_hash(base, "1" * 64, None) != digest
    for field, value in {
        "event": "f",
        "agent_who": "x",
        "agent_client_id": "x",
        "agent_token_jti": "x",
        "source_ip": "x",
        "patient": "x",
        "entities": ("x",),
        "purpose_of_use": "x",
        "query": "x",
        "subtype": "x",
        "outcome_reason": "x",
        "recorded": datetime(2025, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
    }.items():
        changed = AuditRecord(**{**base.__dict__, field: value})
        assert chain.event_hash(changed, chain.GENESIS_HASH, None) != digest, field


def test_a_naive_time_is_refused() -> None:
    record = AuditRecord(event="e", action=AuditAction.READ, recorded=datetime(2025, 1, 1))
    with pytest.raises(InvalidAuditRecord):
        chain.event_hash(record, chain.GENESIS_HASH, None)


def test_key_check_tells_keys_apart() -> None:
    chain.check_key(chain.ALGORITHM_HMAC_SHA256, chain.key_check(b"right"), b"right")
    chain.check_key(chain.ALGORITHM_SHA256, None, None)
    with pytest.raises(AuditKeyMismatch):
        chain.check_key(chain.ALGORITHM_HMAC_SHA256, chain.key_check(b"right"), b"wrong")
    with pytest.raises(AuditKeyMismatch, match="no key was given"):
        chain.check_key(chain.ALGORITHM_HMAC_SHA256, chain.key_check(b"right"), None)
    with pytest.raises(AuditKeyMismatch, match="started with no HMAC key"):
        chain.check_key(chain.ALGORITHM_SHA256, None, b"key")
