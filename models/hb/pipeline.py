"""The conjunctiva → Hb analysis as the worker runs it: localise → pre_process → predict → post_process.

- ``pre_process`` (:class:`HbPreProcess`): find the palpebral conjunctiva (a pre-cropped strip's
  alpha mask, else the segmentation network, with the classical localiser as its fallback —
  see ``models.hb.localise``), cut the strip, compute its colour features and
  the CNN input (masked 64×128 strip + its mirror image, the test-time views).
- ``predict``: the engine's :class:`~models.engine.stages.Predict` on the CNN members, with
  Grad-CAM from the same pass.
- ``post_process``: the engine's :class:`~models.engine.stages.PostProcess` (member × view
  mean and spread, OOD score, abstention), then :class:`HbInterpret`: the colour regressor's
  estimate, the equal-weight blend, and the conformal prediction interval → ``HbEstimate``.

The package is found through the model registry like any other (task ``hb``), and its
weights are hash-checked there; ``models.pipelines`` serves the ``hb`` analysis with
:func:`hb_pipeline_factory`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import torch

from models.analysis_outcome import AnalysisOutcome
from models.engine.execution import Execution, synchronise, to_device
from models.engine.options import EngineOptions
from models.engine.stages import (
    Pipeline,
    PostProcess,
    Predict,
    Prediction,
    PreparedBatch,
    PreparedNetwork,
    RawOutputs,
    StageTimings,
)
from models.engine.tta import TtaPlan, View
from models.errors import InvalidModelManifest
from models.hb.cnn import INPUT_HEIGHT, INPUT_WIDTH
from models.hb.features import TooLittleTissue, colour_features
from models.hb.localise import Localisation, conjunctiva_strip
from models.hb.model import HbConjunctivaNet
from models.hb.segmenter import ConjunctivaSegmenter, installed_segmenter
from models.hb.strip import strip_tensor
from models.intake import DecodedPhoto
from models.model_stages import abstention_limits, execution_for
from models.registry import LoadedModel, registry_for
from models.results import AnalysisName, AnalysisNotPerformed, HbEstimate, ModelInfo

ARCHITECTURE: Final = "models.hb.model:hb_conjunctiva_net"
# Every "nothing found" abstention ends with this, so scoring code can tell it from a real estimate.
NO_ESTIMATE: Final = "no estimate was made from this photo"
# The only geometric test-time view that keeps the lower half of the lid below: a mirror image.
# ``PHOTOMARKER_INFERENCE_TTA_VIEWS`` 1 keeps the photo alone; 2 or more, both.
HB_TTA: Final = TtaPlan((View(), View("hflip")))


@dataclass(frozen=True, eq=False)
class HbBatch:
    """One chunk of photos after localisation: the CNN batch for those where tissue was found."""

    count: int
    found: tuple[int, ...]  # indices (into the chunk) of photos with a usable strip
    features: np.ndarray  # (len(found), F) colour features
    cnn: PreparedBatch | None
    failures: dict[int, str]  # index → why no estimate can be made


class HbPreProcess:
    name = "pre_process"

    def __init__(self, plan: TtaPlan, execution: Execution, segmenter: ConjunctivaSegmenter | None) -> None:
        self.plan = plan
        self.execution = execution
        self.segmenter = segmenter

    def __call__(self, photos: Sequence[DecodedPhoto]) -> HbBatch:
        found: list[int] = []
        features: list[np.ndarray] = []
        tensors: list[np.ndarray] = []
        boxes: list[tuple[int, int, int, int]] = []
        failures: dict[int, str] = {}
        for index, photo in enumerate(photos):
            strip, where = conjunctiva_strip(photo, self.segmenter)
            if strip is None:
                failures[index] = where.reason or "no palpebral conjunctiva was found"
                continue
            try:
                features.append(colour_features(strip))
            except TooLittleTissue:
                failures[index] = "too little of the conjunctiva is free of glare and shadow"
                continue
            found.append(index)
            tensors.append(strip_tensor(strip, INPUT_HEIGHT, INPUT_WIDTH))
            boxes.append(_box_of(where, photo))
        cnn = None
        if found:
            host = torch.from_numpy(np.stack(tensors))
            x = to_device(host, self.execution)
            views = [x.flip(-1) if view.geometry == "hflip" else x for view in self.plan.views]
            cnn = PreparedBatch(torch.cat(views), len(found), tuple(boxes), self.plan)
        return HbBatch(len(photos), tuple(found), np.asarray(features), cnn, failures)


def _box_of(where: Localisation, photo: DecodedPhoto) -> tuple[int, int, int, int]:
    return where.box or (0, 0, *photo.pixels.size)


@dataclass(frozen=True, eq=False)
class HbRaw:
    batch: HbBatch
    predictions: list[Prediction]


class HbPredict:
    """The engine's Predict and PostProcess on the CNN members, for the photos with a strip."""

    name = "predict"

    def __init__(self, predict: Predict, post: PostProcess) -> None:
        self.predict = predict
        self.post = post

    def __call__(self, batch: HbBatch) -> HbRaw:
        if batch.cnn is None:
            return HbRaw(batch, [])
        raw: RawOutputs = self.predict(batch.cnn)
        return HbRaw(batch, self.post(raw))


