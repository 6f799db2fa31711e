"""The worker's path through the engine: quality gate, pipelines by analysis, heat maps, abstention
in the Observation, batching across requests, and "not performed" when no model is installed."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageFilter

from fhir_mappings.bundle import build_result_bundle
from fhir_mappings.context import Requester, ResultContext
from fhir_mappings.media import build_file_media
from fhir_mappings.observations import analysis_of
from fhir_mappings.photo import Photo
from models import pipelines
from models import registry as registry_module
from models.engine.options import EngineOptions
from models.engine.reference_train import NAME as REFERENCE
from models.engine.stages import StageTimings
from models.errors import PhotomarkerError
from models.intake import DecodedPhoto, strip_to_bytes
from models.pipelines import ANALYSES_BY_KIND, AnalysisOutcome
from models.registry import registry_for
from models.results import (
    AnalysisName,
    ConditionProbabilities,
    ModelInfo,
    QualityCheckName,
    TumourAssessment,
)
from plugin.settings import load_settings
from tests.engine.conftest import repackaged_reference
from tests.models.conftest import textured
from workers.analysis import PhotoRequest, analyse_photo, analyse_photos


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def good_skin() -> bytes:
    return jpeg(textured((205, 158, 132), (1200, 900), seed=1))


@pytest.fixture
def only_test_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Hide the shipped packages (skin, tumour, Hb): these tests watch the engine's generic path."""
    empty = tmp_path / "shipped"
    empty.mkdir()
    monkeypatch.setattr(registry_module, "SHIPPED_MODEL_DIR", empty)
    pipelines.clear_pipeline_cache()
    yield empty
    pipelines.clear_pipeline_cache()


@pytest.fixture
def condition_model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, only_test_packages: Path) -> Path:
    """A test-only package: the reference weights filed under the skin-condition analysis."""
    root = tmp_path / "models"
    repackaged_reference(root, "test-condition", task="skin-condition")
    monkeypatch.setenv("PHOTOMARKER_MODEL_DIR", str(root))
    return root


def test_the_reference_model_never_produces_a_result(good_skin: bytes) -> None:
    analysed = analyse_photo(good_skin, load_settings(), requested="skin")
    report = analysed.report
    assert report.quality.acceptable
    assert all(model.name != REFERENCE for model, _ in report.model_results)
    registry = registry_for(None)
    uninstalled = [a for a in ANALYSES_BY_KIND["skin"] if not registry.for_task(a)]
    not_performed = [item.analysis for item in report.not_performed]
    assert set(uninstalled) <= set(not_performed)
    # Every skin analysis either gave a result or says plainly why it did not.
    scored = {analysis_of(result) for _, result in report.model_results}
    assert sorted(scored | set(not_performed)) == sorted(ANALYSES_BY_KIND["skin"])
    assert all("no score was produced" in item.reason for item in report.not_performed)


def test_an_installed_classifier_gives_a_result_and_a_heat_map(
    condition_model_dir: Path, good_skin: bytes
) -> None:
    analysed = analyse_photo(good_skin, load_settings(), requested="skin")
    ((model, result),) = analysed.report.model_results
    assert isinstance(result, ConditionProbabilities)
    assert model.name == "test-condition" and model.reference_only
    assert sum(c.probability for c in result.classes) == pytest.approx(1.0, abs=1e-5)
    assert [item.analysis for item in analysed.report.not_performed] == [
        "tis",
        "skin-diagnosis",
        "skin-tumour",
    ]
    (heatmap,) = analysed.heatmaps
    assert heatmap.analysis == "skin-condition" and heatmap.model == model
    assert Image.open(io.BytesIO(heatmap.png)).size == (512, 384)

    bundle = file_bundle(good_skin, analysed)
    media = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Media"]
    assert any("Heat map" in m["content"].get("title", "") for m in media)


