"""The audit store on SQLite and PostgreSQL: append, read back, search, and what the database refuses."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import insert, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from audit import chain
from audit.engine import VERSION_TABLE, current_revision, head_revision
from audit.events import AuditFilter, ChainProblem
from audit.record import AuditOutcome
from audit.schema import audit_event
from audit.store import AuditStore
from models.errors import AuditKeyMismatch, InvalidAuditRecord
from tests.audit.tampering import T0, MakeRecord, Tamperer


def test_appended_events_chain_and_read_back_exactly(store: AuditStore, make_record: MakeRecord) -> None:
    tokyo = timezone(timedelta(hours=9))
    first = store.append(make_record(1, recorded=datetime(2025, 3, 1, 17, 30, 0, 123456, tzinfo=tokyo)))
    second = store.append(make_record(2))
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == chain.GENESIS_HASH
    assert second.prev_hash == first.hash
    assert store.head() == (2, second.hash)

    read = store.get(1)
    assert read is not None
    assert read.record.recorded == datetime(2025, 3, 1, 8, 30, 0, 123456, tzinfo=UTC)
    assert read.record.recorded.utcoffset() == timedelta(0)
    assert read.record == first.record  # equal instants compare equal across zones
    assert read.hash == first.hash
    assert store.get(3) is None


def test_append_many_is_one_ordered_chain(store: AuditStore, make_record: MakeRecord) -> None:
    stored = store.append_many(make_record(n) for n in range(50))
    assert [event.seq for event in stored] == list(range(1, 51))
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(stored))
    assert store.verify().ok
    assert store.append_many([]) == []


def test_a_failed_batch_leaves_nothing(store: AuditStore, make_record: MakeRecord) -> None:
    store.append(make_record(0))
    with pytest.raises(InvalidAuditRecord):
        store.append_many([make_record(1), make_record(2, recorded=datetime(2025, 1, 1))])
    assert store.head()[0] == 1
    assert store.verify().ok


def test_search_filters_and_keyset_pages(store: AuditStore, make_record: MakeRecord) -> None:
    store.append_many(make_record(n) for n in range(60))
    patient = AuditFilter(patient="Patient/2")
    seen: list[int] = []
    after = None
    while True:
        page = store.search(patient, after_seq=after, limit=5)
        seen += [event.seq for event in page.events]
        if page.next_after_seq is None:
            break
        after = page.next_after_seq
    assert seen == [n + 1 for n in range(60) if n % 5 == 2]

    newest = store.search(patient, limit=3, newest_first=True)
    assert [e.seq for e in newest.events] == [58, 53, 48]
    older = store.search(patient, after_seq=newest.next_after_seq, limit=3, newest_first=True)
    assert [e.seq for e in older.events] == [43, 38, 33]

    refusals = AuditFilter(outcome=AuditOutcome.SERIOUS_FAILURE, agent="Practitioner/1")
    failures = store.search(refusals, limit=100)
    assert {e.record.outcome for e in failures.events} == {AuditOutcome.SERIOUS_FAILURE}
    assert all(e.record.agent_who == "Practitioner/1" for e in failures.events)
    assert [e.seq for e in failures.events] == [n + 1 for n in range(60) if n % 3 == 2 and n % 4 == 1]

    since, until = T0 + timedelta(minutes=10), T0 + timedelta(minutes=20)
    window = AuditFilter(since=since, until=until, event="photo.read")
    assert [e.seq for e in store.search(window).events] == [n + 1 for n in range(10, 20) if n % 3 == 0]
    # The same window given in another zone selects the same events.
    tokyo = timezone(timedelta(hours=9))
    shifted = AuditFilter(since=since.astimezone(tokyo), until=until.astimezone(tokyo))
    assert len(store.search(shifted).events) == 10

    assert len(list(store.iter_events(patient, page_size=4))) == 12
    with pytest.raises(ValueError, match="limit"):
        store.search(limit=0)


def test_reopening_migrates_once_and_keeps_the_chain(db_url: str, make_record: MakeRecord) -> None:
    with AuditStore.from_url(db_url) as first:
        first.append(make_record(1))
        assert current_revision(first.engine) == head_revision()
    with AuditStore.from_url(db_url) as again:
        assert again.append(make_record(2)).seq == 2
        with again.engine.connect() as connection:
            count_versions = text(f"SELECT count(*) FROM {VERSION_TABLE}")  # noqa: S608 (a constant)
            versions = connection.execute(count_versions).scalar_one()
        assert versions == 1


def test_update_and_delete_are_refused_by_the_database(store: AuditStore, make_record: MakeRecord) -> None:
    store.append_many(make_record(n) for n in range(3))
    refused = [
        "UPDATE audit_event SET event = 'nothing.happened' WHERE seq = 2",
        "UPDATE audit_event SET seq = 9 WHERE seq = 3",
        "DELETE FROM audit_event WHERE seq = 3",
        "DELETE FROM audit_event",
        "UPDATE audit_chain_head SET seq = 1",
        "UPDATE audit_chain_head SET seq = 4",
        "DELETE FROM audit_chain_head",
        "UPDATE audit_chain_config SET key_check = 'x'",
        "DELETE FROM audit_chain_config",
    ]
    if store.engine.dialect.name == "postgresql":
        refused += ["TRUNCATE audit_event", "TRUNCATE audit_chain_head", "TRUNCATE audit_chain_config"]
    for statement in refused:
        with pytest.raises(DBAPIError, match=r"refused|may only advance"), store.engine.begin() as connection:
            connection.execute(text(statement))
    assert store.verify().ok
    assert store.head()[0] == 3


def test_an_insert_that_does_not_follow_the_head_is_refused(
    store: AuditStore, make_record: MakeRecord, tamper: Tamperer
) -> None:
    last = store.append(make_record(1))
    forged = {
        "recorded": T0,
        "event": "forged",
        "action": "R",
        "outcome": "0",
        "entities": "[]",
    }
    cases = [
        {"seq": 5, "prev_hash": last.hash, "hash": "a" * 64},  # skips numbers
        {"seq": 2, "prev_hash": "b" * 64, "hash": "a" * 64},  # links elsewhere
    ]
    for case in cases:
        with pytest.raises(DBAPIError, match="does not follow"), store.engine.begin() as connection:
            connection.execute(insert(audit_event).values(**forged, **case))
    assert store.verify().ok


def test_a_linked_insert_behind_the_stores_back_is_found(store: AuditStore, make_record: MakeRecord) -> None:
    # The database can check the link but not the hash; the head and verify catch the rest.
    last = store.append(make_record(1))
    with store.engine.begin() as connection:
        connection.execute(
            insert(audit_event).values(
                seq=2, recorded=T0, event="forged", action="R", outcome="0", entities="[]",
                prev_hash=last.hash, hash="a" * 64,
            )
        )  # fmt: skip
    result = store.verify()
    assert (result.ok, result.first_bad_seq, result.problem) == (False, 2, ChainProblem.ALTERED)
    with pytest.raises(IntegrityError):
        store.append(make_record(2))


def test_the_key_a_chain_started_with_is_required(db_url: str, make_record: MakeRecord) -> None:
    with AuditStore.from_url(db_url, hmac_key=b"site secret") as keyed:
        keyed.append(make_record(1))
        assert keyed.verify().ok
    for wrong in (None, b"another secret"):
        with AuditStore.from_url(db_url, hmac_key=wrong) as other:
            with pytest.raises(AuditKeyMismatch):
                other.append(make_record(2))
            with pytest.raises(AuditKeyMismatch):
                other.verify()
            assert other.search().events[0].seq == 1  # reading needs no key
    with AuditStore.from_url(db_url, hmac_key=b"site secret") as keyed:
        assert keyed.append(make_record(2)).seq == 2
        assert keyed.verify().ok


def test_an_empty_store_verifies(store: AuditStore) -> None:
    result = store.verify()
    assert result.ok
    assert (result.checked, result.head_seq, result.head_hash) == (0, 0, chain.GENESIS_HASH)
