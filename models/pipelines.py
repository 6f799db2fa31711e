"""Which analyses each photo kind gets, and the pipelines installed to run them.

Every model's data path is ``pre_process → predict → post_process`` (``models.model_stages``),
then — for a clinical analysis — ``interpret``, written out here, which puts the prediction in
the clinic's terms (``ConditionProbabilities``, ``TumourAssessment``, ``HbEstimate``). Hb and
the skin analyses have data paths of their own (``models.hb.pipeline``, ``models.skin.pipeline``),
built on the same pieces. An analysis runs when a model package for its task is installed (see
``models.registry``) or when code registers a custom pipeline for it (e.g. a colour-feature
regressor that is not a CNN). With neither, it is reported as not performed, never scored.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from models.analysis_outcome import AnalysisOutcome, AnalysisPipeline, ModelResult
from models.engine.execution import Execution, synchronise
from models.engine.options import EngineOptions
from models.engine.stages import Pipeline, Prediction, StageTimings
from models.errors import InvalidModelManifest
from models.hb.pipeline import hb_pipeline_factory
from models.intake import DecodedPhoto
from models.manifest import ModelManifest
from models.model_stages import abstention_limits, build_model_pipeline, execution_for, model_stages
from models.registry import LoadedModel, registry_for
from models.results import (
    AnalysisName,
    ClassProbability,
    ConditionProbabilities,
    HbEstimate,
    ModelInfo,
    PhotoKind,
    TumourAssessment,
)
from models.skin.pipeline import (
    clear_skin_cache,
    condition_pipeline_factory,
    diagnosis_pipeline_factory,
    tis_pipeline_factory,
    tumour_pipeline_factory,
)

# Defined in their own modules (the pipelines below build on them too) and used from here.
__all__ = [
    "ANALYSES_BY_KIND",
    "CUSTOM_PIPELINES",
    "HB_INTERVAL_LEVEL",
    "RESULT_BUILDERS",
    "AnalysisOutcome",
    "AnalysisPipeline",
    "Interpret",
    "ModelAnalysisPipeline",
    "ModelResult",
    "PipelineFactory",
    "ResultBuilder",
    "abstention_limits",
    "build_analysis_pipeline",
    "build_model_pipeline",
    "check_fits_analysis",
    "clear_pipeline_cache",
    "condition_result",
    "execution_for",
    "hb_result",
    "installed_pipeline",
    "model_stages",
    "register_pipeline",
    "tumour_result",
]

log = logging.getLogger(__name__)

ANALYSES_BY_KIND: Mapping[PhotoKind, tuple[AnalysisName, ...]] = {
    "skin": ("tis", "skin-condition", "skin-diagnosis", "skin-tumour"),
    "conjunctiva": ("hb",),
}

HB_INTERVAL_LEVEL: Final = 0.95
_Z_95: Final = 1.959963984540054


@dataclass(frozen=True, eq=False)
class ModelAnalysisPipeline:
    """An analysis served by one model package through the engine's stages."""

    analysis: AnalysisName
    model: ModelInfo
    stages: Pipeline

    def run(
        self, photos: Sequence[DecodedPhoto], timings: StageTimings | None = None
    ) -> list[AnalysisOutcome]:
        return self.stages(photos, timings)


# --- interpret: predictions in the clinic's terms ------------------------------------------------

ResultBuilder = Callable[[Prediction, ModelManifest], ModelResult]


def condition_result(prediction: Prediction, manifest: ModelManifest) -> ConditionProbabilities:
    probabilities = prediction.probabilities or ()
    classes = sorted(
        (
            ClassProbability(label.concept(), p, label.decision_weight)
            for label, p in zip(manifest.labels, probabilities, strict=True)
        ),
        key=lambda item: item.probability,
        reverse=True,
    )
    return ConditionProbabilities(classes=tuple(classes), abstention=prediction.abstention)


def tumour_result(prediction: Prediction, manifest: ModelManifest) -> TumourAssessment:
    probabilities = prediction.probabilities or ()
    malignant = sum(
        p for label, p in zip(manifest.labels, probabilities, strict=True) if label.group == "malignant"
    )
    types = condition_result(prediction, manifest).classes
    return TumourAssessment(malignancy_probability=malignant, types=types, abstention=prediction.abstention)


def hb_result(prediction: Prediction, manifest: ModelManifest) -> HbEstimate:
    # Prediction interval: validation residuals and this photo's TTA/ensemble spread, added in quadrature.
    residual = manifest.calibration.residual_std or 0.0
    half_width = _Z_95 * math.hypot(residual, prediction.spread)
    value = prediction.value if prediction.value is not None else float("nan")
    return HbEstimate(
        g_dl=value,
        low=value - half_width,
        high=value + half_width,
        interval_level=HB_INTERVAL_LEVEL,
        abstention=prediction.abstention,
    )


