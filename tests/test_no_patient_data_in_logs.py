"""Application logs never carry patient data, tokens, passwords or photo bytes.

One full flow with every logger at DEBUG: ``photomarker analyze`` on a Media that names its
patient (a contained Patient with a name and an MRN, subject ``Patient/…``, the name in the
photo's EXIF too), the jobs API through
the Flask test client with a bearer token (and a FHIR token to pass on), and an auditor signing in,
searching for the patient and exporting. Then every captured log line is searched for each secret.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from PIL import Image

from audit.users import AuditorUsers
from plugin.api.tokens import ApiTokens
from plugin.app import create_app
from plugin.cli import main
from plugin.settings import load_settings
from workers.celery_app import services

REPO = Path(__file__).resolve().parent.parent
PATIENT_ID = "pm-73519qx"
FAMILY, GIVEN = "Zyxwvutsson", "Quirinella"
MRN = "MRN-88412290"


def _photo_with_exif() -> bytes:
    # Phone apps write who and what into EXIF; a decoder's debug log must not repeat it.
    image = Image.open(REPO / "examples" / "forearm-eczema.jpg")
    exif = Image.Exif()
    exif[0x010E] = f"{GIVEN} {FAMILY} {MRN}"  # ImageDescription
    exif[0x013B] = f"{GIVEN} {FAMILY}"  # Artist
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95, exif=exif)
    return out.getvalue()


PHOTO = _photo_with_exif()
PHOTO_B64 = base64.b64encode(PHOTO).decode()
FHIR_TOKEN = "fhir-bearer-Yt6q2LmZpW0vK8sR"
AUDITOR_PASSWORD = "log-leak canary passphrase 41"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def named_media() -> dict[str, Any]:
    return {
        "resourceType": "Media",
        "id": "photo-leak-1",
        "status": "completed",
        "contained": [
            {
                "resourceType": "Patient",
                "id": "pat",
                "name": [{"family": FAMILY, "given": [GIVEN]}],
                "identifier": [
                    {"system": "urn:oid:1.2.36.146.595.217.0.1", "type": {"text": "MRN"}, "value": MRN}
                ],
                "birthDate": "1961-04-12",
            }
        ],
        "subject": {"reference": f"Patient/{PATIENT_ID}", "display": f"{GIVEN} {FAMILY}"},
        "content": {
            "contentType": "image/jpeg",
            "data": PHOTO_B64,
            "hash": base64.b64encode(hashlib.sha1(PHOTO).digest()).decode(),
        },
    }


@pytest.fixture
def debug_log(tmp_path: Path) -> Iterator[Path]:
    """Every record of every logger, at DEBUG, with tracebacks, into one file."""
    path = tmp_path / "debug.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield path
    root.removeHandler(handler)
    root.setLevel(previous)
    handler.close()


def test_a_full_flow_logs_no_patient_data_tokens_or_photo_bytes(
    debug_log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("PHOTOMARKER_LOG_LEVEL", "DEBUG")
    data_dir = tmp_path / "data"

    # 1. The CLI on a Media naming its patient.
    media_path = tmp_path / "media.json"
    media_path.write_text(json.dumps(named_media()))
    result = CliRunner().invoke(
        main, ["analyze", str(media_path), "--out", str(tmp_path / "out.json")], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output

    # 2. The jobs API with a bearer token, a FHIR token to pass on, and one wrong token.
    app = create_app(load_settings(data_dir=data_dir, fhir_base_url="http://127.0.0.1:9/fhir"))
    try:
        with app.app_context():
            api_token = ApiTokens(services().jobs).create("ward-7-tablet")
            AuditorUsers(services().audit_store.engine).create("ana.auditor", AUDITOR_PASSWORD)
        client = app.test_client()
        headers = {"Authorization": f"Bearer {api_token}", "X-FHIR-Authorization": f"Bearer {FHIR_TOKEN}"}
        submitted = client.post("/api/v1/jobs", json={"resource": named_media()}, headers=headers)
        assert submitted.status_code == 202, submitted.get_data(as_text=True)
        assert client.get(submitted.headers["Location"], headers=headers).status_code == 200
        refused = client.post(
            "/api/v1/jobs",
            json={"resource": named_media()},
            headers={"Authorization": f"Bearer {api_token}x"},
        )
        assert refused.status_code == 401

        # 3. An auditor: a failed and a good sign-in, a search for the patient, an export.
        def token() -> str:
            found = _CSRF.search(client.get("/audit/login").get_data(as_text=True))
            assert found
            return found.group(1)

        login = {"name": "ana.auditor", "csrf_token": token()}
        assert (
            client.post("/audit/login", data={**login, "password": "wrong " + AUDITOR_PASSWORD}).status_code
            == 401
        )
        assert client.post("/audit/login", data={**login, "password": AUDITOR_PASSWORD}).status_code == 302
        page = client.post("/audit/", data={"patient": f"Patient/{PATIENT_ID}", "csrf_token": token()})
        assert page.status_code == 200 and f"Patient/{PATIENT_ID}" in page.get_data(as_text=True)
        export = client.post(
            "/audit/export", data={"patient": f"Patient/{PATIENT_ID}", "format": "csv", "csrf_token": token()}
        )
        assert export.status_code == 200
    finally:
        services(app).close()

    logged = debug_log.read_text(encoding="utf-8") + "\n".join(
        f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records
    )
    assert len(caplog.records) > 0, "nothing was logged: the test would prove nothing"
    secrets = {
        "patient family name": FAMILY,
        "patient given name": GIVEN,
        "patient id": PATIENT_ID,
        "MRN": MRN,
        "API token": api_token,
        "FHIR bearer token": FHIR_TOKEN,
        "auditor password": AUDITOR_PASSWORD,
        "photo bytes (base64)": PHOTO_B64[:40],
        "photo bytes (base64, middle)": PHOTO_B64[5000:5040],
    }
    leaked = {what: value for what, value in secrets.items() if value.lower() in logged.lower()}
    assert not leaked, f"found in the logs: {sorted(leaked)}"
