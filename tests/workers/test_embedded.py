"""`photomarker serve` on one machine: web app + embedded worker over the SQLite queue, end to end."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from plugin.api.tokens import ApiTokens
from tests.fhir_server import free_port
from tests.workers.conftest import FAST, PHOTOMARKER, REPO, media_resource, small_photo
from workers.jobs import JobStore

pytestmark = pytest.mark.fhir_server


def test_serve_runs_web_and_worker_on_the_embedded_queue(tmp_path: Path, fhir_server: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    store = JobStore.from_url(f"sqlite:///{data / 'jobs.sqlite'}")
    token = ApiTokens(store).create("embedded")
    store.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOTOMARKER_")}
    env.update({f"PHOTOMARKER_{k.upper()}": v for k, v in FAST.items()})
    env.update(PHOTOMARKER_DATA_DIR=str(data), PHOTOMARKER_FHIR_BASE_URL=fhir_server)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        serve = subprocess.Popen(
            [str(PHOTOMARKER), "serve", "--port", str(port)],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert serve.poll() is None, log_path.read_text()[-3000:]
            try:
                health = httpx.get(f"{base}/healthz", timeout=2)
                if health.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.3)
        assert health.json()["checks"] == {"queue": "ok", "jobs": "ok"}

        patient = httpx.post(f"{fhir_server}/Patient", json={"resourceType": "Patient"}).json()["id"]
        # A Media that was never stored anywhere: its photo is written as a new Media with the results.
        resource = media_resource(small_photo(99), f"Patient/{patient}")
        auth = {"Authorization": f"Bearer {token}"}
        submitted = httpx.post(f"{base}/api/v1/jobs", json={"resource": resource}, headers=auth, timeout=30)
        assert submitted.status_code == 202, submitted.text
        location = base + submitted.headers["Location"]

        deadline = time.monotonic() + 90
        while (job := httpx.get(location, headers=auth, timeout=10).json())["status"] in (
            "queued",
            "running",
        ):
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.3)
        assert job["status"] == "done", job
        written = job["written"]
        assert any(ref.startswith("Media/") for ref in written)
        observations = [ref for ref in written if ref.startswith("Observation/")]
        assert observations
        for ref in observations:
            observation = httpx.get(f"{fhir_server}/{ref}").json()
            assert observation["subject"]["reference"] == f"Patient/{patient}"
            assert observation["status"] in ("preliminary", "cancelled")  # cancelled: no model installed
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(45)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
            pytest.fail("serve did not stop on SIGTERM:\n" + log_path.read_text()[-3000:])
    assert "Traceback" not in log_path.read_text()
