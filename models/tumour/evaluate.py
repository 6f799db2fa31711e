"""Score an installed tumour package on a labelled CSV, through the engine's own stages."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.engine.execution import resolve_execution
from models.engine.options import EngineOptions
from models.engine.stages import Prediction
from models.intake import IntakeLimits, decode_photo
from models.model_stages import build_model_pipeline
from models.registry import LoadedModel
from models.tumour.dataset import load_samples
from models.tumour.package import ACK_THRESHOLD_KEY, THRESHOLD_KEY
from models.tumour.report import TumourReport, tumour_report


@dataclass(frozen=True)
class TumourEvaluation:
    model: str
    version: str
    report: TumourReport
    abstained: int

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "abstained": self.abstained,
            **self.report.to_json(),
        }


def evaluate_tumour(csv_path: Path, loaded: LoadedModel, *, n_resamples: int = 1000) -> TumourEvaluation:
    """Figures at the package's own operating point (abstentions still scored, and counted)."""
    samples = load_samples(csv_path)
    manifest = loaded.manifest
    options = EngineOptions(device="cpu", heatmaps=False)
    pipeline = build_model_pipeline(loaded, resolve_execution("cpu"), options)
    limits = IntakeLimits()
    predictions: list[Prediction] = []
    for start in range(0, len(samples), 64):
        photos = [decode_photo(s.path.read_bytes(), limits=limits) for s in samples[start : start + 64]]
        predictions += pipeline(photos)
    probabilities = np.array([p.probabilities for p in predictions], dtype=np.float64)
    # The package's own operating points: evaluating must not re-fit them on the data it scores.
    threshold = manifest.evaluation.metrics.get(THRESHOLD_KEY)
    ack_threshold = manifest.evaluation.metrics.get(ACK_THRESHOLD_KEY)
    report = tumour_report(
        probabilities,
        np.array([s.label for s in samples]),
        [s.patient_id for s in samples],
        [s.fitzpatrick for s in samples],
        threshold=threshold,
        ack_threshold=ack_threshold,
        decision_weights=np.array([label.decision_weight for label in manifest.labels]),
        resamples=n_resamples,
    )
    abstained = sum(p.abstention is not None for p in predictions)
    return TumourEvaluation(manifest.name, manifest.version, report, abstained)