# TIS has no builder: it needs lesion detection and three ordinal heads, not one Prediction.
RESULT_BUILDERS: Final[dict[AnalysisName, ResultBuilder]] = {
    "skin-condition": condition_result,
    "skin-tumour": tumour_result,
    "hb": hb_result,
}


def check_fits_analysis(manifest: ModelManifest, analysis: AnalysisName) -> None:
    """Refuse a package whose outputs cannot honestly fill the analysis's result."""
    expected = "regressor" if analysis == "hb" else "classifier"
    if manifest.output.kind != expected:
        raise InvalidModelManifest(f"{manifest.name}: {analysis} needs a {expected}")
    if analysis == "hb" and (manifest.output.unit != "g/dL" or manifest.calibration.residual_std is None):
        raise InvalidModelManifest(f"{manifest.name}: hb needs unit g/dL and calibration.residual_std")
    if analysis == "skin-tumour" and not any(label.group == "malignant" for label in manifest.labels):
        raise InvalidModelManifest(f"{manifest.name}: skin-tumour labels need group 'malignant' on some")


class Interpret:
    """Predictions → the analysis's result type, keeping each photo's explanation beside it."""

    name = "interpret"

    def __init__(self, builder: ResultBuilder, manifest: ModelManifest) -> None:
        self.builder = builder
        self.manifest = manifest

    def __call__(self, predictions: Sequence[Prediction]) -> list[AnalysisOutcome]:
        return [AnalysisOutcome(self.builder(p, self.manifest), p.explanation) for p in predictions]


# --- composition: the one place each data path is written out ------------------------------------
# The generic model path (pre_process → predict → post_process) is ``models.model_stages``.


def build_analysis_pipeline(
    analysis: AnalysisName, loaded: LoadedModel, execution: Execution, options: EngineOptions
) -> ModelAnalysisPipeline:
    """Photos → the analysis's results: the model stages, then interpret."""
    manifest = loaded.manifest
    check_fits_analysis(manifest, analysis)
    stages = [*model_stages(loaded, execution, options), Interpret(RESULT_BUILDERS[analysis], manifest)]
    pipeline = Pipeline(stages, batch_size=options.batch_size, sync=lambda: synchronise(execution))
    return ModelAnalysisPipeline(analysis, loaded.info, pipeline)


# --- what is installed ---------------------------------------------------------------------------

PipelineFactory = Callable[[EngineOptions], AnalysisPipeline | None]
# Analyses whose packages need their own data path (not the generic square-RGB one).
CUSTOM_PIPELINES: Final[dict[AnalysisName, PipelineFactory]] = {
    "hb": hb_pipeline_factory,  # localise the conjunctiva, colour + CNN blend
    # Skin: body part and lesion extraction first, then each task's network on the lesion crops.
    "tis": tis_pipeline_factory,
    "skin-condition": condition_pipeline_factory,
    "skin-diagnosis": diagnosis_pipeline_factory,
    "skin-tumour": tumour_pipeline_factory,
}
_REGISTERED: dict[AnalysisName, PipelineFactory] = {}
_BUILT: dict[tuple[AnalysisName, EngineOptions], AnalysisPipeline | None] = {}
_LOCK = threading.Lock()


def register_pipeline(analysis: AnalysisName, factory: PipelineFactory) -> None:
    """Serve ``analysis`` with custom code (takes precedence over model packages for that analysis)."""
    with _LOCK:
        _REGISTERED[analysis] = factory
        for key in [key for key in _BUILT if key[0] == analysis]:
            del _BUILT[key]


def clear_pipeline_cache() -> None:
    """Forget built pipelines (tests that swap model directories)."""
    with _LOCK:
        _BUILT.clear()
    clear_skin_cache()
    registry_for.cache_clear()
    execution_for.cache_clear()


def installed_pipeline(
    analysis: AnalysisName, options: EngineOptions | None = None
) -> AnalysisPipeline | None:
    """The pipeline for ``analysis`` (built once per process and options), or None if none is installed.

    A registered (or declared custom) factory is asked first; when it returns None, the generic
    path serves any package filed under the analysis.
    """
    options = options or EngineOptions()
    key = (analysis, options)
    with _LOCK:
        if key in _BUILT:
            return _BUILT[key]
        factory = _REGISTERED.get(analysis, CUSTOM_PIPELINES.get(analysis))
    pipeline = factory(options) if factory is not None else None
    if pipeline is None:
        pipeline = _from_registry(analysis, options)
    with _LOCK:
        return _BUILT.setdefault(key, pipeline)


def _from_registry(analysis: AnalysisName, options: EngineOptions) -> AnalysisPipeline | None:
    if analysis not in RESULT_BUILDERS:
        return None
    registry = registry_for(options.model_dir)
    packages = registry.for_task(analysis)
    if not packages:
        return None
    if len(packages) > 1:
        log.info(
            "%s: using %s; also installed: %s", analysis, packages[0].name, [p.name for p in packages[1:]]
        )
    loaded = registry.load(packages[0].name)
    return build_analysis_pipeline(analysis, loaded, execution_for(options), options)
