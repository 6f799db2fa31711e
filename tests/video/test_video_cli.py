"""`photomarker analyze clip.mp4` and `--series a.jpg b.jpg c.jpg`: one accumulated result, valid FHIR."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.analyze_cli import observation, resources, run, write_json
from tests.fhir_validation import assert_valid_fhir
from tests.video.clips import encode, skin_frames

ANALYSES = ("tis", "skin-condition-probabilities", "skin-diagnosis-probabilities")


def components(obs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["code"]["coding"][0]["code"]: c for c in obs.get("component", [])}


def full_url(bundle: dict[str, Any], resource: dict[str, Any]) -> str:
    return next(e["fullUrl"] for e in bundle["entry"] if e["resource"] is resource)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 3 s of a hand-held eczema scene; the last half second is shaken blurred (dropped by the gate).
    path = tmp_path_factory.mktemp("clips") / "clip.mp4"
    encode(
        skin_frames(30, size=288, blur_from=25),
        fps=10,
        rotation=90,
        path=path,
        metadata={"location": "+35.6895+139.6917/"},
    )
    return path


def test_a_video_gives_one_observation_per_analysis_derived_from_the_video(clip: Path) -> None:
    result = run(str(clip))
    assert result.exit_code == 0, result.output
    bundle = json.loads(result.stdout)
    assert_valid_fhir(bundle)

    (video,) = [m for m in resources(bundle, "Media") if m["type"]["coding"][0]["code"] == "video"]
    assert video["content"]["contentType"] == "video/mp4" and video["frames"] == 30
    assert video["duration"] == pytest.approx(3.0, abs=0.1) and (video["width"], video["height"]) == (
        288,
        288,
    )
    assert b"+35.6895" not in base64.b64decode(video["content"]["data"]), "the clip's place went into the EHR"
    source = full_url(bundle, video)

    quality = observation(bundle, "photo-quality")
    assert quality["valueCodeableConcept"]["coding"][0]["code"] == "photo-quality-acceptable"
    counts = components(quality)
    assert counts["frames-analysed"]["valueInteger"] + counts["frames-rejected"]["valueInteger"] == 9
    assert counts["frames-rejected"]["valueInteger"] >= 1  # the blurred end
    for code in ANALYSES:
        obs = observation(bundle, code)  # exactly one per analysis for the whole clip
        assert obs["derivedFrom"] == [{"reference": source}]
        parts = components(obs)
        assert 0 <= parts["frame-agreement"]["valueQuantity"]["value"] <= 1
        assert {"frames-analysed", "frames-rejected", "frame-range"} <= set(parts)
        assert any("Accumulated over" in n["text"] for n in obs["note"])
    heatmaps = [m for m in resources(bundle, "Media") if "Heat map" in m["content"].get("title", "")]
    assert heatmaps and all("the frame at" in m["note"][0]["text"] for m in heatmaps)
    (provenance,) = resources(bundle, "Provenance")
    assert provenance["entity"] == [{"role": "source", "what": {"reference": source}}]
    assert "skin video (" in result.stderr and "of frames agree" in result.stderr


def test_the_same_video_twice_gives_the_same_identifiers(clip: Path) -> None:
    first, second = (json.loads(run(str(clip)).stdout) for _ in range(2))
    assert [e["request"] for e in first["entry"]] == [e["request"] for e in second["entry"]]


def test_a_video_mostly_blurred_asks_for_a_retake(tmp_path: Path) -> None:
    path = tmp_path / "shaky.webm"
    encode(skin_frames(20, size=288, blur_from=4), container="webm", fps=10, path=path)
    result = run(str(path))
    assert result.exit_code == 0, result.output
    bundle = json.loads(result.stdout)
    quality = observation(bundle, "photo-quality")
    assert quality["valueCodeableConcept"]["coding"][0]["code"] == "photo-quality-retake"
    frames = components(quality)["photo-quality-frames"]
    assert frames["valueQuantity"]["value"] < 3 and "Film the lesion" in frames["interpretation"][0]["text"]
    for code in ANALYSES:  # what the two sharp frames gave is kept, and plainly not concluded
        obs = observation(bundle, code)
        assert obs["interpretation"][0]["coding"][0]["code"] == "model-abstained"


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("series")
    paths = []
    for index, array in enumerate(skin_frames(3, size=320)):
        paths.append(folder / f"shot-{index}.jpg")
        Image.fromarray(array).save(paths[-1], quality=92)
    return paths


def test_a_series_gives_one_observation_per_analysis_derived_from_every_photo(shots: list[Path]) -> None:
    result = run("--series", *map(str, shots))
    assert result.exit_code == 0, result.output
    bundle = json.loads(result.stdout)
    assert_valid_fhir(bundle)
    photos = [m for m in resources(bundle, "Media") if "Heat map" not in m["content"].get("title", "")]
    assert len(photos) == 3
    sources = [{"reference": full_url(bundle, m)} for m in photos]
    for code in (*ANALYSES, "photo-quality"):
        assert observation(bundle, code)["derivedFrom"] == sources
    assert components(observation(bundle, "tis"))["frames-analysed"]["valueInteger"] == 3
    (provenance,) = resources(bundle, "Provenance")
    assert [e["what"] for e in provenance["entity"]] == sources
    assert "skin series (3 photos analysed, 0 rejected)" in result.stderr
    # The same photos named in another order are the same series: the same identifiers.
    again = json.loads(run("--series", *map(str, reversed(shots))).stdout)
    ids = {json.dumps(o["identifier"]) for o in resources(bundle, "Observation")}
    assert ids == {json.dumps(o["identifier"]) for o in resources(again, "Observation")}


@pytest.mark.parametrize(
    ("name", "content", "code"),
    [
        ("notes.mp4", b"these are notes, not a video", "not-a-video"),
        (
            "photo.mov",
            Path(__file__).parents[2].joinpath("examples/forearm-eczema.jpg").read_bytes(),
            "content-type-mismatch",
        ),
    ],
)
def test_a_bad_video_file_is_one_clear_line(tmp_path: Path, name: str, content: bytes, code: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    result = run(str(path))
    assert result.exit_code == 1
    assert f"photomarker: {path}: {code}: " in result.stderr


def test_a_series_of_one_photo_is_refused(shots: list[Path]) -> None:
    result = run("--series", str(shots[0]))
    assert result.exit_code == 1 and "invalid-series" in result.stderr


@pytest.mark.fhir_server
def test_a_video_media_on_the_server_is_analysed_once(fhir_server: str, tmp_path: Path) -> None:
    data = encode(skin_frames(12, size=288), fps=6)
    patient = httpx.post(f"{fhir_server}/Patient", json={"resourceType": "Patient"}).json()
    binary = httpx.post(
        f"{fhir_server}/Binary",
        json={"resourceType": "Binary", "contentType": "video/mp4", "data": base64.b64encode(data).decode()},
    ).json()
    media = httpx.post(
        f"{fhir_server}/Media",
        json={
            "resourceType": "Media",
            "status": "completed",
            "subject": {"reference": f"Patient/{patient['id']}"},
            "content": {
                "contentType": "video/mp4",
                "url": f"Binary/{binary['id']}",
                "hash": base64.b64encode(hashlib.sha1(data).digest()).decode(),
            },
        },
    ).json()
    path = write_json(tmp_path, "media.json", media)
    assert run(str(path), "--fhir-base", fhir_server).exit_code == 0
    found = httpx.get(f"{fhir_server}/Observation", params={"_count": "500"}).json()
    mine = [
        e["resource"]
        for e in found.get("entry", [])
        if e["resource"].get("derivedFrom", [{}])[0].get("reference", "").startswith(f"Media/{media['id']}")
    ]
    assert {o["code"]["coding"][0]["code"] for o in mine} >= {"photo-quality", *ANALYSES}
    assert all(len(o["derivedFrom"]) == 1 for o in mine)
    counts = {t: _count(fhir_server, t) for t in ("Observation", "Media", "Provenance")}
    assert run(str(path), "--fhir-base", fhir_server).exit_code == 0
    assert {t: _count(fhir_server, t) for t in counts} == counts


def _count(base: str, resource_type: str) -> int:
    total: int = httpx.get(f"{base}/{resource_type}", params={"_summary": "count"}).json()["total"]
    return total
