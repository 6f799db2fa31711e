"""Jobs survive what production throws at them: a FHIR server that says 503, a worker killed with
SIGKILL halfway through a job, Redis restarting during a run — and no result is ever written twice.

Real Redis (AOF on), real worker processes, the real FHIR test server; faults are faked only at
the HTTP seam (a proxy in front of the FHIR server).
"""

from __future__ import annotations

import time

import pytest

from tests.workers.conftest import Stack

pytestmark = pytest.mark.fhir_server


def test_the_fhir_server_answering_503_twice_is_waited_out_and_one_set_is_written(stack: Stack) -> None:
    patient = stack.new_patient()
    (media,) = stack.new_media(patient, range(1000, 1001))
    before = stack.proxy.transactions
    stack.proxy.fail_next(2, method="POST", status=503, retry_after="0")

    job_id = stack.submit({"reference": media})
    (job,) = stack.wait_finished([job_id], timeout=60)

    assert job.status == "done", job.error_message
    assert stack.proxy.transactions == before + 1  # two refused, the third landed
    stack.assert_one_set_each(patient, [job])


def test_a_worker_killed_mid_job_leaves_the_job_to_another_worker_and_one_set_exists(stack: Stack) -> None:
    patient = stack.new_patient()
    (media,) = stack.new_media(patient, range(2000, 2001))
    # Killed once its results have reached the FHIR server, while it waits for the answer.
    job_id, victim = stack.kill_the_worker_writing(media, timeout=60)
    stack.workers.remove(victim)
    replacement = stack.start_worker()  # for the tests after this one; not needed for recovery

    (job,) = stack.wait_finished([job_id], timeout=60)
    assert job.status == "done", job.error_message
    assert job.worker is not None and not job.worker.endswith(f":{victim.pid}")
    assert job.attempts == 2
    stack.assert_one_set_each(patient, [job])
    replacement.wait_ready()


def test_redis_restarting_during_a_run_of_50_jobs_loses_none_and_repeats_none(stack: Stack) -> None:
    patient = stack.new_patient()
    media = stack.new_media(patient, range(3000, 3050))
    job_ids = [stack.submit({"reference": ref}) for ref in media]

    # Let the workers get going, then take Redis away under them and bring it back from its AOF.
    deadline = time.monotonic() + 60
    while sum(stack.job(j).status == "done" for j in job_ids) < 5:
        assert time.monotonic() < deadline, "the workers never started"
        time.sleep(0.1)
    stack.redis.restart(down_for=1.0)

    jobs = stack.wait_finished(job_ids, timeout=150)
    assert [job.status for job in jobs] == ["done"] * 50, {
        j.id: j.error_message for j in jobs if j.status != "done"
    }
    stack.assert_one_set_each(patient, jobs)
    stack.assert_workers_alive()
