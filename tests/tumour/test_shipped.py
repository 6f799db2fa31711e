"""The shipped tumour package: it loads, serves a real lesion crop, scores a CSV, and says what it is."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from models.engine.options import EngineOptions
from models.intake import IntakeLimits, decode_photo
from models.pipelines import (
    ModelAnalysisPipeline,
    build_analysis_pipeline,
    clear_pipeline_cache,
    execution_for,
    installed_pipeline,
)
from models.registry import SHIPPED_MODEL_DIR, registry_for
from models.results import AnalysisNotPerformed, TumourAssessment
from models.tumour.dataset import CLASSES, LABELS
from models.tumour.package import AIM_AUROC, DEFAULT_NAME, meets_aim
from plugin.cli import main
from tests.tumour.conftest import PAD_UFES

PACKAGE = SHIPPED_MODEL_DIR / DEFAULT_NAME
A_BCC = PAD_UFES / "images" / "PAT_106_158_249.jpg"


@pytest.fixture(autouse=True)
def shipped_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No site model directory: the registry sees exactly what ships."""
    monkeypatch.delenv("PHOTOMARKER_MODEL_DIR", raising=False)
    clear_pipeline_cache()
    yield
    clear_pipeline_cache()


def test_the_shipped_package_loads_through_the_registry_with_its_codes_and_groups() -> None:
    registry = registry_for(None)
    (package,) = [p for p in registry.for_task("skin-tumour") if p.name == DEFAULT_NAME]
    loaded = registry.load(DEFAULT_NAME)
    manifest = loaded.manifest
    assert manifest.task == "skin-tumour" and manifest.training_data.source == "real"
    assert manifest.labels == LABELS
    assert [label.group for label in manifest.labels] == ["malignant"] * 3 + ["benign"] * 3
    assert manifest.calibration.temperature > 0 and manifest.abstention.max_spread is not None
    assert manifest.abstention.max_ood is not None, "whole photos and non-lesions must be able to abstain"
    assert manifest.evaluation.metrics["malignant_operating_threshold"] > 0
    # One float16 EfficientNet-Lite0 member: a small part of the 80 MB all shipped weights may take.
    assert package.weights_path.stat().st_size < 10_000_000
    assert loaded.network() is not None


def test_the_card_cites_pad_ufes_20_and_says_it_is_for_research_evaluation_only() -> None:
    card = (PACKAGE / "MODEL_CARD.md").read_text(encoding="utf-8")
    manifest = registry_for(None).get(DEFAULT_NAME).manifest
    for needed in ("Pacheco", "Data in Brief", "10.17632/zr7vgbcyr2.1", "CC BY 4.0", "Images modified"):
        assert needed in card
    assert "Research evaluation only — not for clinical decisions" in card
    assert manifest.evaluation.command in card
    assert "../shared/data/pad-ufes-20/labels.csv" in manifest.evaluation.command
    # No path of the machine that trained it: the card must read the same on any checkout.
    checkout = str(Path(__file__).resolve().parents[2].parent)
    assert checkout not in card and checkout not in (PACKAGE / "manifest.json").read_text()
    assert "Fitzpatrick" in card and "## Weighed with the patient's age and body site" in card
    auroc = manifest.evaluation.metrics["malignant_auroc"]
    if auroc < AIM_AUROC:
        assert "does not meet the aim" in card and manifest.reference_only
    else:
        assert meets_aim.__name__  # the aim is judged by code, never typed in


def test_the_classifier_gives_a_tumour_assessment_with_a_heat_map_on_a_real_crop() -> None:
    """The generic path: what ``installed_pipeline`` serves, and what the skin pipeline runs per crop."""
    loaded = registry_for(None).load(DEFAULT_NAME)
    options = EngineOptions(device="cpu", heatmaps=True)
    pipeline = build_analysis_pipeline("skin-tumour", loaded, execution_for(options), options)
    (outcome,) = pipeline.run([decode_photo(A_BCC.read_bytes(), limits=IntakeLimits())])
    _check_assessment(outcome.result)
    assert outcome.explanation is not None
    heat = np.asarray(outcome.explanation.cam)
    assert heat.shape == (manifest_size(), manifest_size()) and heat.min() >= 0 and heat.max() <= 1


def test_installed_pipeline_serves_skin_tumour_with_the_shipped_package() -> None:
    pipeline = installed_pipeline("skin-tumour", EngineOptions(device="cpu", heatmaps=False))
    assert pipeline is not None and pipeline.model.name == DEFAULT_NAME
    (outcome,) = pipeline.run([decode_photo(_rgba_cut_out(A_BCC), limits=IntakeLimits())])
    if isinstance(pipeline, ModelAnalysisPipeline):  # no lesion extractor installed: the crop itself
        _check_assessment(outcome.result)
    else:  # the skin pipeline cuts lesions out first; it may find none in an already-cut crop
        assert isinstance(outcome.result, TumourAssessment | AnalysisNotPerformed)
        if isinstance(outcome.result, TumourAssessment):
            _check_assessment(outcome.result)


def _check_assessment(result: object) -> None:
    assert isinstance(result, TumourAssessment)
    assert 0.0 <= result.malignancy_probability <= 1.0
    assert len(result.types) == len(CLASSES)
    assert sum(t.probability for t in result.types) == pytest.approx(1.0, abs=1e-4)
    malignant = {label.code for label in LABELS if label.group == "malignant"}
    assert result.malignancy_probability == pytest.approx(
        sum(t.probability for t in result.types if t.concept.code in malignant), abs=1e-6
    )


def _rgba_cut_out(path: Path) -> bytes:
    """The crop with its black surround as transparency, as lesion extraction would hand it over."""
    pixels = np.asarray(Image.open(path).convert("RGB"))
    alpha = np.where(pixels.max(axis=2) > 12, 255, 0).astype(np.uint8)
    return _png(Image.fromarray(np.dstack([pixels, alpha]), "RGBA"))


def manifest_size() -> int:
    return registry_for(None).get(DEFAULT_NAME).manifest.input.size


def test_when_the_rotations_disagree_it_abstains_and_says_so() -> None:
    # The manifest's spread threshold, tightened: the four rotations never agree to 1e-9.
    loaded = registry_for(None).load(DEFAULT_NAME)
    options = EngineOptions(device="cpu", heatmaps=False, max_spread=1e-9)
    pipeline = build_analysis_pipeline("skin-tumour", loaded, execution_for(options), options)
    (outcome,) = pipeline.run([decode_photo(A_BCC.read_bytes(), limits=IntakeLimits())])
    assert isinstance(outcome.result, TumourAssessment)
    assert outcome.result.abstention is not None and "disagree" in outcome.result.abstention.reason
    assert outcome.result.abstention.ood_score is not None  # the OOD score is computed alongside


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_evaluate_scores_the_shipped_model_by_default_on_a_small_subset(
    real_subset: Callable[[int], Path],
) -> None:
    data = real_subset(2)
    result = CliRunner().invoke(
        main,
        ["evaluate", "tumour", "--data", str(data), "--json", "--resamples", "100"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["model"] == DEFAULT_NAME and out["n"] == 12
    for key in ("auroc", "sensitivity", "specificity", "balanced_accuracy"):
        assert set(out[key]) == {"value", "low", "high"}
    manifest = registry_for(None).get(DEFAULT_NAME).manifest
    assert out["operating_threshold"] == manifest.evaluation.metrics["malignant_operating_threshold"]
    assert set(out["per_fitzpatrick"]) <= {"1", "2", "3", "4", "5", "6", "unknown"}
