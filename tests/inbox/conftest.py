"""The inbox against real peers: sekmet-fhir with SMART Backend Services and Subscriptions on,
real Redis, a real Celery worker process, and the web app served over HTTP on loopback (the FHIR
server delivers its notifications to it)."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask
from joserfc.jwk import RSAKey
from PIL import Image, ImageFilter
from sqlalchemy import select
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from audit.store import AuditStore
from plugin.app import create_app
from plugin.settings import Settings, load_settings
from tests.fhir_server import free_port, running_fhir_server
from tests.redis_server import RedisServer, running_redis_server
from tests.workers.conftest import FAST, WorkerProcess, small_photo
from workers.celery_app import services
from workers.inbox.keys import SigningKey, generate_key
from workers.inbox.store import InboxStore
from workers.job_records import Job
from workers.job_schema import jobs

CLIENT_ID = "photomarker-inbox"
WRONG_KEY_CLIENT = "photomarker-inbox-wrong-key"
READ_ONLY_CLIENT = "photomarker-inbox-read-only"
# Registered by URL: the server fetches the app's /.well-known/jwks.json itself.
JWKS_URL_CLIENT = "photomarker-inbox-jwks-url"
# Signs with ES384 (P-384) instead of RS384.
ES384_CLIENT = "photomarker-inbox-es384"
ADMIN_TOKEN = "inbox-tests-admin-token-5Yq2"
SECRET = "inbox-notification-secret-Zk4rT0pWq9"
# sekmet asks for system/*.c on a transaction POSTed to the base, so the tests grant that.
SCOPES = "system/*.rs system/*.c"
TOPIC = "http://photomarker.example.org/fhir/SubscriptionTopic/photo-added"
SNOMED = "http://snomed.info/sct"


@pytest.fixture(scope="module")
def inbox_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SigningKey]:
    path = tmp_path_factory.mktemp("inbox-key") / "keys" / "inbox.pem"
    return path, generate_key(path, "RS384")


@pytest.fixture(scope="module")
def es384_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SigningKey]:
    path = tmp_path_factory.mktemp("inbox-key-es") / "inbox-es384.pem"
    return path, generate_key(path, "ES384")


@pytest.fixture(scope="module")
def app_port() -> int:
    """The loopback port the web app will listen on (the FHIR server must know it beforehand)."""
    return free_port()


@pytest.fixture(scope="module")
def auth_fhir_server(
    tmp_path_factory: pytest.TempPathFactory,
    inbox_key: tuple[Path, SigningKey],
    es384_key: tuple[Path, SigningKey],
    app_port: int,
) -> Iterator[str]:
    """sekmet with SMART Backend Services enforced: our client, one with another key, one read-only."""
    ours = {"keys": [inbox_key[1].public_jwk()]}
    # Same key type and kid-shape, another key: the assertion's signature does not verify.
    stranger = RSAKey.generate_key(2048)
    other = {"keys": [dict(stranger.as_dict(private=False)) | {"kid": stranger.thumbprint(), "alg": "RS384"}]}
    overrides = {
        "server_auth": {
            "types": ["smart", "bearer"],
            "tokens": [ADMIN_TOKEN],
            "enforce_scopes": True,
            "token_lifetime": 900,
            "smart_clients": [
                {"client_id": CLIENT_ID, "jwks": ours, "scopes": "system/*.cruds"},
                {"client_id": WRONG_KEY_CLIENT, "jwks": other, "scopes": "system/*.cruds"},
                {"client_id": READ_ONLY_CLIENT, "jwks": ours, "scopes": "system/*.rs"},
                {
                    "client_id": ES384_CLIENT,
                    "jwks": {"keys": [es384_key[1].public_jwk()]},
                    "scopes": "system/*.cruds",
                },
                {
                    "client_id": JWKS_URL_CLIENT,
                    "jwks_url": f"http://127.0.0.1:{app_port}/.well-known/jwks.json",
                    "scopes": "system/*.cruds",
                },
            ],
        },
        "subscriptions": {"retries": 3},
    }
    with running_fhir_server(tmp_path_factory.mktemp("fhir-auth"), overrides) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


def photo_bytes(seed: int, *, blurred: bool = False) -> bytes:
    data = small_photo(seed)
    if not blurred:
        return data
    image = Image.open(io.BytesIO(data)).filter(ImageFilter.GaussianBlur(10))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()


def media_resource(photo: bytes, patient: str, *, operator: str | None) -> dict[str, Any]:
    media: dict[str, Any] = {
        "resourceType": "Media",
        "status": "completed",
        "subject": {"reference": patient},
        "createdDateTime": "2026-11-20T10:30:00+09:00",
        "bodySite": {"coding": [{"system": SNOMED, "code": "53120007"}]},
        "content": {
            "contentType": "image/jpeg",
            "data": base64.b64encode(photo).decode(),
            "hash": base64.b64encode(hashlib.sha1(photo).digest()).decode(),
        },
    }
    if operator:
        media["operator"] = {"reference": operator}
    return media


class QuietHandler(WSGIRequestHandler):
    """Werkzeug's handler without its access log: hundreds of notification lines say nothing."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class InboxStack:
    """The web app (in this process, also served over HTTP), Redis, one worker, the FHIR server."""

    def __init__(self, workdir: Path, redis: RedisServer, fhir_base: str, key_path: Path, port: int) -> None:
        self.workdir = workdir
        self.fhir_base = fhir_base
        self.values: dict[str, str] = {
            **FAST,
            "data_dir": str(workdir / "data"),
            "broker_url": redis.url,
            "fhir_base_url": fhir_base,
            "inbox_client_id": CLIENT_ID,
            "inbox_private_key_path": str(key_path),
            "inbox_notification_secret": SECRET,
            "inbox_scopes": SCOPES,
            "inbox_poll_interval_s": "300",  # no beat runs here; the tests call the tick
            "inbox_poll_overlap_s": "5",
            "batch_max_jobs": "8",
        }
        self.settings: Settings = load_settings(**self.values)
        self.app: Flask = create_app(self.settings)
        self.admin = httpx.Client(
            base_url=fhir_base + "/",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/fhir+json"},
            timeout=60,
        )
        self.server: BaseWSGIServer = make_server(
            "127.0.0.1", port, self.app, threaded=True, request_handler=QuietHandler
        )
        self.endpoint = f"http://127.0.0.1:{port}/fhir/notifications"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PHOTOMARKER_")}
        env.update({f"PHOTOMARKER_{k.upper()}": v for k, v in self.values.items()})
        self.env = env
        self.worker = WorkerProcess(env, workdir / "worker.log", "inbox-w1")

    def settings_with(self, **overrides: str) -> Settings:
        return load_settings(**(self.values | overrides))

    # --- the FHIR server, as the EHR and the patient app would use it ----------------------------

    def new_patient(self) -> str:
        created = self.admin.post("Patient", json={"resourceType": "Patient", "gender": "female"})
        created.raise_for_status()
        return f"Patient/{created.json()['id']}"

    def new_media(
        self, patient: str, seeds: range, *, operator: str | None = "patient", blurred: bool = False
    ) -> list[str]:
        """Media created in one transaction; ``operator="patient"`` means the patient sent them."""
        who = patient if operator == "patient" else operator
        entries = [
            {
                "resource": media_resource(photo_bytes(seed, blurred=blurred), patient, operator=who),
                "request": {"method": "POST", "url": "Media"},
            }
            for seed in seeds
        ]
        response = self.admin.post(
            "", json={"resourceType": "Bundle", "type": "transaction", "entry": entries}
        )
        response.raise_for_status()
        refs = []
        for entry in response.json()["entry"]:
            parts = entry["response"]["location"].split("/_history/")[0].rstrip("/").split("/")
            refs.append(f"{parts[-2]}/{parts[-1]}")
        return refs

    def search(self, path: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        url: str | None = path
        while url:
            page = self.admin.get(url).json()
            found += [e["resource"] for e in page.get("entry", [])]
            url = next((link["url"] for link in page.get("link", []) if link.get("relation") == "next"), None)
        return found

    def observations_of(self, patient: str) -> list[dict[str, Any]]:
        return self.search(f"Observation?subject={patient}&_count=500")

    # --- Photomarker's own records --------------------------------------------------------------

    def inbox_jobs(self) -> list[Job]:
        with self.app.app_context():
            store = services().jobs
            with store.engine.connect() as connection:
                ids = list(
                    connection.execute(
                        select(jobs.c.id).where(jobs.c.requested_by == "service:inbox")
                    ).scalars()
                )
            found = [store.get(job_id) for job_id in ids]
        return [job for job in found if job is not None]

    def jobs_for(self, media: list[str]) -> list[Job]:
        wanted = set(media)
        return [j for j in self.inbox_jobs() if j.reference and j.reference.split("/_history/")[0] in wanted]

    def inbox_store(self) -> InboxStore:
        with self.app.app_context():
            return InboxStore(services().jobs)

    def audit(self) -> AuditStore:
        with self.app.app_context():
            return services().audit_store

    def audit_events(self, prefix: str) -> list[Any]:
        return [e.record for e in self.audit().iter_events() if e.record.event.startswith(prefix)]

    def wait(self, what: str, check: Callable[[], Any], timeout: float = 90) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n{self.worker.log()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.worker.stop()
        self.server.shutdown()
        self.admin.close()


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: RedisServer,
    auth_fhir_server: str,
    inbox_key: tuple[Path, SigningKey],
    app_port: int,
) -> Iterator[InboxStack]:
    stack = InboxStack(
        tmp_path_factory.mktemp("inbox-stack"), redis_server, auth_fhir_server, inbox_key[0], app_port
    )
    try:
        stack.worker.wait_ready()
        yield stack
    finally:
        stack.stop()