def test_an_abstention_is_said_plainly_in_the_observation(
    condition_model_dir: Path, good_skin: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHOTOMARKER_ABSTAIN_MAX_SPREAD", "0.0000001")
    analysed = analyse_photo(good_skin, load_settings(), requested="skin")
    ((_, result),) = analysed.report.model_results
    assert isinstance(result, ConditionProbabilities) and result.abstention is not None
    bundle = file_bundle(good_skin, analysed)
    (observation,) = [
        e["resource"]
        for e in bundle["entry"]
        if any("abstained" in i.get("text", "") for i in e["resource"].get("interpretation", []))
    ]
    assert "Do not rely on" in " ".join(n["text"] for n in observation["note"])


def file_bundle(data: bytes, analysed: object) -> dict[str, Any]:
    import hashlib

    from workers.analysis import AnalysedPhoto

    assert isinstance(analysed, AnalysedPhoto)
    ctx = ResultContext.for_file(
        Photo(source=None, subject="Patient/p1", content_type=None, data=data),
        file_sha256=hashlib.sha256(data).hexdigest(),
        canonical="https://photomarker.example.org/fhir",
        issued=datetime.now().astimezone(),
        software_version="0.0.0+test",
        requester=Requester(display="test"),
    )
    image, content_type = strip_to_bytes(analysed.decoded)
    media = build_file_media(ctx, image=image, content_type=content_type)
    return build_result_bundle(analysed.report, ctx, source_media=media, heatmaps=analysed.heatmaps)


FAKE_MODEL = ModelInfo("fake-tumour", "0", "Fake", "Tests", "f" * 64, True)


@dataclass
class RecordingPipeline:
    """A custom (non-CNN) pipeline registered for an analysis; records the batches it is given."""

    batches: list[int]
    analysis: AnalysisName = "skin-tumour"
    model: ModelInfo = FAKE_MODEL

    def run(
        self, photos: Sequence[DecodedPhoto], timings: StageTimings | None = None
    ) -> list[AnalysisOutcome]:
        self.batches.append(len(photos))
        return [AnalysisOutcome(TumourAssessment(0.1, ())) for _ in photos]


def test_photos_from_several_requests_go_through_a_pipeline_as_one_batch(
    good_skin: bytes, monkeypatch: pytest.MonkeyPatch, only_test_packages: Path
) -> None:
    recorder = RecordingPipeline([])
    monkeypatch.setitem(pipelines._REGISTERED, "skin-tumour", lambda options: recorder)
    requests = [
        PhotoRequest(good_skin, "skin"),
        PhotoRequest(b"not a photo", "skin"),
        PhotoRequest(good_skin, "skin"),
    ]
    first, refused, second = analyse_photos(requests, load_settings())
    assert isinstance(refused, PhotomarkerError) and refused.code == "undecodable-photo"
    assert recorder.batches == [2]
    for outcome in (first, second):
        assert not isinstance(outcome, PhotomarkerError)
        ((model, result),) = outcome.report.model_results
        assert model.name == "fake-tumour" and isinstance(result, TumourAssessment)


def test_the_pipeline_is_built_once_per_process(condition_model_dir: Path) -> None:
    options = EngineOptions.from_settings(load_settings())
    assert pipelines.installed_pipeline("skin-condition", options) is pipelines.installed_pipeline(
        "skin-condition", options
    )
    assert pipelines.installed_pipeline("tis", options) is None


# --- the quality gate, its thresholds from the settings ------------------------------------------


def codes_of(resource: dict[str, Any]) -> list[str]:
    return [coding["code"] for coding in resource.get("code", {}).get("coding", [])]


def dark(image: Image.Image) -> Image.Image:
    return image.point(lambda v: v // 8)


QUALITY_CASES = {
    QualityCheckName.BLUR: lambda: textured((205, 158, 132), (1200, 900), seed=2).filter(
        ImageFilter.GaussianBlur(6)
    ),
    QualityCheckName.EXPOSURE: lambda: dark(textured((205, 158, 132), (1200, 900), seed=3)),
    QualityCheckName.RESOLUTION: lambda: textured((205, 158, 132), (200, 150), seed=4),
    QualityCheckName.CONTENT: lambda: textured((70, 140, 60), (1200, 900), seed=5),  # grass, not skin
}


@pytest.mark.parametrize("reason", list(QUALITY_CASES), ids=lambda r: r.value)
def test_each_quality_reason_stops_the_models_and_lands_in_the_observation(
    condition_model_dir: Path, reason: QualityCheckName
) -> None:
    data = jpeg(QUALITY_CASES[reason]())
    analysed = analyse_photo(data, load_settings(), requested="skin")
    report = analysed.report
    assert reason in {check.name for check in report.quality.failed}
    assert report.model_results == () and report.not_performed == () and analysed.heatmaps == ()
    bundle = file_bundle(data, analysed)
    (quality,) = [e["resource"] for e in bundle["entry"] if codes_of(e["resource"]) == ["photo-quality"]]
    failed = {
        c["code"]["coding"][0]["code"]
        for c in quality["component"]
        if "Failed" in c["interpretation"][0]["text"]
    }
    assert f"photo-quality-{reason.value}" in failed


def test_quality_thresholds_come_from_the_settings(good_skin: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    assert analyse_photo(good_skin, load_settings(), requested="skin").report.quality.acceptable
    monkeypatch.setenv("PHOTOMARKER_QUALITY_MIN_SIDE_PX", "2000")
    verdict = analyse_photo(good_skin, load_settings(), requested="skin").report.quality
    assert [check.name for check in verdict.failed] == [QualityCheckName.RESOLUTION]


def test_a_custom_factory_that_declines_leaves_the_generic_path(
    condition_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(pipelines._REGISTERED, "skin-condition", lambda options: None)
    pipeline = pipelines.installed_pipeline("skin-condition", EngineOptions.from_settings(load_settings()))
    assert isinstance(pipeline, pipelines.ModelAnalysisPipeline)
    assert pipeline.model.name == "test-condition"
