"""Fixtures for the queue tests: real Redis, real worker processes, a real FHIR server behind a proxy."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from plugin.api.tokens import ApiTokens
from plugin.app import create_app
from plugin.settings import Settings, load_settings
from tests.redis_server import RedisServer, running_redis_server
from tests.workers.fhir_proxy import FhirProxy, running_proxy
from workers.celery_app import services
from workers.job_records import Job

REPO = Path(__file__).resolve().parents[2]
PHOTOMARKER = Path(sys.executable).with_name("photomarker")

# Short timings so that recovery happens within seconds, not the production hour.
FAST = {
    "broker_visibility_timeout_s": "4",
    "broker_restore_interval_s": "1",
    "job_lease_s": "6",
    "fhir_retries": "3",
    "fhir_backoff_s": "0.2",
    "fhir_backoff_max_s": "2",
    "job_retry_backoff_s": "1",
    "batch_max_jobs": "4",
    "batch_max_wait_s": "0.05",
    "inference_tta": "false",
    "inference_heatmaps": "false",
    "inference_threads": "1",
    "device": "cpu",
    "log_level": "INFO",
}


def small_photo(seed: int) -> bytes:
    """A small skin-coloured JPEG, different for every seed (so every photo gets its own results)."""
    source = Image.open(REPO / "examples" / "forearm-eczema.jpg").convert("RGB")
    source.thumbnail((400, 400))
    # One pixel changed per seed: same look, different bytes and hash.
    source.putpixel((seed % source.width, (seed // source.width) % source.height), (seed % 256, 0, 0))
    out = io.BytesIO()
    source.save(out, format="JPEG", quality=85)
    return out.getvalue()


def media_resource(photo: bytes, patient: str) -> dict[str, Any]:
    return {
        "resourceType": "Media",
        "status": "completed",
        "subject": {"reference": patient},
        "createdDateTime": "2025-01-15T10:30:00+09:00",
        "bodySite": {"coding": [{"system": "http://snomed.info/sct", "code": "53120007"}]},
        "content": {
            "contentType": "image/jpeg",
            "data": base64.b64encode(photo).decode(),
            "hash": base64.b64encode(hashlib.sha1(photo).digest()).decode(),
        },
    }


class WorkerProcess:
    """``photomarker worker`` as a child process (solo pool: one process, killable as a whole)."""

    def __init__(self, env: dict[str, str], log_path: Path, name: str) -> None:
        self.log_path = log_path
        self.name = name
        log = log_path.open("ab")
        self.process = subprocess.Popen(
            [str(PHOTOMARKER), "worker", "--pool", "solo", "--hostname", f"{name}@%h"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        log.close()

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while "ready." not in self.log_path.read_text(errors="replace"):
            if self.process.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker {self.name} not ready in {timeout} s:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill9(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Stack:
    """Web app (in this process), Redis, workers (child processes), FHIR server behind a proxy."""

    def __init__(
        self,
        workdir: Path,
        redis: RedisServer,
        proxy: FhirProxy,
        upstream: str,
        overrides: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.redis = redis
        self.proxy = proxy
        self.upstream = upstream
        self.data_dir = workdir / "data"
        values = {
            "data_dir": str(self.data_dir),
            "broker_url": redis.url,
            "fhir_base_url": proxy.base_url,
            **FAST,
            **(overrides or {}),
        }
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PHOTOMARKER_")}
        self.env.update({f"PHOTOMARKER_{k.upper()}": v for k, v in values.items()})
        self.settings: Settings = load_settings(**values)
        self.app: Flask = create_app(self.settings)
        self.client: FlaskClient = self.app.test_client()
        with self.app.app_context():
            self.token = ApiTokens(services().jobs).create("reliability-test")
        self.workers: list[WorkerProcess] = []

    def start_worker(self, **settings: str) -> WorkerProcess:
        """One more worker; ``settings`` override this worker's own PHOTOMARKER_* variables."""
        name = f"w{len(self.workers) + 1}"
        env = {**self.env, **{f"PHOTOMARKER_{k.upper()}": v for k, v in settings.items()}}
        worker = WorkerProcess(env, self.workdir / f"{name}.log", name)
        self.workers.append(worker)
        return worker

    def submit(self, body: dict[str, Any]) -> str:
        response = self.client.post(
            "/api/v1/jobs", json=body, headers={"Authorization": f"Bearer {self.token}"}
        )
        assert response.status_code == 202, response.get_data(as_text=True)
        job_id: str = response.get_json()["id"]
        return job_id

    def job(self, job_id: str) -> Job:
        with self.app.app_context():
            job = services().jobs.get(job_id)
        assert job is not None
        return job

    def wait_finished(self, job_ids: list[str], timeout: float) -> list[Job]:
        deadline = time.monotonic() + timeout
        while True:
            jobs = [self.job(job_id) for job_id in job_ids]
            if all(job.finished for job in jobs):
                return jobs
            if time.monotonic() > deadline:
                states = Counter(job.status for job in jobs)
                logs = "\n".join(w.log()[-2000:] for w in self.workers)
                raise AssertionError(f"jobs not finished after {timeout} s: {dict(states)}\n{logs}")
            time.sleep(0.2)

    # --- the real FHIR server, bypassing the proxy ----------------------------------------------

    def new_patient(self) -> str:
        created = httpx.post(f"{self.upstream}/Patient", json={"resourceType": "Patient", "gender": "female"})
        created.raise_for_status()
        return f"Patient/{created.json()['id']}"

    def new_media(self, patient: str, seeds: range) -> list[str]:
        """Media on the real server, one per seed, created in one transaction."""
        entries = [
            {
                "resource": media_resource(small_photo(seed), patient),
                "request": {"method": "POST", "url": "Media"},
            }
            for seed in seeds
        ]
        response = httpx.post(
            self.upstream,
            json={"resourceType": "Bundle", "type": "transaction", "entry": entries},
            headers={"Content-Type": "application/fhir+json"},
            timeout=60,
        )
        response.raise_for_status()
        refs = []
        for entry in response.json()["entry"]:
            location = entry["response"]["location"]
            parts = location.split("/_history/")[0].rstrip("/").split("/")
            refs.append(f"{parts[-2]}/{parts[-1]}")
        return refs

    def observations(self, patient: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        url: str | None = f"{self.upstream}/Observation?subject={patient}&_count=500"
        while url:
            page = httpx.get(url, timeout=60).json()
            found += [e["resource"] for e in page.get("entry", [])]
            url = next((link["url"] for link in page.get("link", []) if link.get("relation") == "next"), None)
        return [o for o in found if o.get("subject", {}).get("reference") == patient]

    def assert_one_set_each(self, patient: str, jobs: list[Job]) -> None:
        """Every result exists once: no identifier twice, and every job's Observations are there."""
        observations = self.observations(patient)
        identifiers = Counter(o["identifier"][0]["value"] for o in observations)
        twice = {value: n for value, n in identifiers.items() if n > 1}
        assert not twice, f"Observations written more than once: {twice}"
        on_server = {f"Observation/{o['id']}" for o in observations}
        expected = {ref for job in jobs for ref in job.written if ref.startswith("Observation/")}
        assert expected and expected == on_server
        per_photo = Counter(o["derivedFrom"][0]["reference"].split("/_history/")[0] for o in observations)
        assert len(set(per_photo.values())) == 1, f"photos got different numbers of results: {per_photo}"
        assert len(per_photo) == len(jobs)

    def kill_the_worker_writing(self, media: str, *, timeout: float) -> tuple[str, WorkerProcess]:
        """Submit ``media``, hold its results' transaction at the proxy until they have reached the
        FHIR server, SIGKILL the worker waiting for the answer, then let the answer go.

        Returns the job id and the killed worker (still in ``workers``)."""
        hold = self.proxy.hold_next_transaction()
        job_id = self.submit({"reference": media})
        assert hold.landed.wait(timeout), "no worker wrote the results"
        holder = self.job(job_id).worker
        assert holder is not None
        victim = next(w for w in self.workers if holder.endswith(f":{w.pid}"))
        victim.kill9()
        hold.release.set()
        return job_id, victim

    def assert_workers_alive(self) -> None:
        dead = [worker for worker in self.workers if not worker.alive]
        logs = "\n".join(f"--- {w.name} ---\n{w.log()[-3000:]}" for w in dead)
        assert not dead, f"workers ended: {[w.name for w in dead]}\n{logs}"

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def fhir_proxy(fhir_server: str) -> Iterator[FhirProxy]:
    with running_proxy(fhir_server) as proxy:
        yield proxy


@contextmanager
def two_worker_stack(
    workdir: Path,
    redis_server: RedisServer,
    fhir_proxy: FhirProxy,
    fhir_server: str,
    overrides: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """A ``Stack`` with two workers ready, stopped at the end."""
    stack = Stack(workdir, redis_server, fhir_proxy, fhir_server, overrides)
    try:
        first, second = stack.start_worker(), stack.start_worker()
        first.wait_ready()
        second.wait_ready()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: RedisServer,
    fhir_proxy: FhirProxy,
    fhir_server: str,
) -> Iterator[Stack]:
    with two_worker_stack(tmp_path_factory.mktemp("stack"), redis_server, fhir_proxy, fhir_server) as stack:
        yield stack
