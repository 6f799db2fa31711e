"""Which analyses each photo kind gets, and the pipelines installed to run them.

This is where every model's data path is written out, top to bottom (:func:`model_stages`):
``pre_process → predict → post_process``, then — for a clinical analysis — ``interpret``, which
puts the prediction in the clinic's terms (``ConditionProbabilities``, ``TumourAssessment``,
``HbEstimate``). An analysis runs when a model package for its task is installed (see
``models.registry``) or when code registers a custom pipeline for it (e.g. a colour-feature
regressor that is not a CNN). With neither, it is reported as not performed, never scored.
"""

from __future__ import annotations

import importlib
import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, Protocol

from models.engine.execution import Execution, resolve_execution, synchronise
from models.engine.gradcam import ActivationMap
from models.engine.options import EngineOptions
from models.engine.stages import (
    AbstentionLimits,
    Pipeline,
    PostProcess,
    Predict,
    Prediction,
    PreparedNetwork,
    PreProcess,
    Stage,
    StageTimings,
)
from models.engine.tta import plan_from
from models.errors import InvalidModelManifest
from models.intake import DecodedPhoto
from models.manifest import ModelManifest
from models.registry import LoadedModel, registry_for
from models.results import (
    AnalysisName,
    AnalysisNotPerformed,
    ClassProbability,
    ConditionProbabilities,
    HbEstimate,
    ModelInfo,
    PhotoKind,
    TisScore,
    TumourAssessment,
)

log = logging.getLogger(__name__)

ANALYSES_BY_KIND: Mapping[PhotoKind, tuple[AnalysisName, ...]] = {
    "skin": ("tis", "skin-condition", "skin-diagnosis", "skin-tumour"),
    "conjunctiva": ("hb",),
}

ModelResult = TisScore | ConditionProbabilities | TumourAssessment | HbEstimate
HB_INTERVAL_LEVEL: Final = 0.95
_Z_95: Final = 1.959963984540054


@dataclass(frozen=True, eq=False)
class AnalysisOutcome:
    """One photo's result for one analysis, and the map of what drove it (when drawn).

    ``AnalysisNotPerformed`` when the pipeline could not even look (e.g. no conjunctiva in the
    photo): said plainly rather than filled with a value the photo did not give.
    """

    result: ModelResult | AnalysisNotPerformed
    explanation: ActivationMap | None = None


class AnalysisPipeline(Protocol):
    """What a worker runs for one analysis: a batch of photos in, one outcome per photo out."""

    @property
    def analysis(self) -> AnalysisName: ...

    @property
    def model(self) -> ModelInfo: ...

    def run(
        self, photos: Sequence[DecodedPhoto], timings: StageTimings | None = None
    ) -> list[AnalysisOutcome]: ...


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
            ClassProbability(label.concept(), p)
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


def abstention_limits(manifest: ModelManifest, options: EngineOptions) -> AbstentionLimits:
    """The manifest's calibrated thresholds unless the settings override them."""
    policy = manifest.abstention
    return AbstentionLimits(
        max_spread=options.max_spread if options.max_spread is not None else policy.max_spread,
        max_ood=options.max_ood if options.max_ood is not None else policy.max_ood,
    )


def model_stages(loaded: LoadedModel, execution: Execution, options: EngineOptions) -> list[Stage[Any, Any]]:
    """Every model's data path: pre_process → predict → post_process."""
    manifest = loaded.manifest
    network = PreparedNetwork(loaded.network(), execution)
    return [
        PreProcess(manifest.input, plan_from(manifest.tta, enabled=options.tta), execution),
        Predict(network, manifest, explain=options.heatmaps),
        PostProcess(manifest, abstention_limits(manifest, options), network.ood),
    ]


def build_model_pipeline(loaded: LoadedModel, execution: Execution, options: EngineOptions) -> Pipeline:
    """Photos → :class:`Prediction` s (no clinical result): reference models, the CLI, the benchmark."""
    return Pipeline(
        model_stages(loaded, execution, options),
        batch_size=options.batch_size,
        sync=lambda: synchronise(execution),
    )


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
# Analyses whose packages need their own data path (not the generic square-RGB one), as
# "module:factory"; imported on first use so a worker without that package pays nothing.
CUSTOM_PIPELINES: Final[dict[AnalysisName, str]] = {
    "hb": "models.hb.pipeline:hb_pipeline_factory",  # localise the conjunctiva, colour + CNN blend
    # Skin: body part and lesion extraction first, then each task's network on the lesion crops.
    "tis": "models.skin.pipeline:tis_pipeline_factory",
    "skin-condition": "models.skin.pipeline:condition_pipeline_factory",
    "skin-diagnosis": "models.skin.pipeline:diagnosis_pipeline_factory",
    "skin-tumour": "models.skin.pipeline:tumour_pipeline_factory",
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
    from models.skin.pipeline import clear_skin_cache  # imports this module: not at the top

    clear_skin_cache()
    registry_for.cache_clear()
    execution_for.cache_clear()


@lru_cache(maxsize=4)
def execution_for(options: EngineOptions) -> Execution:
    return resolve_execution(options.device, threads=options.threads, compile=options.compile)


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
        factory = _REGISTERED.get(analysis)
    if factory is None and analysis in CUSTOM_PIPELINES:
        factory = _import_factory(CUSTOM_PIPELINES[analysis])
    pipeline = factory(options) if factory is not None else None
    if pipeline is None:
        pipeline = _from_registry(analysis, options)
    with _LOCK:
        return _BUILT.setdefault(key, pipeline)


def _import_factory(target: str) -> PipelineFactory:
    module_name, _, name = target.partition(":")
    factory: PipelineFactory = getattr(importlib.import_module(module_name), name)
    return factory


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
