"""``photomarker train tumour``: cross-validate, report, train the final model, write the package."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.engine.ensemble import aggregate_classifier
from models.errors import DatasetError
from models.registry import PackageRequest
from models.tumour.cross_validation import cross_validate
from models.tumour.dataset import load_images, load_samples
from models.tumour.metadata import compare_with_metadata
from models.tumour.network import cam_layer
from models.tumour.package import calibrate, save_tumour_package
from models.tumour.record import METADATA_FILE
from models.tumour.record_package import attach_record
from models.tumour.report import TumourReport, tumour_report
from models.tumour.training import (
    Progress,
    TumourTrainingConfig,
    decision_weights,
    feature_gaussian,
    train_final,
)


@dataclass(frozen=True)
class RecordRequest:
    """``--record-into``: the package the record model goes into, the command, the new version."""

    directory: Path
    command: str
    version: str | None = None


def run_training(
    csv_path: Path,
    config: TumourTrainingConfig,
    request: PackageRequest | None,
    progress: Progress,
    *,
    cache_dir: Path | None = None,
    resamples: int = 1000,
    record: RecordRequest | None = None,
) -> tuple[TumourReport, dict[str, Any]]:
    """CV figures (calibrated, out-of-fold) and, with a ``request``, the package written (with the
    record model when the data has its metadata); with ``record``, the record model put into an
    existing package."""
    began = time.perf_counter()
    samples = load_samples(csv_path)
    x01 = load_images(samples, config.size, cache_dir)
    patients = len({s.patient_id for s in samples})
    progress(f"{len(samples)} photos of {patients} patients loaded ({time.perf_counter() - began:.0f} s)")
    cv = cross_validate(samples, x01, config, progress)
    labels = np.array([s.label for s in samples])
    calibration, abstention = calibrate(cv, labels, config.tta_views)
    probabilities = aggregate_classifier(cv.logits, calibration.temperature).probabilities.numpy()
    # Each held-out photo's type is suggested with its own fold's rule (that fold's training labels).
    weights = np.ones_like(probabilities, dtype=np.float64)
    for train, test in cv.splits:
        weights[test] = decision_weights(torch.from_numpy(labels[train]), config).numpy()
    report = tumour_report(
        probabilities.astype(np.float64),
        labels,
        [s.patient_id for s in samples],
        [s.fitzpatrick for s in samples],
        decision_weights=weights,
        resamples=resamples,
    )
    comparison = compare_with_metadata(
        csv_path, samples, probabilities.astype(np.float64), cv.splits, resamples
    )
    extra: dict[str, Any] = {
        "photos": len(samples),
        "patients": patients,
        "recipe": config.describe(),
        "folds": [{"train": a, "test": b} for a, b in cv.fold_sizes],
        "fold_malignant_auroc": cv.fold_auroc,
        "cv_seconds": round(cv.seconds, 1),
        "temperature": calibration.temperature,
        "max_spread": abstention.max_spread,
    }
    if comparison is not None:
        extra["metadata_comparison"] = comparison.to_json()
        extra["metadata_table"] = comparison.format_table()
    common: dict[str, Any] = {
        "csv_path": csv_path,
        "samples": samples,
        "calibration": calibration,
        "abstention": abstention,
        "report": report,
        "comparison": comparison,
        "config": config,
        "fold_auroc": cv.fold_auroc,
    }
    if record is not None:
        if comparison is None:
            raise DatasetError(f"--record-into needs {METADATA_FILE} beside {csv_path.name}")
        attached = attach_record(record.directory, **common, command=record.command, version=record.version)
        progress(f"put the record model into {record.directory} ({attached.name} {attached.version})")
        extra["record_package"] = {"name": attached.name, "version": attached.version}
    if request is not None:
        members = train_final(samples, x01, config, progress)
        # The OOD Gaussian of the final members, fitted on every training photo.
        ood = feature_gaussian(members, x01, torch.from_numpy(labels), cam_layer(config.backbone))
        rule = decision_weights(torch.from_numpy(labels), config)
        manifest = save_tumour_package(
            request,
            samples,
            config,
            calibration,
            abstention,
            report,
            members,
            cv.fold_auroc,
            comparison,
            ood,
            decision_weights=[float(w) for w in rule],
        )
        if comparison is not None:
            manifest = attach_record(
                request.directory,
                **common,
                command=request.command,
                version=manifest.version,
            )
        progress(f"wrote {request.directory} (weights {manifest.weights.sha256[:12]}…)")
        extra["package"] = {
            "name": manifest.name,
            "version": manifest.version,
            "sha256": manifest.weights.sha256,
        }
    extra["total_seconds"] = round(time.perf_counter() - began, 1)
    return report, extra
