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
                # "ok" only once the embedded worker has announced itself ("degraded" before).
                if health.status_code == 200 and health.json()["status"] == "ok":
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.3)
        assert health.json()["checks"] == {"queue": "ok", "jobs": "ok", "workers": "ok"}

        patient = httpx.post(f"{fhir_server}/Patient", json={"resourceType": "Patient"}).json()["id"]
        # A Media that was never stored anywhere: its photo is written as a new Media with the results.
        resource = media_resource(small_photo(99), f"Patient/{patient}")
        auth = {"Authorization": f"Bearer {token}"}
        submitted = httpx.post(f"{base}/api/v1/jobs", json={"resource": resource}, headers=auth, timeout=30)
        assert submitted.status_code == 202, submitted.text
        check_results(fhir_server, patient, finished(base + submitted.headers["Location"], auth, log_path))

        # Nothing supervises serve's worker but serve: killed, it comes back and works again.
        os.kill(embedded_worker_pid(serve.pid), signal.SIGKILL)
        deadline = time.monotonic() + 120
        while "embedded worker restarted" not in log_path.read_text():
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.3)
        again = media_resource(small_photo(98), f"Patient/{patient}")
        submitted = httpx.post(f"{base}/api/v1/jobs", json={"resource": again}, headers=auth, timeout=30)
        assert submitted.status_code == 202, submitted.text
        check_results(fhir_server, patient, finished(base + submitted.headers["Location"], auth, log_path))
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(45)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
            pytest.fail("serve did not stop on SIGTERM:\n" + log_path.read_text()[-3000:])
    assert "Traceback" not in log_path.read_text()


def finished(location: str, auth: dict[str, str], log_path: Path) -> list[str]:
    """Wait for the job at ``location`` to end; it must be done. Returns what it wrote."""
    deadline = time.monotonic() + 120
    while (job := httpx.get(location, headers=auth, timeout=10).json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, log_path.read_text()[-3000:]
        time.sleep(0.3)
    assert job["status"] == "done", job
    written: list[str] = job["written"]
    return written


def embedded_worker_pid(serve_pid: int) -> int:
    """The pid of serve's embedded worker process (a child of serve running plugin.embedded_worker)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (proc / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if parent == serve_pid and b"plugin.embedded_worker" in command:
            return int(proc.name)
    raise AssertionError("serve has no embedded worker process")


def check_results(fhir_server: str, patient: str, written: list[str]) -> None:
    assert any(ref.startswith("Media/") for ref in written)
    observations = [ref for ref in written if ref.startswith("Observation/")]
    assert observations
    for ref in observations:
        observation = httpx.get(f"{fhir_server}/{ref}").json()
        assert observation["subject"]["reference"] == f"Patient/{patient}"
        assert observation["status"] in ("preliminary", "cancelled")  # cancelled: no model installed
