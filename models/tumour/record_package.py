"""Put the record model into a tumour package: ``record.json``, the manifest's ``record`` entry and
the card, from the same cross-validation run that measured it.

``photomarker train tumour … --record-into DIR`` does it for a package trained before (its folds
read back from ``--checkpoint-dir``); a run that writes a new package puts it there itself. The
package must be the one those folds were trained for: its headline figures are checked against
the run's, so a record model is never attached with another network's figures. The run's
calibration, abstention thresholds and figures replace the package's, so that everything the
card states comes from one run.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Final

import numpy as np

from models.errors import DatasetError
from models.manifest import (
    AbstentionPolicy,
    Calibration,
    ModelManifest,
    RecordSpec,
    card_date,
    load_manifest,
    save_manifest,
)
from models.tumour.dataset import TumourSample
from models.tumour.metadata import MetadataComparison
from models.tumour.package import model_card
from models.tumour.record import RECORD_FILE, fit_record_model, record_json
from models.tumour.report import TumourReport, tumour_report
from models.tumour.training import TumourTrainingConfig

INTENDED_USE_WITH_RECORD: Final = (
    "Research evaluation only — not for clinical decisions: whether a skin lesion, from its cut-out "
    "(a lesion cropped from a smartphone photo, the surround black or transparent) and, where the "
    "patient's record gives them, the patient's age and the body site, looks malignant (BCC, SCC, "
    "melanoma) or benign (actinic keratosis, seborrhoeic keratosis, naevus), with per-type "
    "probabilities and the photo's own figures beside the weighed ones. A FHIR Media carries no "
    "answers to the clinical questions (itch, growth, bleeding, …), so none are used."
)
# Manifest metrics of the result weighed with age and site: the photo-alone key, prefixed.
WEIGHED_PREFIX: Final = "weighed_"
# The headline keeps point figures only (the card has the CIs): a token bootstrap suffices.
_POINT_ONLY: Final = 20


def write_record(directory: Path, csv_path: Path, samples: list[TumourSample], command: str) -> RecordSpec:
    """Fit the record model on every sample and write it into ``directory``; its manifest entry."""
    model = fit_record_model(csv_path, samples)
    path = directory / RECORD_FILE
    path.write_text(record_json(model), encoding="utf-8")
    path.chmod(0o644)
    return RecordSpec(
        file=RECORD_FILE,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        summary=f"three softmax regressions (age and site, age alone, site alone) on {model.fitted_on}",
        command=command,
    )


def attach_record(
    directory: Path,
    *,
    csv_path: Path,
    samples: list[TumourSample],
    calibration: Calibration,
    abstention: AbstentionPolicy,
    report: TumourReport,
    comparison: MetadataComparison,
    config: TumourTrainingConfig,
    fold_auroc: list[float],
    command: str,
    version: str | None,
) -> ModelManifest:
    """Add the record model to the package in ``directory`` and rewrite its card (dated as before)."""
    manifest = load_manifest(directory)
    _check_same_network(manifest, report)
    spec = write_record(directory, csv_path, samples, command)
    evaluation = manifest.evaluation.model_copy(
        update={"metrics": {**report.headline(), **weighed_headline(samples, comparison)}}
    )
    updated = ModelManifest.model_validate(
        {
            **manifest.model_dump(),
            "version": version or _next_minor(manifest.version),
            "intended_use": INTENDED_USE_WITH_RECORD,
            "record": spec.model_dump(),
            "calibration": calibration.model_dump(),
            "abstention": abstention.model_dump(),
            "evaluation": evaluation.model_dump(),
        }
    )
    save_manifest(updated, directory)
    card_path = directory / updated.card
    generated_on = card_date(card_path)
    card = model_card(updated, report, config, fold_auroc, comparison, directory, generated_on=generated_on)
    card_path.write_text(card, encoding="utf-8")
    return updated


# How far the run's figures may lie from the package's: a recalibration moves them in the last
# digit, another network by far more.
_SAME_FIGURES: Final = {
    "malignant_auroc": 1e-3,
    "malignant_specificity": 5e-3,
    "six_class_balanced_accuracy": 5e-3,
}


def weighed_headline(samples: list[TumourSample], comparison: MetadataComparison) -> dict[str, float]:
    """The served (age-and-site) result's CV figures and operating points, as ``weighed_*`` metrics:
    ``evaluate tumour`` scores a weighed result at these thresholds, never at refitted ones."""
    if comparison.with_record is None:
        return {}
    weighed = tumour_report(
        comparison.with_record,
        np.array([s.label for s in samples]),
        [s.patient_id for s in samples],
        [s.fitzpatrick for s in samples],
        resamples=_POINT_ONLY,
    )
    return {f"{WEIGHED_PREFIX}{key}": value for key, value in weighed.headline().items()}


def _check_same_network(manifest: ModelManifest, report: TumourReport) -> None:
    run = report.headline()
    stored = manifest.evaluation.metrics
    close = (math.isclose(stored.get(k, math.nan), run[k], abs_tol=tol) for k, tol in _SAME_FIGURES.items())
    if not all(close):
        raise DatasetError(
            f"{manifest.name} {manifest.version} was not trained by these folds (its cross-validated "
            "figures differ from this run's): the record model is not attached"
        )


def _next_minor(version: str) -> str:
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise DatasetError(f"version {version!r} is not MAJOR.MINOR.PATCH: give --model-version")
    return f"{parts[0]}.{int(parts[1]) + 1}.0"
