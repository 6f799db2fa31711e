"""Scoring an installed Hb model on a labelled CSV, through the same pipeline a worker runs.

Each sample (after the duplicate rule) is decoded and sent through the deployed stages
(localise → pre_process → predict → post_process), so the figures are those of the shipped
artefact, not of a re-implementation. Estimates the model abstained on are still scored
(their count is reported); photos where no conjunctiva was found are left out and counted.
The baseline is the model's own training mean, as a constant.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.engine.options import EngineOptions
from models.evaluation.report import RegressionReport, regression_report
from models.hb.dataset import Grouping, cv_groups, load_dataset, load_strips
from models.hb.model import HbConjunctivaNet
from models.hb.pipeline import build_hb_pipeline
from models.hb.training import WHO_CHILD_CUTOFF_G_DL
from models.intake import IntakeLimits, decode_photo
from models.registry import LoadedModel
from models.results import AnalysisNotPerformed, HbEstimate


@dataclass(frozen=True, eq=False)
class HbEvaluation:
    report: RegressionReport
    model: str
    version: str
    abstained: int
    not_found: int

    def to_json(self) -> dict[str, Any]:
        out = self.report.to_json()
        out.update({"model": self.model, "version": self.version, "abstained": self.abstained})
        out["not_found"] = self.not_found
        return out


def evaluate_hb(
    csv_path: Path,
    loaded: LoadedModel,
    *,
    grouping: Grouping = "strict",
    n_resamples: int = 2000,
    batch_size: int = 32,
) -> HbEvaluation:
    dataset = load_dataset(csv_path)
    groups = cv_groups(dataset, load_strips(dataset), grouping)
    # Heat maps are not scored; TTA stays on because deployment uses it.
    options = EngineOptions(device="cpu", batch_size=batch_size, heatmaps=False, tta=True)
    pipeline = build_hb_pipeline(loaded, options)
    limits = IntakeLimits()
    photos = [decode_photo(sample.path.read_bytes(), limits=limits) for sample in dataset.samples]
    outcomes = pipeline.run(photos)
    truth: list[float] = []
    predicted: list[float] = []
    kept_groups: list[str] = []
    abstained = not_found = 0
    for sample, group, outcome in zip(dataset.samples, groups, outcomes, strict=True):
        estimate = outcome.result
        if isinstance(estimate, AnalysisNotPerformed):
            not_found += 1
            continue
        if not isinstance(estimate, HbEstimate):
            raise TypeError("the Hb pipeline returned something other than an HbEstimate")
        abstained += estimate.abstention is not None
        truth.append(sample.hb_g_dl)
        predicted.append(estimate.g_dl)
        kept_groups.append(group)
    member = loaded.network().members[0]
    if not isinstance(member, HbConjunctivaNet):
        raise TypeError("not an Hb model")
    training_mean = float(member.cnn.target_mean)
    report = regression_report(
        np.asarray(truth),
        np.asarray(predicted),
        baseline_value=training_mean,
        cutoff=WHO_CHILD_CUTOFF_G_DL,
        groups=kept_groups,
        n_resamples=n_resamples,
        extra={
            "groups": len(set(kept_groups)),
            "rows": dataset.rows,
            "dropped_rows": sum(len(d.image_ids) for d in dataset.dropped),
        },
    )
    manifest = loaded.manifest
    return HbEvaluation(report, manifest.name, manifest.version, abstained, not_found)
