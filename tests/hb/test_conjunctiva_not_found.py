"""A photo meant for the Hb analysis whose conjunctiva cannot be found: a retake, not an Hb value."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from click.testing import CliRunner
from PIL import Image

from models.hb.scenes import smooth_noise
from models.quality import ADVICE_CONJUNCTIVA_NOT_FOUND
from models.results import QualityCheckName
from plugin.cli import main
from plugin.settings import load_settings
from tests.fhir_validation import assert_valid_fhir
from workers.analysis import analyse_photo

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def cheek_close_up() -> bytes:
    """Sharp, well-lit pale skin filling the frame: conjunctiva-coloured, but no eyelid in it."""
    rng = np.random.default_rng(3)
    height, width = 480, 640
    tone = np.asarray((232, 190, 165), np.float32)
    texture = (1 + 0.06 * smooth_noise(rng, height, width, 40)) * (
        1 + 0.05 * smooth_noise(rng, height, width, 2)
    )
    pixels = tone * texture[..., None] + rng.normal(0, 5, (height, width, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _observations(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        e["resource"]["code"]["coding"][0]["code"]: e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation"
    }


def test_no_conjunctiva_in_view_fails_the_quality_gate_and_gets_no_hb(tmp_path: Path) -> None:
    photo = tmp_path / "cheek.png"
    photo.write_bytes(cheek_close_up())
    result = CliRunner().invoke(
        main, ["analyze", str(photo), "--kind", "conjunctiva"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    bundle = json.loads(result.stdout)
    assert_valid_fhir(bundle)
    observations = _observations(bundle)
    assert set(observations) == {"photo-quality"}, "nothing but the quality result for a photo to retake"
    quality = observations["photo-quality"]
    assert quality["valueCodeableConcept"]["coding"][0]["code"] == "photo-quality-retake"
    (component,) = [
        c for c in quality["component"] if c["code"]["coding"][0]["code"] == "photo-quality-conjunctiva-found"
    ]
    assert component["interpretation"][0]["coding"][0]["code"] == "check-failed"
    assert ADVICE_CONJUNCTIVA_NOT_FOUND in component["interpretation"][0]["text"]
    notes = " ".join(note["text"] for note in quality["note"])
    assert "Pull the lower eyelid down" in notes and "Found in the photo" not in notes


def test_the_check_passes_on_an_eyelid_and_is_not_made_for_skin_photos() -> None:
    settings = load_settings()
    eyelid = analyse_photo((EXAMPLES / "eyelid.png").read_bytes(), settings, requested="conjunctiva")
    (check,) = [c for c in eyelid.report.quality.checks if c.name == QualityCheckName.CONJUNCTIVA_FOUND]
    assert check.passed and check.value > 0.1 and check.advice is None
    skin = analyse_photo((EXAMPLES / "forearm-eczema.jpg").read_bytes(), settings, requested="skin")
    assert QualityCheckName.CONJUNCTIVA_FOUND not in {c.name for c in skin.report.quality.checks}
