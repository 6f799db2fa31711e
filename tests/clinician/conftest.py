"""Fixtures for the clinician app: the test EHR (Authlib) before sekmet, the app served live, a worker.

The whole chain is real: sekmet-fhir holds the photos, ``tests.smart_auth_server`` issues tokens
and checks them in front of it, the app runs under werkzeug on 127.0.0.1, and jobs are worked off
by ``workers.batching.run_batch`` in a thread of this process (the embedded worker path), using
the models shipped in the package.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask
from PIL import Image, ImageOps

from plugin.app import create_app
from plugin.settings import load_settings
from tests.browser import LiveServer
from tests.smart_auth_server import SmartAuthServer, running_smart_auth_server
from tests.smart_oauth_records import CLIENT_ID, V2_SCOPES
from workers.batching import run_batch
from workers.celery_app import services

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"
CONJUNCTIVA = {"system": "http://snomed.info/sct", "code": "29445007", "display": "Conjunctival structure"}
UPPER_LIMB = {"system": "http://snomed.info/sct", "code": "53120007", "display": "Upper limb structure"}
LOCAL_SYSTEM = "https://photomarker.example.org/fhir/CodeSystem/photomarker"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Chart:
    """What the EHR holds for the tests: two patients and their photos."""

    patient: str  # "Patient/<id>", with photos and earlier results
    eyelid: str  # "Media/<id>": a conjunctiva photo in a Binary
    forearm: str  # "DocumentReference/<id>": a skin photo, inline, no body site
    left_forearm: str  # "Media/<id>": the full-size skin photo, bodySite.text "Left forearm"
    other_patient: str
    other_photo: str  # "Media/<id>" of the other patient


def post_resource(base: str, resource: dict[str, Any]) -> str:
    response = httpx.post(f"{base}/{resource['resourceType']}", json=resource, timeout=30)
    assert response.status_code == 201, response.text
    return f"{resource['resourceType']}/{response.json()['id']}"


def _sha1(data: bytes) -> str:
    return base64.b64encode(hashlib.sha1(data).digest()).decode()


def _small_jpeg(path: Path) -> bytes:
    image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    image.thumbnail((640, 640))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=88)
    return out.getvalue()


def seed_chart(sekmet: str) -> Chart:
    """Patients, photos and two earlier results, written straight into sekmet (the EHR's own data)."""
    patient = post_resource(
        sekmet,
        {
            "resourceType": "Patient",
            "identifier": [{"system": "urn:test:mrn", "value": "MRN-0042"}],
            "name": [{"family": "Tanaka", "given": ["Hana"]}],
            "gender": "female",
            "birthDate": "1990-02-03",
        },
    )
    eyelid_png = (REPO / "examples" / "eyelid.png").read_bytes()
    binary = post_resource(
        sekmet,
        {"resourceType": "Binary", "contentType": "image/png", "data": base64.b64encode(eyelid_png).decode()},
    )
    eyelid = post_resource(
        sekmet,
        {
            "resourceType": "Media",
            "status": "completed",
            "subject": {"reference": patient},
            "createdDateTime": "2026-11-20T09:30:00+09:00",
            "bodySite": {"coding": [CONJUNCTIVA]},
            "content": {"contentType": "image/png", "url": binary, "hash": _sha1(eyelid_png)},
        },
    )
    forearm_jpeg = _small_jpeg(REPO / "examples" / "forearm-eczema.jpg")
    forearm = post_resource(
        sekmet,
        {
            "resourceType": "DocumentReference",
            "status": "current",
            "subject": {"reference": patient},
            "content": [
                {
                    "attachment": {
                        "contentType": "image/jpeg",
                        "data": base64.b64encode(forearm_jpeg).decode(),
                        "creation": "2026-10-02T14:00:00+09:00",
                    }
                }
            ],
        },
    )
    # The same forearm at full size (good enough for the skin models), named by the sender's own words.
    forearm_full = (REPO / "examples" / "forearm-eczema.jpg").read_bytes()
    left_forearm = post_resource(
        sekmet,
        {
            "resourceType": "Media",
            "status": "completed",
            "subject": {"reference": patient},
            "createdDateTime": "2026-11-20T11:00:00+09:00",
            "bodySite": {"coding": [UPPER_LIMB], "text": "Left forearm"},
            "content": {"contentType": "image/jpeg", "data": base64.b64encode(forearm_full).decode()},
        },
    )
    # Earlier results already in the EHR, for the trend.
    for when, code, value in (
        ("2026-06-01T10:00:00+09:00", "hb-estimate-conjunctiva-photo", {"valueQuantity": g_dl(12.4)}),
        ("2026-09-01T10:00:00+09:00", "hb-estimate-conjunctiva-photo", {"valueQuantity": g_dl(11.1)}),
        ("2026-07-15T10:00:00+09:00", "tis", {"valueInteger": 6}),
        ("2026-10-02T14:00:00+09:00", "tis", {"valueInteger": 4}),
    ):
        post_resource(
            sekmet,
            {
                "resourceType": "Observation",
                "status": "preliminary",
                "code": {"coding": [{"system": LOCAL_SYSTEM, "code": code}]},
                "subject": {"reference": patient},
                "effectiveDateTime": when,
                "derivedFrom": [{"reference": forearm if code == "tis" else eyelid}],
                **value,
            },
        )
    other_patient = post_resource(sekmet, {"resourceType": "Patient", "name": [{"family": "Other"}]})
    other_photo = post_resource(
        sekmet,
        {
            "resourceType": "Media",
            "status": "completed",
            "subject": {"reference": other_patient},
            "bodySite": {"coding": [CONJUNCTIVA]},
            "content": {"contentType": "image/png", "data": base64.b64encode(eyelid_png).decode()},
        },
    )
    return Chart(patient, eyelid, forearm, left_forearm, other_patient, other_photo)


def g_dl(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"}


@pytest.fixture(scope="session")
def ehr_server(fhir_server: str) -> Iterator[SmartAuthServer]:
    with running_smart_auth_server(fhir_server) as server:
        yield server


@pytest.fixture(scope="session")
def chart(fhir_server: str) -> Chart:
    return seed_chart(fhir_server)


@pytest.fixture
def ehr(ehr_server: SmartAuthServer) -> SmartAuthServer:
    """The test EHR with every knob back at its default."""
    server = ehr_server
    server.decision = "approve"
    server.withheld_scopes = set()
    server.standalone_patient = None
    server.need_patient_banner = True
    server.access_token_lifetime_s = 3600
    server.scopes_supported = list(V2_SCOPES)
    server.sign_with_wrong_key = False
    server.fhir_refusal = None
    server.authorize_requests.clear()
    server.token_errors.clear()
    server.refreshes = 0
    server.fhir_tokens_seen.clear()
    return server


class InlineWorker:
    """Works off queued jobs in a thread of this process, as the embedded worker would."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self.app.app_context():
                svc = services()
                for job in svc.jobs.list_jobs(status="queued", limit=8):
                    run_batch(svc, job.id)
            self._stop.wait(0.2)

    def __enter__(self) -> InlineWorker:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


@dataclass
class ClinicianApp:
    app: Flask
    url: str
    ehr: SmartAuthServer


def make_app(tmp_path: Path, ehr: SmartAuthServer, **overrides: Any) -> Flask:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "fhir_base_url": ehr.fhir_base,
        "smart_client_id": CLIENT_ID,
        "clinician_frame_ancestors": ehr.origin,
        "inference_tta": False,
        "inference_threads": 1,
        "device": "cpu",
        "batch_max_wait_s": 0,
        **overrides,
    }
    return create_app(load_settings(**values))


@contextmanager
def live_app(tmp_path: Path, ehr: SmartAuthServer, **overrides: Any) -> Iterator[ClinicianApp]:
    """The app (settings ``overrides`` applied) served live with a worker, registered at the test EHR."""
    app = make_app(tmp_path, ehr, **overrides)
    with LiveServer(app) as live, InlineWorker(app):
        ehr.register_app(live.url)
        yield ClinicianApp(app, live.url, ehr)
    services(app).close()


@pytest.fixture
def clinician_app(tmp_path: Path, ehr: SmartAuthServer) -> Iterator[ClinicianApp]:
    with live_app(tmp_path, ehr) as running:
        yield running


class Clinician:
    """A browser without a browser: an httpx client with cookies that follows the launch redirects."""

    def __init__(self, ehr: SmartAuthServer) -> None:
        self.ehr = ehr
        self.http = httpx.Client(follow_redirects=True, timeout=60)

    def launch(self, patient: str) -> httpx.Response:
        return self.http.get(self.ehr.launch_url(patient))

    def csrf(self, page: httpx.Response) -> str:
        found = _CSRF.search(page.text)
        assert found, "the page has no CSRF field"
        return found.group(1)

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def clinician(clinician_app: ClinicianApp) -> Iterator[Clinician]:
    person = Clinician(clinician_app.ehr)
    yield person
    person.close()


def fhir_search(base: str, resource_type: str, **params: str) -> list[dict[str, Any]]:
    bundle = httpx.get(f"{base}/{resource_type}", params={**params, "_count": "200"}, timeout=30).json()
    return [entry["resource"] for entry in bundle.get("entry", [])]
