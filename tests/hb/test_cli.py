"""`photomarker train hb` / `evaluate hb` on real strips, and `analyze --kind conjunctiva` end to end."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from models.manifest import load_manifest
from models.pipelines import clear_pipeline_cache
from models.registry import SHIPPED_MODEL_DIR
from plugin.cli import main
from tests.fhir_validation import assert_valid_fhir

REPO = Path(__file__).resolve().parents[2]
SHIPPED = SHIPPED_MODEL_DIR / "hb-conjunctiva"
JSON_KEYS = ("mae", "rmse", "pearson_r", "bias", "loa_low", "loa_high", "sensitivity", "specificity", "n")


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


@pytest.fixture
def fresh_pipelines() -> Iterator[None]:
    # Built pipelines are cached per process; this test points the registry at its own directory.
    clear_pipeline_cache()
    yield
    clear_pipeline_cache()


@pytest.fixture(scope="module")
def trained(
    real_subset: Callable[[int], Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict]:
    """A tiny model trained by the CLI on 80 real rows (seconds, not minutes)."""
    model_dir = tmp_path_factory.mktemp("models")
    result = invoke(
        "train", "hb", "--data", str(real_subset(80)), "--cv", "2", "--members", "1", "--epochs", "1",
        "--threads", "1", "--out", str(model_dir / "hb-test"), "--name", "hb-test", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return model_dir, json.loads(result.stdout)


def test_train_reports_grouped_cv_beside_the_baseline_and_writes_a_package(
    trained: tuple[Path, dict],
) -> None:
    model_dir, report = trained
    for key in JSON_KEYS:
        assert key in report
    assert report["baseline"]["description"] == "predict the training mean"
    assert report["baseline"]["mae"]["value"] > 0
    assert report["grouping"] == "strict" and report["folds"] == 2
    assert report["dataset"]["rows"] == 80 and report["dataset"]["rows_dropped"] > 0
    assert report["ci"]["mae"][0] <= report["mae"] <= report["ci"]["mae"][1]
    manifest = load_manifest(model_dir / "hb-test")
    assert manifest.task == "hb" and manifest.output.unit == "g/dL" and manifest.reference_only
    assert manifest.evaluation.metrics["mae"] == pytest.approx(report["mae"], abs=1e-4)
    assert manifest.evaluation.command.startswith("photomarker train hb --data ")
    card = (model_dir / "hb-test" / "MODEL_CARD.md").read_text()
    assert "10.17632/m53vz6b7fx.1" in card and "6–59 months" in card and "Ghana" in card
    assert "Starting weights: none" in card
    assert f"{report['mae']:.2f}" in card


def test_evaluate_scores_a_named_package_without_training(
    trained: tuple[Path, dict], real_subset: Callable[[int], Path]
) -> None:
    model_dir, _ = trained
    env = {"PHOTOMARKER_MODEL_DIR": str(model_dir)}
    result = invoke("evaluate", "hb", "--data", str(real_subset(30)), "--model", "hb-test", "--json", env=env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in JSON_KEYS:
        assert key in data
    assert data["model"] == "hb-test" and data["n"] > 0 and data["not_found"] == 0
    text = invoke("evaluate", "hb", "--data", str(real_subset(30)), "--model", "hb-test", env=env)
    assert "Pearson r" in text.stdout and "baseline" in text.stdout


@pytest.mark.skipif(not (SHIPPED / "manifest.json").is_file(), reason="no shipped Hb package")
def test_evaluate_uses_the_shipped_model_by_default(real_subset: Callable[[int], Path]) -> None:
    result = invoke("evaluate", "hb", "--data", str(real_subset(24)), "--json", "--resamples", "200")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["model"] == "hb-conjunctiva"
    for key in JSON_KEYS:
        assert key in data


def test_evaluate_names_a_missing_model(real_subset: Callable[[int], Path], tmp_path: Path) -> None:
    env = {"PHOTOMARKER_MODEL_DIR": str(tmp_path)}
    result = invoke("evaluate", "hb", "--data", str(real_subset(24)), "--model", "nope", env=env)
    assert result.exit_code == 1
    assert "model-not-installed" in result.stderr


def test_train_names_a_bad_csv(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("IMAGE_ID,HB_LEVEL\nImage_1,9.0\n")
    result = invoke("train", "hb", "--data", str(tmp_path / "labels.csv"), "--no-final")
    assert result.exit_code == 1
    assert "invalid-dataset" in result.stderr and "Image_1" in result.stderr


@pytest.mark.usefixtures("fresh_pipelines")
def test_analyze_an_eyelid_photo_gives_an_hb_observation(
    trained: tuple[Path, dict], real_subset: Callable[[int], Path], tmp_path: Path
) -> None:
    model_dir, _ = trained
    env = {"PHOTOMARKER_MODEL_DIR": str(model_dir)}
    strip = real_subset(30).parent / "images" / "Image_001.png"
    result = invoke(
        "analyze", "--kind", "conjunctiva", str(REPO / "examples" / "eyelid.png"), str(strip), env=env
    )
    assert result.exit_code == 0, result.output
    bundle = json.loads(result.stdout)
    assert_valid_fhir(bundle)
    observations = [
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation"
        and e["resource"]["code"]["coding"][0]["code"] == "hb-estimate-conjunctiva-photo"
    ]
    assert len(observations) == 2
    for hb in observations:
        assert hb["valueQuantity"]["unit"] == "g/dL"
        assert 3.0 < hb["valueQuantity"]["value"] < 20.0
        interval = hb["component"][0]["valueRange"]
        assert interval["low"]["value"] < hb["valueQuantity"]["value"] < interval["high"]["value"]
    assert "hb-test" in result.stderr
