"""Workers outlive a broker outage, leave it for their supervisor past the limit, and a killed
worker's jobs are taken up again within the lease bound — with the production lease timings.

Real Redis (AOF on), real `photomarker worker` processes, the real FHIR test server behind a proxy.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from plugin.settings import Settings
from tests.redis_server import RedisServer
from tests.workers.conftest import Stack, two_worker_stack
from tests.workers.fhir_proxy import FhirProxy
from workers.celery_app import celery_for

pytestmark = pytest.mark.fhir_server

# The shipped defaults, not the test suite's fast ones: the bound is a property of the product.
LEASE_S = float(Settings.model_fields["job_lease_s"].default)
HEARTBEAT_S = float(Settings.model_fields["worker_heartbeat_s"].default)
TAKEN_UP_WITHIN_S = 30.0


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: RedisServer,
    fhir_proxy: FhirProxy,
    fhir_server: str,
) -> Iterator[Stack]:
    # The broker's own redelivery (visibility timeout) at its default too, so the takeover below is
    # the heartbeat's doing, as in production.
    names = ("job_lease_s", "worker_heartbeat_s", "broker_visibility_timeout_s", "broker_restore_interval_s")
    overrides = {name: str(Settings.model_fields[name].default) for name in names}
    workdir = tmp_path_factory.mktemp("outages")
    with two_worker_stack(workdir, redis_server, fhir_proxy, fhir_server, overrides) as stack:
        yield stack


def test_the_shipped_lease_and_heartbeat_keep_the_takeover_within_30_s() -> None:
    assert LEASE_S + HEARTBEAT_S < TAKEN_UP_WITHIN_S


def test_idle_workers_holding_unacknowledged_retries_outlive_a_redis_outage(stack: Stack) -> None:
    # Retries wait in the worker as unacknowledged ETA messages; restoring them when the connection
    # broke is what ended celery 5.7.0 workers (workers.broker.guard_collected_redis_channel).
    # The message names no job: a worker that gets it logs and drops it.
    with stack.app.app_context():
        for n in range(3):
            celery_for(stack.app).send_task(
                "photomarker.analyse_job",
                args=(f"{n:032x}",),
                countdown=120,
                queue="skin",
                exchange="photomarker",
                routing_key="skin",
            )
    time.sleep(2)  # delivered, held until their ETA
    stack.redis.restart(down_for=3.0)
    time.sleep(3 * HEARTBEAT_S)
    stack.assert_workers_alive()
    for worker in stack.workers:
        log = worker.log()
        assert log.count("broker unreachable") <= 1, "an outage is logged once, not once per try"
        assert "broker connection restored" in log

    patient = stack.new_patient()
    (media,) = stack.new_media(patient, range(4000, 4001))
    (job,) = stack.wait_finished([stack.submit({"reference": media})], timeout=90)
    assert job.status == "done", job.error_message
    stack.assert_one_set_each(patient, [job])


def test_a_killed_workers_batch_is_taken_up_within_30_s_and_written_once(stack: Stack) -> None:
    patient = stack.new_patient()
    (media,) = stack.new_media(patient, range(5000, 5001))
    # Killed once its results have reached the FHIR server, while it waits for the answer.
    job_id, victim = stack.kill_the_worker_writing(media, timeout=90)
    killed = time.monotonic()

    # No new worker is started: the survivor's heartbeat finds the expired lease and re-sends.
    while (job := stack.job(job_id)).attempts < 2:
        waited = time.monotonic() - killed
        assert waited < TAKEN_UP_WITHIN_S, f"not taken up {waited:.0f} s after the kill"
        time.sleep(0.2)
    assert job.worker is not None and not job.worker.endswith(f":{victim.pid}")
    (job,) = stack.wait_finished([job_id], timeout=90)
    assert job.status == "done", job.error_message
    stack.assert_one_set_each(patient, [job])
    stack.workers.remove(victim)
    stack.start_worker().wait_ready()  # the module's next test expects two workers


def test_past_the_outage_limit_a_worker_exits_non_zero_for_its_supervisor(stack: Stack) -> None:
    short = stack.start_worker(broker_outage_limit_s="4")
    short.wait_ready()
    stack.redis.stop()
    try:
        short.process.wait(60)
    finally:
        stack.redis.start()
    assert short.process.returncode not in (None, 0), short.log()[-3000:]
    stack.workers.remove(short)
    time.sleep(3 * HEARTBEAT_S)
    stack.assert_workers_alive()  # the others, with the default limit, rode it out
