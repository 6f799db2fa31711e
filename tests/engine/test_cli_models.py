"""``photomarker models list/show/verify/predict``, through the real ``photomarker`` command group."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from models.engine.reference_train import NAME as REFERENCE
from plugin.cli import main
from tests.engine.conftest import png_bytes, skin_photo, untrained_package


@pytest.fixture
def model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "models"
    untrained_package(directory, name="site-model")
    monkeypatch.setenv("PHOTOMARKER_MODEL_DIR", str(directory))
    return directory


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["models", *args])
    return result.exit_code, result.stdout, result.stderr


def test_list_shows_site_and_shipped_models(model_dir: Path) -> None:
    code, out, _ = run("list")
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert {REFERENCE, "site-model"} <= set(lines)
    assert list(lines) == sorted(lines)
    assert "REFERENCE — not for clinical use" in lines[REFERENCE]
    assert "REFERENCE — not for clinical use" in lines["site-model"]


def test_list_json(model_dir: Path) -> None:
    code, out, _ = run("list", "--json")
    assert code == 0
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["site-model"]["directory"] == str(model_dir / "site-model")
    assert rows[REFERENCE]["reference_only"] is True
    assert len(rows[REFERENCE]["weights_sha256"]) == 64


def test_show_prints_what_it_was_trained_on_and_how_it_scored(model_dir: Path) -> None:
    code, out, _ = run("show", REFERENCE)
    assert code == 0
    assert "REFERENCE — not for clinical use" in out
    assert "training data: synthetic" in out
    assert "test_accuracy:" in out
    assert "temperature" in out


def test_show_json_is_the_manifest(model_dir: Path) -> None:
    code, out, _ = run("show", REFERENCE, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["name"] == REFERENCE and data["reference_only"] is True
    assert set(data["evaluation"]["metrics"]) >= {"test_accuracy", "test_auroc", "ood_noise_abstention_rate"}


def test_show_card_prints_the_model_card(model_dir: Path) -> None:
    code, out, _ = run("show", REFERENCE, "--card")
    assert code == 0
    assert out.startswith("# ") and "not for clinical use" in out


def test_show_unknown_model_fails_with_its_code(model_dir: Path) -> None:
    code, _, err = run("show", "nope")
    assert code == 1
    assert "model-not-installed" in err


def test_verify_passes_and_then_catches_tampered_weights(model_dir: Path) -> None:
    code, out, _ = run("verify")
    assert code == 0
    assert f"{REFERENCE}: ok" in out and "site-model: ok" in out
    weights = model_dir / "site-model" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    code, out, err = run("verify", "site-model")
    assert code == 1
    assert "model-weights-mismatch" in err


def test_predict_runs_the_reference_model_on_a_photo(model_dir: Path, tmp_path: Path) -> None:
    photo = tmp_path / "patch.png"
    photo.write_bytes(png_bytes(skin_photo(5, marker_at=(0.3, 0.6))))
    heatmaps = tmp_path / "heat"
    code, out, err = run("predict", REFERENCE, str(photo), "--heatmap-dir", str(heatmaps))
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["probabilities"]["reference-marker-present"] > 0.9
    assert row["abstained"] is None
    assert Path(row["heatmap"]).read_bytes().startswith(b"\x89PNG")
    assert "not for clinical use" in err
