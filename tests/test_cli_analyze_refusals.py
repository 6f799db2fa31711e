"""`photomarker analyze` refusals: one clear line naming the file and the reason, exit 1, no traceback."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from plugin.cli import main
from tests.analyze_cli import FOREARM, media_json, observation, run, write_json


def png_bomb() -> bytes:
    """A few hundred bytes whose header claims 100 000 × 100 000 pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + chunk(b"IEND", b"")
    )


def _truncated_jpeg() -> bytes:
    data = FOREARM.read_bytes()
    return data[: len(data) // 2]


def _pdf() -> bytes:
    return b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def _svg() -> bytes:
    return b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'


FILE_REFUSALS = {
    "empty.jpg": (b"", "empty-photo"),
    "notes.jpg": (b"these are clinic notes, not a photo " * 20, "undecodable-photo"),
    "cut.jpg": (_truncated_jpeg(), "truncated-photo"),
    "bomb.png": (png_bomb(), "photo-too-many-pixels"),
    "report.pdf": (_pdf(), "unsupported-media-type"),
    "drawing.svg": (_svg(), "unsupported-media-type"),
    "broken.json": (b'{"resourceType": "Media", "status": ', "malformed-json"),
    "list.json": (b"[1, 2, 3]", "not-fhir"),
    "hello.json": (b'{"hello": "world"}', "not-fhir"),
    "patient.json": (b'{"resourceType": "Patient", "id": "p1"}', "unsupported-resource"),
}


@pytest.mark.parametrize("name", sorted(FILE_REFUSALS))
def test_refused_file(tmp_path: Path, name: str) -> None:
    data, code = FILE_REFUSALS[name]
    path = tmp_path / name
    path.write_bytes(data)
    result = run(str(path))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.strip() == result.stderr.strip().splitlines()[0], "one line per refusal"
    assert result.stderr.startswith(f"photomarker: {path}: {code}: ")


def _resource_refusals() -> dict[str, tuple[dict[str, Any], str]]:
    photo = FOREARM.read_bytes()
    content = {"contentType": "image/jpeg"}
    return {
        "bad-base64": (media_json(photo, content={**content, "data": "@@not base64@@"}), "bad-base64"),
        "hash-mismatch": (
            media_json(
                photo,
                content={
                    **content,
                    "data": base64.b64encode(photo).decode(),
                    "hash": base64.b64encode(hashlib.sha1(b"x").digest()).decode(),
                },
            ),
            "hash-mismatch",
        ),
        "file-url": (media_json(photo, content={**content, "url": "file:///etc/passwd"}), "url-not-allowed"),
        "link-local": (
            media_json(photo, content={**content, "url": "http://169.254.169.254/latest/meta-data/"}),
            "url-not-allowed",
        ),
        "other-host": (
            media_json(photo, content={**content, "url": "https://elsewhere.example.com/fhir/Binary/1"}),
            "url-not-allowed",
        ),
        "missing-subject": (media_json(photo, subject=None), "missing-subject"),
        "pdf-type": (
            media_json(photo, content={"contentType": "application/pdf", "url": "Binary/1"}),
            "unsupported-media-type",
        ),
        "no-content": (media_json(photo, content={"contentType": "image/jpeg"}), "no-image-content"),
        "binary-without-server": (
            media_json(photo, content={**content, "url": "Binary/1"}),
            "binary-unavailable",
        ),
    }


@pytest.mark.parametrize("case", sorted(_resource_refusals()))
def test_refused_resource(tmp_path: Path, case: str) -> None:
    resource, code = _resource_refusals()[case]
    path = write_json(tmp_path, f"{case}.json", resource)
    result = run(str(path))
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"photomarker: {path}: {code}: "), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_other_paths_still_run_when_one_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "empty.jpg"
    bad.write_bytes(b"")
    result = run(str(bad), str(FOREARM))
    assert result.exit_code == 1
    bundle = json.loads(result.stdout)
    assert observation(bundle, "photo-quality")
    assert f"{bad}: empty-photo" in result.stderr


def test_photo_of_another_patient_than_asked_is_refused(tmp_path: Path) -> None:
    path = write_json(tmp_path, "m.json", media_json(FOREARM.read_bytes()))
    result = run(str(path), "--patient", "Patient/other")
    assert result.exit_code == 1
    assert "subject-mismatch" in result.stderr


def test_bad_setting_fails_at_start_naming_the_variable() -> None:
    result = CliRunner().invoke(main, ["analyze", str(FOREARM)], env={"PHOTOMARKER_DEVICE": "gpu"})
    assert result.exit_code == 2
    assert "PHOTOMARKER_DEVICE" in result.stderr
    assert "Traceback" not in result.output


def test_installed_console_script_never_shows_a_traceback(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    script = Path(sys.executable).with_name("photomarker")
    done = subprocess.run(
        [str(script), "analyze", str(broken), str(tmp_path / "missing.jpg")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"{broken}: malformed-json" in done.stderr
    assert "missing.jpg: unreadable-file" in done.stderr
