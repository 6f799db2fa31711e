"""The job store's state machine: claims, leases, batches, and transitions that never go backwards."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.postgres import fresh_database, postgres_server
from workers.job_records import NewJob
from workers.job_schema import workers
from workers.jobs import JobStore
from workers.liveness import FORGET_AFTER_S, announce, last_worker_seen


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="session")
def jobs_postgres_server() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[JobStore]:
    """The same store on the embedded default (SQLite) and on production's PostgreSQL."""
    if request.param == "sqlite":
        opened = JobStore.from_url(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
        yield JobStore(opened.engine, clock=clock)
        opened.close()
        return
    with fresh_database(request.getfixturevalue("jobs_postgres_server")) as url:
        opened = JobStore.from_url(url)
        yield JobStore(opened.engine, clock=clock)
        opened.close()


def add(store: JobStore, clock: Clock, job_id: str, queue: str = "skin") -> None:
    clock.now += 1
    store.create(NewJob(id=job_id, queue=queue, kind="auto", requested_by="api-token:t", reference="Media/1"))


def ids(jobs: tuple[object, ...]) -> list[str]:
    return [job.id for job in jobs]  # type: ignore[attr-defined]


def test_a_message_claims_its_job_and_waiting_jobs_of_the_same_queue(store: JobStore, clock: Clock) -> None:
    for name in ("a", "b", "c"):
        add(store, clock, name.ljust(32, "0"))
    add(store, clock, "d".ljust(32, "0"), queue="conjunctiva")
    claim = store.claim("b".ljust(32, "0"), worker="w1", lease_s=60, max_jobs=8)
    assert sorted(ids(claim.jobs)) == sorted(["a".ljust(32, "0"), "b".ljust(32, "0"), "c".ljust(32, "0")])
    assert all(job.status == "running" and job.attempts == 1 for job in claim.jobs)
    # The other jobs' own messages find them owned by b's batch: nothing to do.
    assert store.claim("a".ljust(32, "0"), worker="w2", lease_s=60, max_jobs=8).jobs == ()
    # A different queue is not batched in.
    assert ids(store.claim("d".ljust(32, "0"), worker="w2", lease_s=60, max_jobs=8).jobs) == [
        "d".ljust(32, "0")
    ]


def test_batches_are_capped(store: JobStore, clock: Clock) -> None:
    for n in range(10):
        add(store, clock, f"{n:032d}")
    assert len(store.claim(f"{0:032d}", worker="w", lease_s=60, max_jobs=4).jobs) == 4
    assert len(store.claim_more(f"{0:032d}", worker="w", lease_s=60, limit=2)) == 2


def test_a_redelivered_message_waits_for_a_live_lease_then_takes_over(store: JobStore, clock: Clock) -> None:
    job = "a" * 32
    add(store, clock, job)
    store.claim(job, worker="w1", lease_s=30, max_jobs=1)
    clock.now += 10
    held = store.claim(job, worker="w2", lease_s=30, max_jobs=1)
    assert held.jobs == () and held.lease_held_until == pytest.approx(clock.now + 20)
    clock.now += 25  # w1 died: its lease ran out
    taken = store.claim(job, worker="w2", lease_s=30, max_jobs=1)
    assert [(j.worker, j.attempts) for j in taken.jobs] == [("w2", 2)]


def test_finished_jobs_never_move_again(store: JobStore, clock: Clock) -> None:
    job = "a" * 32
    add(store, clock, job)
    store.claim(job, worker="w1", lease_s=30, max_jobs=1)
    assert store.finish(job, written=["Observation/1"])
    assert not store.finish(job, written=["Observation/2"])
    assert not store.fail(job, code="x", message="late failure")
    assert store.claim(job, worker="w2", lease_s=30, max_jobs=1).jobs == ()
    assert store.requeue(job) is None
    done = store.get(job)
    assert done is not None and (done.status, done.written) == ("done", ("Observation/1",))


def test_a_failed_job_can_be_retried_and_a_running_one_only_when_its_lease_is_gone(
    store: JobStore, clock: Clock
) -> None:
    failed, running = "a" * 32, "b" * 32
    add(store, clock, failed)
    add(store, clock, running)
    store.claim(failed, worker="w", lease_s=30, max_jobs=1)
    store.fail(failed, code="fhir-server-error", message="FHIR server answered 500")
    again = store.requeue(failed)
    assert again is not None and (again.status, again.error_code) == ("queued", None)
    store.claim(running, worker="w", lease_s=30, max_jobs=1)
    assert store.requeue(running) is None
    clock.now += 31
    assert store.requeue(running) is not None


def test_concurrent_claims_never_share_a_job(store: JobStore, clock: Clock) -> None:
    names = [f"{n:032d}" for n in range(40)]
    for name in names:
        add(store, clock, name)
    claimed: list[str] = []
    lock = threading.Lock()

    def work(owners: list[str]) -> None:
        for owner in owners:
            got = store.claim(owner, worker=threading.current_thread().name, lease_s=60, max_jobs=3)
            with lock:
                claimed.extend(ids(got.jobs))

    threads = [threading.Thread(target=work, args=(names[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == names  # every job exactly once


def test_only_the_lease_holder_finishes_and_renewing_tells_a_worker_it_lost_the_batch(
    store: JobStore, clock: Clock
) -> None:
    job = "a" * 32
    add(store, clock, job)
    store.claim(job, worker="w1", lease_s=20, max_jobs=1)
    assert store.renew(job, worker="w1", lease_s=20) == 1
    clock.now += 21  # w1 stalled past its lease; the reaper hands the job to w2
    (expired,) = store.expired_leases()
    assert expired.id == job and store.requeue(job, reset_failures=False) is not None
    store.claim(job, worker="w2", lease_s=20, max_jobs=1)
    assert store.renew(job, worker="w1", lease_s=20) == 0, "w1 must learn it lost the batch"
    assert not store.finish(job, written=["Observation/1"], worker="w1")
    assert not store.fail(job, code="x", message="late", worker="w1")
    assert store.finish(job, written=["Observation/2"], worker="w2")
    done = store.get(job)
    assert done is not None and done.written == ("Observation/2",)


def test_a_job_parked_for_a_retry_is_its_own_messages_and_the_reapers_only_once_overdue(
    store: JobStore, clock: Clock
) -> None:
    job = "a" * 32
    add(store, clock, job)
    store.claim(job, worker="w1", lease_s=20, max_jobs=1)
    store.release_for_retry([job], worker="w1", until=clock.now + 40)
    parked = store.get(job)
    assert parked is not None
    assert (parked.status, parked.worker, parked.transient_failures) == ("running", None, 1)
    assert store.expired_leases() == [], "a parked job is not a dead worker's"
    clock.now += 5  # the retry message comes early: it may take its own batch
    retaken = store.claim(job, worker="w2", lease_s=20, max_jobs=1)
    assert [j.worker for j in retaken.jobs] == ["w2"]
    store.release_for_retry([job], worker="w2", until=clock.now + 40)
    clock.now += 41  # that retry never came (its message died with a worker)
    assert [j.id for j in store.expired_leases()] == [job]
    again = store.requeue(job, reset_failures=False)
    assert again is not None and again.status == "queued" and again.transient_failures == 2


def test_only_the_lease_holder_can_park_its_jobs(store: JobStore, clock: Clock) -> None:
    job = "a" * 32
    add(store, clock, job)
    store.claim(job, worker="w1", lease_s=20, max_jobs=1)
    store.release_for_retry([job], worker="someone-else", until=clock.now + 40)
    held = store.get(job)
    assert held is not None and held.worker == "w1" and held.transient_failures == 0


def test_workers_announce_themselves_and_long_silent_ones_are_forgotten(
    store: JobStore, clock: Clock
) -> None:
    assert last_worker_seen(store) is None
    announce(store, "host-a:1", "skin")
    clock.now += 30
    announce(store, "host-a:1", "skin,conjunctiva")
    assert last_worker_seen(store) == clock.now
    clock.now += FORGET_AFTER_S + 1
    announce(store, "host-b:2", "skin")  # a new worker's start clears out the long-silent ones
    with store.engine.connect() as connection:
        names = [row.name for row in connection.execute(select(workers))]
    assert names == ["host-b:2"]
