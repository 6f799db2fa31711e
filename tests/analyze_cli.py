"""Running `photomarker analyze` in the tests: the example photos, the run, and reading its bundle.

``run`` invokes the command in-process (Click's runner, stdout and stderr apart); ``resources`` and
``observation`` pick resources out of the transaction bundle it prints; ``media_json`` and
``write_json`` build the FHIR Media inputs it reads.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from plugin.cli import main

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
FOREARM = EXAMPLES / "forearm-eczema.jpg"
BLURRY = EXAMPLES / "blurry.jpg"


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, ["analyze", *args], env=env, catch_exceptions=False)


def resources(bundle: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type]


def observation(bundle: dict[str, Any], code: str) -> dict[str, Any]:
    (found,) = [o for o in resources(bundle, "Observation") if o["code"]["coding"][0]["code"] == code]
    return found


def media_json(data: bytes, **overrides: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Media",
        "id": "photo-1",
        "status": "completed",
        "subject": {"reference": "Patient/p1"},
        "content": {
            "contentType": "image/jpeg",
            "data": base64.b64encode(data).decode(),
            "hash": base64.b64encode(hashlib.sha1(data).digest()).decode(),
        },
    }
    resource.update(overrides)
    return resource


def write_json(tmp_path: Path, name: str, value: Any) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(value))
    return path
