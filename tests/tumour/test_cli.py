"""``photomarker evaluate tumour`` and ``analyze --kind skin`` with the shipped tumour package."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from PIL import Image

from models.registry import ModelRegistry
from models.tumour.record import METADATA_FILE
from models.tumour.record_weighing import package_record
from plugin.cli import main
from tests.tumour.conftest import PAD_UFES, write_subset


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A package written by ``train tumour`` itself (1 epoch on 12 real crops: plumbing, not skill).

    The clinical metadata lies beside the labels, so the run also fits and packages the record model.
    """
    root = tmp_path_factory.mktemp("tumour")
    data = write_subset(root / "data", 2)
    (data.parent / METADATA_FILE).symlink_to(PAD_UFES / METADATA_FILE)
    out = root / "models" / "tumour-padufes"
    result = invoke("train", "tumour", "--data", str(data), "--cv", "2", "--epochs", "1", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "malignant (BCC+SCC+MEL)" in result.stdout
    return out.parent


def test_a_trained_package_carries_its_record_model_and_the_weighed_figures(model_dir: Path) -> None:
    package = ModelRegistry([model_dir]).get("tumour-padufes")
    manifest = package.manifest
    assert manifest.record is not None and manifest.version == "1.0.0", "the version is the one asked for"
    assert package_record(package) is not None
    assert "weighed_malignant_operating_threshold" in manifest.evaluation.metrics
    card = package.card_text() or ""
    assert "**Served.**" in card and "which also fitted the record model" in card


def test_evaluate_json_has_the_headline_figures_at_the_cards_operating_point(
    real_subset: Callable[[int], Path], model_dir: Path
) -> None:
    env = {"PHOTOMARKER_MODEL_DIR": str(model_dir)}
    data = str(real_subset(3))
    result = invoke("evaluate", "tumour", "--data", data, "--json", "--resamples", "100", env=env)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["n"] == 18 and out["model"] == "tumour-padufes"
    for key in ("auroc", "sensitivity", "specificity", "balanced_accuracy"):
        assert set(out[key]) == {"value", "low", "high"}
    assert set(out["per_class"]) == {"BCC", "SCC", "MEL", "ACK", "SEK", "NEV"}
    manifest = json.loads((model_dir / "tumour-padufes" / "manifest.json").read_text())
    assert out["operating_threshold"] == manifest["evaluation"]["metrics"]["malignant_operating_threshold"]


def test_evaluate_and_train_name_a_bad_csv(tmp_path: Path) -> None:
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("file,diagnostic\n")
    for command in ("train", "evaluate"):
        result = invoke(command, "tumour", "--data", str(csv_path))
        assert result.exit_code == 1
        assert "invalid-dataset" in result.stderr or "model-not-installed" in result.stderr


def test_analyze_a_real_lesion_crop_gives_a_tumour_observation_with_each_type(
    tmp_path: Path, model_dir: Path
) -> None:
    # The cut-out's black surround becomes transparency: the quality gate then judges the lesion
    # alone (a black JPEG surround reads as under-exposed), and the model sees it on black again.
    pixels = np.asarray(Image.open(PAD_UFES / "images" / "PAT_106_158_249.jpg").convert("RGB"))  # a BCC
    alpha = np.where(pixels.max(axis=2) > 12, 255, 0).astype(np.uint8)
    crop = tmp_path / "lesion.png"
    Image.fromarray(np.dstack([pixels, alpha]), "RGBA").save(crop)
    result = invoke("analyze", str(crop), "--kind", "skin", env={"PHOTOMARKER_MODEL_DIR": str(model_dir)})
    assert result.exit_code == 0, result.output
    bundle = json.loads(result.stdout)
    (tumour,) = [
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation"
        and e["resource"]["code"]["coding"][0]["code"] == "skin-tumour-malignancy"
    ]
    assert 0 <= tumour["valueQuantity"]["value"] <= 1
    codes = {c["code"]["coding"][0]["code"] for c in tumour["component"]}
    assert {"254701007", "372244006", "400096001", "tumour-scc", "tumour-ack", "tumour-sek"} <= codes
