"""Tampering with the rows directly (triggers dropped first) is found, and the first bad event named."""

from __future__ import annotations

import pytest

from audit.events import ChainProblem
from audit.store import AuditStore
from tests.audit.tampering import MakeRecord, Tamperer

EVENTS = 12


@pytest.fixture
def filled(store: AuditStore, make_record: MakeRecord, tamper: Tamperer) -> AuditStore:
    store.append_many(make_record(n) for n in range(EVENTS))
    assert store.verify().ok
    tamper.drop_triggers()
    return store


def _broken_at(store: AuditStore, seq: int, problem: ChainProblem) -> str:
    result = store.verify()
    assert not result.ok
    assert (result.first_bad_seq, result.problem) == (seq, problem), result.describe()
    assert result.checked == seq - 1
    assert f"event {seq}" in result.describe()
    return result.describe()


@pytest.mark.parametrize(
    "column, value",
    [
        ("outcome", "0"),  # a refusal turned into a success
        ("patient", "Patient/someone-else"),
        ("agent_who", "Practitioner/innocent"),
        ("entities", '["Media/other"]'),
        ("prev_hash", "f" * 64),
    ],
)
def test_an_edited_event_is_altered(filled: AuditStore, tamper: Tamperer, column: str, value: str) -> None:
    tamper.set(6, **{column: value})
    _broken_at(filled, 6, ChainProblem.ALTERED)


def test_an_edited_time_is_altered(filled: AuditStore, tamper: Tamperer) -> None:
    event = filled.get(4)
    assert event is not None
    tamper.set(4, recorded=event.record.recorded.replace(year=2020))
    _broken_at(filled, 4, ChainProblem.ALTERED)


def test_a_deleted_event_is_removed(filled: AuditStore, tamper: Tamperer) -> None:
    tamper.delete(5)
    assert "event 5 is missing" in _broken_at(filled, 5, ChainProblem.REMOVED)


def test_deleted_events_at_the_end_are_removed(filled: AuditStore, tamper: Tamperer) -> None:
    tamper.delete(EVENTS)
    tamper.delete(EVENTS - 1)
    _broken_at(filled, EVENTS - 1, ChainProblem.REMOVED)


def test_a_deletion_hidden_by_renumbering_is_removed(filled: AuditStore, tamper: Tamperer) -> None:
    tamper.delete(7)
    tamper.renumber_down_after(7, EVENTS)
    _broken_at(filled, 7, ChainProblem.REMOVED)


def test_swapped_events_are_reordered(filled: AuditStore, tamper: Tamperer) -> None:
    tamper.swap(3, 8)
    _broken_at(filled, 3, ChainProblem.REORDERED)


def test_an_edit_with_a_recomputed_hash_is_still_found(filled: AuditStore, tamper: Tamperer) -> None:
    # Without an HMAC key anyone can rehash one event, but its successor still names the old hash.
    tamper.rewrite(9, patient="Patient/someone-else")
    _broken_at(filled, 9, ChainProblem.ALTERED)


def test_a_rewritten_last_event_is_caught_by_the_head(filled: AuditStore, tamper: Tamperer) -> None:
    tamper.rewrite(EVENTS, outcome="0")
    _broken_at(filled, EVENTS, ChainProblem.ALTERED)


def test_an_event_inserted_past_the_head_is_found(filled: AuditStore, tamper: Tamperer) -> None:
    last = filled.get(EVENTS)
    assert last is not None
    tamper.execute(
        "INSERT INTO audit_event SELECT :seq, recorded, event, action, subtype, outcome, outcome_reason,"
        " agent_who, agent_client_id, agent_token_jti, source_ip, patient, entities, purpose_of_use, query,"
        " hash, hash FROM audit_event WHERE seq = :last",
        seq=EVENTS + 1,
        last=EVENTS,
    )
    _broken_at(filled, EVENTS + 1, ChainProblem.ALTERED)


def test_with_an_hmac_key_a_rehash_without_it_is_altered(
    db_url: str, make_record: MakeRecord, tamper: Tamperer
) -> None:
    with AuditStore.from_url(db_url, hmac_key=b"kept in the vault") as keyed:
        keyed.append_many(make_record(n) for n in range(5))
        tamper.drop_triggers()
        tamper.rewrite(3, key=None, patient="Patient/someone-else")
        _broken_at(keyed, 3, ChainProblem.ALTERED)