class HbInterpret:
    """CNN prediction + colour estimate → the blended Hb with its conformal interval."""

    name = "post_process"

    def __init__(self, member: HbConjunctivaNet, level: float) -> None:
        self.member = member
        self.level = level
        self.half_width = float(member.interval_half_width)
        self.training_mean = float(member.cnn.target_mean)

    def __call__(self, raw: HbRaw) -> list[AnalysisOutcome]:
        batch = raw.batch
        colour = self.member.colour_estimate(batch.features) if batch.found else np.zeros(0)
        outcomes: dict[int, AnalysisOutcome] = {}
        for slot, (index, prediction) in enumerate(zip(batch.found, raw.predictions, strict=True)):
            cnn = prediction.value if prediction.value is not None else float("nan")
            value = float(self.member.blend(np.asarray([cnn]), colour[slot : slot + 1])[0])
            estimate = HbEstimate(
                g_dl=round(value, 2),
                low=round(value - self.half_width, 2),
                high=round(value + self.half_width, 2),
                interval_level=self.level,
                abstention=prediction.abstention,
            )
            outcomes[index] = AnalysisOutcome(estimate, prediction.explanation)
        for index, reason in batch.failures.items():
            outcomes[index] = AnalysisOutcome(self._not_found(reason))
        return [outcomes[i] for i in range(batch.count)]

    def _not_found(self, reason: str) -> AnalysisNotPerformed:
        return AnalysisNotPerformed(
            analysis="hb", reason=f"No palpebral conjunctiva was found in the photo ({reason}); {NO_ESTIMATE}"
        )


@dataclass(frozen=True, eq=False)
class HbAnalysisPipeline:
    """What the worker runs for ``hb``: photos in, one ``AnalysisOutcome`` (``HbEstimate``) each."""

    model: ModelInfo
    stages: Pipeline
    analysis: AnalysisName = "hb"

    def run(
        self, photos: Sequence[DecodedPhoto], timings: StageTimings | None = None
    ) -> list[AnalysisOutcome]:
        return self.stages(photos, timings)


def is_hb_package(loaded: LoadedModel) -> bool:
    return loaded.manifest.architecture.name == ARCHITECTURE


def build_hb_pipeline(
    loaded: LoadedModel, options: EngineOptions, *, level: float = 0.95
) -> HbAnalysisPipeline:
    """The Hb pipeline for a loaded package whose architecture is the Hb model."""
    manifest = loaded.manifest
    if not is_hb_package(loaded):
        raise InvalidModelManifest(f"{manifest.name}: not an Hb conjunctiva model ({ARCHITECTURE})")
    execution = execution_for(options)
    network = loaded.network()
    prepared = PreparedNetwork(network, execution)
    first = network.members[0]
    if not isinstance(first, HbConjunctivaNet):
        raise InvalidModelManifest(f"{manifest.name}: members are not HbConjunctivaNet")
    plan = HB_TTA.prefix(options.view_count)
    limits = abstention_limits(manifest, options, len(plan) * len(prepared.runners))
    stages = Pipeline(
        [
            HbPreProcess(plan, execution, installed_segmenter(options.model_dir)),
            HbPredict(
                Predict(prepared, manifest, explain=options.heatmaps),
                PostProcess(manifest, limits, prepared.ood),
            ),
            HbInterpret(first, level),
        ],
        batch_size=options.batch_size,
        sync=lambda: synchronise(execution),
    )
    return HbAnalysisPipeline(loaded.info, stages)


def hb_pipeline_factory(options: EngineOptions) -> HbAnalysisPipeline | None:
    """The installed Hb package (a site's own directory first), or None when there is none."""
    registry = registry_for(options.model_dir)
    for package in registry.for_task("hb"):
        if package.manifest.architecture.name == ARCHITECTURE:
            return build_hb_pipeline(registry.load(package.name), options)
    return None
