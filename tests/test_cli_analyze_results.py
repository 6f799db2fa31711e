"""`photomarker analyze`: a photo goes in, valid FHIR comes out, with the results its kind calls for."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from tests.analyze_cli import BLURRY, EXAMPLES, FOREARM, media_json, observation, resources, run, write_json
from tests.datasets import CP_ANEMIC_SUBSET
from tests.fhir_validation import assert_valid_fhir


def test_example_photo_gives_a_valid_transaction_with_quality_and_the_skin_results() -> None:
    result = run(str(FOREARM))
    assert result.exit_code == 0, result.output
    bundle = json.loads(result.stdout)
    assert bundle["type"] == "transaction"
    assert_valid_fhir(bundle)

    quality = observation(bundle, "photo-quality")
    assert quality["valueCodeableConcept"]["coding"][0]["code"] == "photo-quality-acceptable"
    # The eczema patch is cut out and scored by the shipped (reference) skin models.
    tis = observation(bundle, "tis")
    assert 0 <= tis["valueInteger"] <= 9 and len(tis["component"]) == 3
    assert tis["bodySite"]["coding"], "the body-part model names the site"
    for code in ("skin-condition-probabilities", "skin-diagnosis-probabilities"):
        panel = observation(bundle, code)
        assert panel["status"] == "preliminary" and panel["component"]
    models = [d for d in resources(bundle, "Device") if "SHA-256 of the model weights" in json.dumps(d)]
    assert models and all("not for clinical use" in json.dumps(d) for d in models)
    # No tumour-like growth on this forearm: the tumour analysis says so and invents nothing.
    tumour = observation(bundle, "skin-tumour-malignancy")
    assert tumour["status"] == "cancelled"
    assert tumour["dataAbsentReason"]["coding"][0]["code"] == "not-performed"
    assert not any(key.startswith("value") for key in tumour), "a score was invented"
    assert "no tumour-like lesion was found" in tumour["note"][0]["text"].lower()

    (media,) = [m for m in resources(bundle, "Media") if "Heat map" not in m["content"].get("title", "")]
    stored = base64.b64decode(media["content"]["data"])
    assert b"GPS" not in stored and b"Exif" not in stored, "the photo's metadata went into the EHR"
    for obs in resources(bundle, "Observation"):
        assert obs["derivedFrom"][0]["reference"] == next(
            e["fullUrl"] for e in bundle["entry"] if e["resource"] is media
        )
    assert "skin photo, quality acceptable" in result.stderr


def test_same_photo_twice_gives_the_same_identifiers() -> None:
    first = json.loads(run(str(FOREARM)).stdout)
    second = json.loads(run(str(FOREARM)).stdout)
    assert [e["request"] for e in first["entry"]] == [e["request"] for e in second["entry"]]


def test_blurry_dark_photo_gets_a_retake_quality_result_and_nothing_else(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    result = run(str(BLURRY), "--out", str(out))
    assert result.exit_code == 0
    assert result.stdout == ""
    bundle = json.loads(out.read_text())
    quality = observation(bundle, "photo-quality")
    assert quality["valueCodeableConcept"]["coding"][0]["code"] == "photo-quality-retake"
    codes = {o["code"]["coding"][0]["code"] for o in resources(bundle, "Observation")}
    assert codes == {"photo-quality"}
    assert "retake needed (blur, exposure)" in result.stderr


def test_media_json_with_patient_bundle_and_several_paths_in_one_run(tmp_path: Path) -> None:
    media = write_json(tmp_path, "media.json", media_json(FOREARM.read_bytes()))
    result = run(str(media), str(EXAMPLES / "media-forearm.json"), str(FOREARM), "--kind", "skin")
    assert result.exit_code == 0, result.output
    bundle = json.loads(result.stdout)
    assert_valid_fhir(bundle)
    derived = {o["derivedFrom"][0]["reference"] for o in resources(bundle, "Observation")}
    assert "Media/photo-1" in derived
    software = [d for d in resources(bundle, "Device") if d["deviceName"][0]["name"] == "Photomarker"]
    assert len(software) == 1, "the shared software Device is written once"
    assert len(result.stderr.strip().splitlines()) == 3


def test_synthetic_eyelid_gets_an_hb_estimate_that_abstains_and_says_reference_only() -> None:
    # The shipped Hb model learnt from real CP-AnemiC strips; a generated eyelid is unlike them.
    result = run(str(EXAMPLES / "eyelid.png"), "--kind", "conjunctiva")
    assert result.exit_code == 0, result.output
    bundle = json.loads(result.stdout)
    assert_valid_fhir(bundle)
    hb = observation(bundle, "hb-estimate-conjunctiva-photo")
    assert hb["valueQuantity"]["code"] == "g/dL"
    assert hb["interpretation"][0]["coding"][0]["code"] == "model-abstained"
    notes = " ".join(note["text"] for note in hb["note"])
    assert "not for clinical use" in notes and "Do not rely on this estimate" in notes
    assert not any(c["code"]["coding"][0]["code"] == "718-7" for c in [hb])  # a photo is no blood test
    assert "abstained" in result.stderr


def test_real_conjunctiva_strip_gets_an_hb_estimate_with_its_interval() -> None:
    strip = CP_ANEMIC_SUBSET / "images" / "Image_001.png"
    result = run(str(strip), "--kind", "conjunctiva")
    assert result.exit_code == 0, result.output
    hb = observation(json.loads(result.stdout), "hb-estimate-conjunctiva-photo")
    low, high = (hb["component"][0]["valueRange"][k]["value"] for k in ("low", "high"))
    assert low < hb["valueQuantity"]["value"] < high
    assert 3 < hb["valueQuantity"]["value"] < 20


def test_skin_photo_forced_through_the_hb_pipeline_without_conjunctiva_is_not_scored(tmp_path: Path) -> None:
    grey = tmp_path / "wall.png"
    from PIL import Image

    Image.new("RGB", (400, 300), (120, 160, 200)).save(grey)
    result = run(str(grey), "--kind", "conjunctiva")
    bundle = json.loads(result.stdout)
    codes = {o["code"]["coding"][0]["code"]: o for o in resources(bundle, "Observation")}
    hb = codes.get("hb-estimate-conjunctiva-photo")
    assert hb is None or "valueQuantity" not in hb, "an Hb value was made up for a photo without conjunctiva"
