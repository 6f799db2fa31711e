"""Steps 3–4 of the skin analysis: a task's network on the lesion crops, and their results
aggregated to one result for the photo.

- TIS: the most severe lesion (highest expected total), as a dermatologist scores TIS on the
  worst representative lesion;
- classifier panels (AD vs complications, diagnosis): the mean of the lesions' probabilities
  weighted by lesion area;
- tumour: the most suspicious lesion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from models.analysis_outcome import AnalysisOutcome
from models.engine.execution import Execution, synchronise
from models.engine.gradcam import ActivationMap
from models.engine.options import EngineOptions
from models.engine.stages import PostProcess, Predict, Prediction, PreparedNetwork, PreProcess, RawOutputs
from models.engine.tta import plan_from
from models.intake import DecodedPhoto
from models.manifest import ModelManifest
from models.model_stages import abstention_limits
from models.registry import LoadedModel
from models.results import (
    Abstention,
    AnalysisName,
    ClassProbability,
    ConditionProbabilities,
    TisScore,
    TumourAssessment,
)
from models.skin.findings import SkinFindings
from models.skin.lesions import Box, FoundLesion


@dataclass(frozen=True, eq=False)
class CropPrediction:
    prediction: Prediction
    levels: np.ndarray | None  # ordinal: (items, levels) mean probabilities


class CropModel:
    """A crop network served through the engine's stages (TTA, calibration, abstention, Grad-CAM)."""

    def __init__(
        self, analysis: AnalysisName, loaded: LoadedModel, execution: Execution, options: EngineOptions
    ) -> None:
        self.analysis = analysis
        self.manifest = loaded.manifest
        self.execution = execution
        manifest = loaded.manifest
        network = PreparedNetwork(loaded.network(), execution)
        plan = plan_from(manifest.tta, views=options.view_count)
        self.pre = PreProcess(manifest.input, plan, execution)
        self.predict_stage = Predict(network, manifest, explain=options.heatmaps)
        self.limits = abstention_limits(manifest, options, len(plan) * len(network.runners))
        self.post = (
            PostProcess(manifest, self.limits, network.ood) if manifest.output.kind == "classifier" else None
        )
        self.batch_size = options.batch_size

    def predict(self, crops: Sequence[DecodedPhoto]) -> list[CropPrediction]:
        out: list[CropPrediction] = []
        for start in range(0, len(crops), self.batch_size):
            chunk = crops[start : start + self.batch_size]
            raw = self.predict_stage(self.pre(chunk))
            if self.post is not None:
                out.extend(CropPrediction(p, None) for p in self.post(raw))
            else:
                out.extend(self._ordinal(raw))
        synchronise(self.execution)
        return out

    def _ordinal(self, raw: RawOutputs) -> list[CropPrediction]:
        manifest = self.manifest
        levels = manifest.output.levels or 4
        items = len(manifest.labels)
        m, k, n, _ = raw.outputs.shape
        probabilities = torch.softmax(
            raw.outputs.view(m, k, n, items, levels) / manifest.calibration.temperature, -1
        )
        scale = torch.arange(levels, dtype=torch.float32)
        expected_total = (probabilities * scale).sum(-1).sum(-1)  # (M, K, N)
        mean = probabilities.mean(dim=(0, 1))  # (N, items, levels)
        spread = expected_total.reshape(m * k, n).std(0, unbiased=False)
        out = []
        for index in range(n):
            explanation = (
                ActivationMap(raw.cams[index].numpy(), raw.boxes[index]) if raw.cams is not None else None
            )
            abstention = None
            limit = self.limits.max_spread
            if limit is not None and float(spread[index]) > limit:
                abstention = Abstention(
                    reason="the rotated and flipped views (and ensemble members) disagree "
                    f"(threshold {limit:.3g})",
                    spread=float(spread[index]),
                )
            prediction = Prediction(
                probabilities=tuple(float(p) for p in mean[index].flatten()),
                value=float(expected_total.mean(dim=(0, 1))[index]),
                spread=float(spread[index]),
                ood_score=None,
                abstention=abstention,
                explanation=explanation,
            )
            out.append(CropPrediction(prediction, mean[index].numpy()))
        return out

    def aggregate(
        self, findings: SkinFindings, lesions: Sequence[FoundLesion], predictions: Sequence[CropPrediction]
    ) -> AnalysisOutcome:
        site = (
            findings.body_part.concept() if findings.body_part is not None and not findings.not_skin else None
        )
        if self.analysis == "tis":
            return self._tis(site, lesions, predictions)
        weights = np.array([lesion.area for lesion in lesions], dtype=np.float64)
        probabilities = np.array([p.prediction.probabilities or () for p in predictions], dtype=np.float64)
        if self.analysis == "skin-tumour":
            malignant = np.array([label.group == "malignant" for label in self.manifest.labels])
            worst = int(np.argmax(probabilities[:, malignant].sum(1)))
            chosen = probabilities[worst]
            explanation = _in_photo(predictions[worst].prediction.explanation, lesions[worst].box)
            classes = _classes(self.manifest, chosen)
            result: TumourAssessment | ConditionProbabilities = TumourAssessment(
                malignancy_probability=float(chosen[malignant].sum()),
                types=classes,
                abstention=predictions[worst].prediction.abstention,
                body_site=site,
                lesion_count=len(lesions),
            )
            return AnalysisOutcome(result, explanation)
        mean = (probabilities * weights[:, None]).sum(0) / weights.sum()
        largest = int(np.argmax(weights))
        panel: Literal["skin-condition", "skin-diagnosis"] = (
            "skin-diagnosis" if self.analysis == "skin-diagnosis" else "skin-condition"
        )
        result = ConditionProbabilities(
            classes=_classes(self.manifest, mean),
            abstention=predictions[largest].prediction.abstention,
            body_site=site,
            panel=panel,
            lesion_count=len(lesions),
        )
        return AnalysisOutcome(
            result, _in_photo(predictions[largest].prediction.explanation, lesions[largest].box)
        )

    def _tis(
        self, site: object, lesions: Sequence[FoundLesion], predictions: Sequence[CropPrediction]
    ) -> AnalysisOutcome:
        worst = int(np.argmax([p.prediction.value or 0.0 for p in predictions]))
        levels = predictions[worst].levels
        items = [int(np.argmax(row)) for row in levels] if levels is not None else [0, 0, 0]
        score = TisScore(
            erythema=items[0],
            oedema_papulation=items[1],
            excoriation=items[2],
            body_site=site,  # type: ignore[arg-type]
            lesion_count=len(lesions),
            abstention=predictions[worst].prediction.abstention,
        )
        return AnalysisOutcome(
            score, _in_photo(predictions[worst].prediction.explanation, lesions[worst].box)
        )


def _classes(manifest: ModelManifest, probabilities: np.ndarray) -> tuple[ClassProbability, ...]:
    pairs = [
        ClassProbability(label.concept(), float(p), label.decision_weight)
        for label, p in zip(manifest.labels, probabilities, strict=True)
    ]
    return tuple(sorted(pairs, key=lambda c: c.probability, reverse=True))


def _in_photo(explanation: ActivationMap | None, crop_box: Box) -> ActivationMap | None:
    """A crop's Grad-CAM placed on the whole photo: the map's box shifted by the crop's corner."""
    if explanation is None:
        return None
    left, top, right, bottom = explanation.box
    x0, y0 = crop_box[0], crop_box[1]
    return ActivationMap(explanation.cam, (left + x0, top + y0, right + x0, bottom + y0))
