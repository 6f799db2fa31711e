"""``photomarker generate skin``, ``train TASK`` and ``evaluate TASK`` for the skin tasks, end to end.

One epoch on a few dozen generated photos: this checks the plumbing (manifest → package → card
→ evaluation with CIs), not the skill; the shipped packages' figures come from full runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from models.manifest import load_manifest
from models.pipelines import clear_pipeline_cache
from plugin.cli import main


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("skin")
    result = invoke(
        "generate", "skin", "--out", str(root / "data"), "--count", "96", "--seed", "9", "--size", "128"
    )
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip())


@pytest.fixture(scope="module")
def model_dir(generated: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("models")
    env = {"PHOTOMARKER_MODEL_DIR": str(models)}
    # The extractor at another input side than its task's (--size): the package says which it used.
    for task, size in (("lesion", ("--size", "96")), ("tis", ())):
        result = invoke(
            "train",
            task,
            "--data",
            str(generated),
            "--epochs",
            "1",
            "--members",
            "1",
            "--threads",
            "1",
            "--out",
            str(models / f"my-{task}"),
            "--json",
            *size,
            env=env,
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["package"] == f"my-{task}"
    clear_pipeline_cache()
    return models


def test_training_writes_a_reference_package_with_a_card(model_dir: Path, generated: Path) -> None:
    manifest = load_manifest(model_dir / "my-lesion")
    assert manifest.reference_only and manifest.training_data.source == "synthetic"
    assert manifest.task == "skin-lesion" and manifest.output.kind == "segmenter"
    assert "photomarker generate skin" in manifest.training_data.summary
    card = (model_dir / "my-lesion" / manifest.card).read_text(encoding="utf-8")
    assert "Reference — not for clinical use" in card
    assert f"photomarker train lesion --data {generated}" in card and "--size 96" in card
    assert manifest.input.size == 96  # not the task's 128: the analysis reads the side from here
    tis = load_manifest(model_dir / "my-tis")
    assert tis.output.kind == "ordinal" and tis.output.levels == 4 and len(tis.labels) == 3


def test_evaluate_lesion_reports_detection_with_intervals(model_dir: Path, generated: Path) -> None:
    env = {"PHOTOMARKER_MODEL_DIR": str(model_dir)}
    result = invoke("evaluate", "lesion", "--data", str(generated), "--model", "my-lesion", "--json", env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n"] == 96 and report["reference_only"] is True
    for name in ("detection_rate", "no_lesion_specificity", "pixel_iou"):
        interval = report["metrics"][name]
        assert interval["low"] <= interval["value"] <= interval["high"]
    assert set(report["per_fitzpatrick"]) <= {str(k) for k in range(1, 7)}


def test_evaluate_tis_runs_end_to_end_through_lesion_extraction(model_dir: Path, generated: Path) -> None:
    env = {"PHOTOMARKER_MODEL_DIR": str(model_dir)}
    result = invoke("evaluate", "tis", "--data", str(generated), "--model", "my-tis", "--json", env=env)
    # With one epoch the extractor may find nothing; then the command says so and fails cleanly.
    if result.exit_code == 0:
        report = json.loads(result.stdout)
        assert {"pearson_r", "mae", "lesion_found_rate"} <= set(report["metrics"])
        assert report["counts"]["scored"] + report["counts"]["not_found"] == report["n"]
    else:
        assert "invalid-dataset" in result.output and "lesions were found in only" in result.output


def test_evaluate_without_a_model_is_a_clear_error(generated: Path, tmp_path: Path) -> None:
    env = {"PHOTOMARKER_MODEL_DIR": str(tmp_path)}
    result = invoke("evaluate", "body-part", "--data", str(generated), "--model", "nothing-here", env=env)
    assert result.exit_code == 1
    assert "model-not-installed" in result.output


def test_evaluate_record_writes_the_figures_and_command_into_the_card(
    model_dir: Path, generated: Path
) -> None:
    env = {"PHOTOMARKER_MODEL_DIR": str(model_dir)}
    result = invoke(
        "evaluate", "lesion", "--data", str(generated), "--model", "my-lesion", "--record", env=env
    )
    assert result.exit_code == 0, result.output
    manifest = load_manifest(model_dir / "my-lesion")
    assert manifest.evaluation.command == f"photomarker evaluate lesion --data {generated} --model my-lesion"
    assert manifest.evaluation.n == 96 and "detection_rate" in manifest.evaluation.metrics
    card = (model_dir / "my-lesion" / manifest.card).read_text(encoding="utf-8")
    assert manifest.evaluation.command in card and "| detection_rate |" in card
    assert "trained with `photomarker train lesion" in card  # the training command stays
