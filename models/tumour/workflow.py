"""``photomarker train tumour``: cross-validate, report, train the final model, write the package."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from models.engine.ensemble import aggregate_classifier
from models.tumour.dataset import load_images, load_samples
from models.tumour.package import PackageRequest, calibrate, save_tumour_package
from models.tumour.report import TumourReport, tumour_report
from models.tumour.training import Progress, TumourTrainingConfig, cross_validate, train_final


def run_training(
    csv_path: Path,
    config: TumourTrainingConfig,
    request: PackageRequest | None,
    progress: Progress,
) -> tuple[TumourReport, dict[str, Any]]:
    """CV figures (calibrated, out-of-fold) and, with a ``request``, the package written."""
    began = time.perf_counter()
    samples = load_samples(csv_path)
    x01 = load_images(samples)
    patients = len({s.patient_id for s in samples})
    progress(f"{len(samples)} photos of {patients} patients loaded ({time.perf_counter() - began:.0f} s)")
    cv = cross_validate(samples, x01, config, progress)
    labels = np.array([s.label for s in samples])
    calibration, abstention = calibrate(cv, labels)
    probabilities = aggregate_classifier(cv.logits, calibration.temperature).probabilities.numpy()
    report = tumour_report(
        probabilities.astype(np.float64),
        labels,
        [s.patient_id for s in samples],
        [s.fitzpatrick for s in samples],
    )
    extra: dict[str, Any] = {
        "photos": len(samples),
        "patients": patients,
        "folds": [{"train": a, "test": b} for a, b in cv.fold_sizes],
        "fold_malignant_auroc": cv.fold_auroc,
        "cv_seconds": round(cv.seconds, 1),
        "temperature": calibration.temperature,
        "max_spread": abstention.max_spread,
    }
    if request is not None:
        members = train_final(samples, x01, config, progress)
        manifest = save_tumour_package(
            request, samples, config, calibration, abstention, report, members, cv.fold_auroc
        )
        progress(f"wrote {request.directory} (weights {manifest.weights.sha256[:12]}…)")
        extra["package"] = {
            "name": manifest.name,
            "version": manifest.version,
            "sha256": manifest.weights.sha256,
        }
    extra["total_seconds"] = round(time.perf_counter() - began, 1)
    return report, extra
