"""Score an installed tumour package on a labelled CSV, through the engine's own stages."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from models.engine.execution import resolve_execution
from models.engine.options import EngineOptions
from models.engine.stages import Prediction
from models.intake import IntakeLimits, decode_photo
from models.model_stages import build_model_pipeline
from models.registry import LoadedModel
from models.tumour.dataset import TumourSample, load_samples
from models.tumour.package import ACK_THRESHOLD_KEY, THRESHOLD_KEY
from models.tumour.record import METADATA_FILE, age_of, metadata_rows
from models.tumour.record_package import WEIGHED_PREFIX
from models.tumour.record_weighing import package_record, weigh_rows
from models.tumour.report import TumourReport, tumour_report


@dataclass(frozen=True)
class TumourEvaluation:
    model: str
    version: str
    report: TumourReport
    abstained: int
    # Weighed with each photo's age and body region, as served (None: no record model or metadata).
    weighed: TumourReport | None = None

    def to_json(self) -> dict[str, Any]:
        out = {
            "model": self.model,
            "version": self.version,
            "abstained": self.abstained,
            **self.report.to_json(),
        }
        if self.weighed is not None:
            out["weighed_with_age_and_site"] = self.weighed.to_json()
        return out


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
    # As served: an abstained result is the photo's alone.
    weighable = np.array([p.abstention is None for p in predictions])
    weighed = _weighed_report(csv_path, samples, probabilities, weighable, loaded, n_resamples)
    return TumourEvaluation(manifest.name, manifest.version, report, abstained, weighed)


def _weighed_report(
    csv_path: Path,
    samples: list[TumourSample],
    probabilities: NDArray[np.float64],
    weighable: NDArray[np.bool_],
    loaded: LoadedModel,
    n_resamples: int,
) -> TumourReport | None:
    """The served result, weighed with each photo's age and region, at the package's weighed
    operating points — when the package has a record model and the data its metadata."""
    record = package_record(loaded.package)
    metrics = loaded.manifest.evaluation.metrics
    threshold = metrics.get(WEIGHED_PREFIX + THRESHOLD_KEY)
    if record is None or threshold is None or not (csv_path.parent / METADATA_FILE).is_file():
        return None
    rows, _ = metadata_rows(csv_path, samples)
    weighed = probabilities.copy()
    weighed[weighable] = weigh_rows(
        record,
        probabilities[weighable],
        [age_of(row) for row, keep in zip(rows, weighable, strict=True) if keep],
        [row["region"].strip().upper() for row, keep in zip(rows, weighable, strict=True) if keep],
    )
    return tumour_report(
        weighed,
        np.array([s.label for s in samples]),
        [s.patient_id for s in samples],
        [s.fitzpatrick for s in samples],
        threshold=threshold,
        ack_threshold=metrics.get(WEIGHED_PREFIX + ACK_THRESHOLD_KEY),
        resamples=n_resamples,
    )
