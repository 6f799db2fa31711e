"""The whole pipeline's speed: photos through API → queue → worker → FHIR server, with 1 and 2 workers.

    .venv/bin/python bench/pipeline.py [--photos N] [--workers 1,2] [--json]

Starts its own Redis (AOF on) and FHIR server (sekmet) in a temporary directory. For each worker
count: N distinct photos are stored as Media on the FHIR server (not timed), that many
``photomarker worker --pool solo`` processes are started and allowed to get ready (not timed),
then N jobs ``{"reference": "Media/<id>"}`` are submitted through the jobs API (the Flask app in
this process, on Redis) as fast as it accepts them.

- ``photos_per_s``: N / (last job finished − first submitted).
- ``p50_s``, ``p95_s``: per job, submitted → its transaction answered (Observations written).
- ``lost``: jobs not done at the end (timeout, or failed).
- ``duplicated``: Observations on the server sharing an idempotency identifier (should be 0).

Photos are the example forearm photo (1365×1024 JPEG, one pixel changed per job so each is a
new photo). The figures depend on the machine and how busy it is; with no model installed the
work per photo is intake, the quality gate and the FHIR write-back.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

# Run from a checkout without an install: the repository root first on the path.
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from PIL import Image  # noqa: E402

from plugin.api.tokens import ApiTokens  # noqa: E402
from plugin.app import create_app  # noqa: E402
from plugin.settings import load_settings  # noqa: E402
from tests.fhir_server import running_fhir_server  # noqa: E402
from tests.redis_server import running_redis_server  # noqa: E402
from workers.celery_app import services  # noqa: E402

PHOTOMARKER = Path(sys.executable).with_name("photomarker")


def photo(seed: int) -> bytes:
    image = Image.open(REPO / "examples" / "forearm-eczema.jpg").convert("RGB")
    image.putpixel((seed % image.width, seed // image.width), (seed % 251, 7, 7))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def store_media(fhir: str, patient: str, seeds: range) -> list[str]:
    entries = []
    for seed in seeds:
        data = photo(seed)
        media = {
            "resourceType": "Media",
            "status": "completed",
            "subject": {"reference": patient},
            "bodySite": {"coding": [{"system": "http://snomed.info/sct", "code": "53120007"}]},
            "content": {
                "contentType": "image/jpeg",
                "data": base64.b64encode(data).decode(),
                "hash": base64.b64encode(hashlib.sha1(data).digest()).decode(),  # noqa: S324  (FHIR says SHA-1)
            },
        }
        entries.append({"resource": media, "request": {"method": "POST", "url": "Media"}})
    response = httpx.post(
        fhir,
        json={"resourceType": "Bundle", "type": "transaction", "entry": entries},
        headers={"Content-Type": "application/fhir+json"},
        timeout=120,
    )
    response.raise_for_status()
    refs = []
    for entry in response.json()["entry"]:
        parts = entry["response"]["location"].split("/_history/")[0].rstrip("/").split("/")
        refs.append(f"{parts[-2]}/{parts[-1]}")
    return refs


def duplicated(fhir: str, patient: str) -> int:
    identifiers: Counter[str] = Counter()
    url: str | None = f"{fhir}/Observation?subject={patient}&_count=500"
    while url:
        page = httpx.get(url, timeout=60).json()
        for entry in page.get("entry", []):
            resource = entry["resource"]
            if resource.get("subject", {}).get("reference") == patient:
                identifiers[resource["identifier"][0]["value"]] += 1
        url = next((link["url"] for link in page.get("link", []) if link.get("relation") == "next"), None)
    return sum(n - 1 for n in identifiers.values() if n > 1)


def run(workdir: Path, fhir: str, redis_url: str, photos: int, workers: int, seed0: int) -> dict[str, Any]:
    data_dir = workdir / f"data-{workers}"
    values = {"data_dir": str(data_dir), "broker_url": redis_url, "fhir_base_url": fhir, "device": "cpu"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOTOMARKER_")}
    env.update({f"PHOTOMARKER_{k.upper()}": v for k, v in values.items()})
    env["PHOTOMARKER_LOG_LEVEL"] = "INFO"  # the worker says "ready." at INFO
    app = create_app(load_settings(**values))
    with app.app_context():
        token = ApiTokens(services().jobs).create("bench")
    patient_id = httpx.post(f"{fhir}/Patient", json={"resourceType": "Patient"}).json()["id"]
    patient = f"Patient/{patient_id}"
    media = store_media(fhir, patient, range(seed0, seed0 + photos))

    processes = []
    for n in range(workers):
        log = (workdir / f"worker-{workers}-{n}.log").open("wb")
        processes.append(
            subprocess.Popen(  # noqa: S603  (our own CLI)
                [str(PHOTOMARKER), "worker", "--pool", "solo", "--hostname", f"bench{n}@%h"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    try:
        for n in range(workers):
            deadline = time.monotonic() + 120
            while "ready." not in (workdir / f"worker-{workers}-{n}.log").read_text(errors="replace"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"worker {n} did not start")
                time.sleep(0.2)
        # The embedded pollers of idle workers settle; measure from here.
        client = app.test_client()
        submitted: dict[str, float] = {}
        for ref in media:
            began = time.time()
            response = client.post(
                "/api/v1/jobs", json={"reference": ref}, headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == 202, response.get_data(as_text=True)
            submitted[response.get_json()["id"]] = began

        deadline = time.monotonic() + max(120, photos * 5)
        with app.app_context():
            store = services().jobs
            while time.monotonic() < deadline:
                jobs = [store.get(job_id) for job_id in submitted]
                if all(job is not None and job.finished for job in jobs):
                    break
                time.sleep(0.2)
            jobs = [store.get(job_id) for job_id in submitted]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(60)

    done = [job for job in jobs if job is not None and job.status == "done" and job.finished_at]
    latencies = sorted(job.finished_at - submitted[job.id] for job in done if job.finished_at)
    first = min(submitted.values())
    last = max((job.finished_at for job in done if job.finished_at), default=first)
    return {
        "workers": workers,
        "photos": photos,
        "photos_per_s": round(len(done) / (last - first), 2) if done else 0.0,
        "p50_s": round(statistics.median(latencies), 3) if latencies else None,
        "p95_s": round(latencies[max(0, round(0.95 * len(latencies)) - 1)], 3) if latencies else None,
        "lost": photos - len(done),
        "duplicated": duplicated(fhir, patient),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="photomarker-bench-") as tmp:
        workdir = Path(tmp)
        with (
            running_redis_server(workdir / "redis") as redis,
            running_fhir_server(_mkdir(workdir / "fhir")) as fhir,
        ):
            runs = [
                run(workdir, fhir, redis.url, args.photos, workers, seed0=i * args.photos)
                for i, workers in enumerate(counts)
            ]
    result = {"cpu_count": os.cpu_count(), "runs": runs}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"pipeline: {args.photos} photos, API → Redis → worker(s) → FHIR server, {os.cpu_count()} CPUs")
    for r in runs:
        print(
            f"  {r['workers']} worker(s): {r['photos_per_s']} photos/s, p50 {r['p50_s']} s, "
            f"p95 {r['p95_s']} s, lost {r['lost']}, duplicated {r['duplicated']}"
        )


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


if __name__ == "__main__":
    main()
