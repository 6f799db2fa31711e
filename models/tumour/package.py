"""Writing the trained tumour classifier as a model package: weights, manifest and model card.

Every figure in the card and the manifest comes from the cross-validation that ``photomarker
train tumour`` just ran (the card quotes the command); nothing is typed in by hand.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import torch
from torch import nn

from models.engine.calibration import fit_temperature, quantile_threshold
from models.engine.ensemble import aggregate_classifier
from models.engine.network import ensemble_state_dict
from models.manifest import (
    AbstentionPolicy,
    ArchitectureSpec,
    Calibration,
    Evaluation,
    ModelManifest,
    OutputSpec,
    TrainingData,
    TtaSpec,
    WeightsSpec,
)
from models.registry import PENDING_SHA256, save_model_package
from models.tumour.dataset import CLASSES, INPUT, LABELS, TumourSample
from models.tumour.report import TARGET_SENSITIVITY, TumourReport
from models.tumour.training import ARCHITECTURE, TTA_VIEWS, CrossValidation, TumourTrainingConfig

DEFAULT_NAME: Final = "tumour-padufes"
THRESHOLD_KEY: Final = "malignant_operating_threshold"
CITATION: Final = (
    "Pacheco A.G.C. et al. (2020). PAD-UFES-20: a skin lesion dataset composed of patient data and "
    "clinical images collected from smartphones. Data in Brief 32:106221. Data: Mendeley Data, "
    "DOI 10.17632/zr7vgbcyr2.1, CC BY 4.0. Images modified: lesions segmented and cropped onto "
    "black (public student project chamiyeah/2025-FYP-groupPenguins), downsampled to ≤ 512 px, JPEG."
)
LIMITATIONS: Final = (
    "Trained on PAD-UFES-20 only: patients of one dermatology programme in Espírito Santo, Brazil; "
    "Fitzpatrick types 4–6 nearly absent, so nothing is known about darker skin; melanoma is rare "
    "(21 photos), so its figures have wide intervals; inputs were lesion cut-outs on black, not whole "
    "photos, so a whole photo must be cropped to the lesion first. A small CNN trained from scratch "
    "on ~1,200 photos. Not a diagnosis; never a substitute for a dermatologist or a biopsy."
)
INTENDED_USE: Final = (
    "Research and reference use only: a second opinion on whether a skin lesion cut-out (a lesion "
    "cropped from a smartphone photo) looks malignant (BCC, SCC, melanoma) or benign (actinic "
    "keratosis, seborrhoeic keratosis, naevus), with per-type probabilities. Not for clinical decisions."
)
ABSTAIN_QUANTILE: Final = 0.95
# Views that agree within 5 probability points agree: never abstain below that spread.
MIN_SPREAD: Final = 0.05
AUGMENTATION: Final = (
    "dihedral + ±20° rotation, 80–100 % crop, brightness ±20 %, saturation ±20 %, 3×3 blur on 30 %"
)


@dataclass(frozen=True)
class PackageRequest:
    directory: Path
    name: str
    version: str
    command: str
    data_description: str


def calibrate(cv: CrossValidation, labels: np.ndarray) -> tuple[Calibration, AbstentionPolicy]:
    """Temperature and spread threshold fitted on the out-of-fold outputs of every photo."""
    target = torch.from_numpy(labels)
    fit = fit_temperature(cv.logits, target)
    spread = aggregate_classifier(cv.logits, fit.temperature).spread.numpy()
    described = f"out-of-fold cross-validation outputs ({len(labels)} photos), views {', '.join(TTA_VIEWS)}"
    calibration = Calibration(
        temperature=round(fit.temperature, 6),
        fitted_on=described,
        nll_before=round(fit.nll_before, 6),
        nll_after=round(fit.nll_after, 6),
    )
    policy = AbstentionPolicy(
        max_spread=round(max(quantile_threshold(spread, ABSTAIN_QUANTILE), MIN_SPREAD), 6),
        rule=f"abstain when the top class's probability varies across the 90° rotations more than "
        f"the {ABSTAIN_QUANTILE:.0%} quantile of that spread on the {described} (at least {MIN_SPREAD:g})",
    )
    return calibration, policy


def save_tumour_package(
    request: PackageRequest,
    samples: list[TumourSample],
    config: TumourTrainingConfig,
    calibration: Calibration,
    abstention: AbstentionPolicy,
    report: TumourReport,
    members: list[nn.Module],
    fold_auroc: list[float],
) -> ModelManifest:
    counts = Counter(s.diagnosis for s in samples)
    manifest = ModelManifest(
        name=request.name,
        version=request.version,
        display_name="Skin-tumour classifier, 6 types (MobileNetV3-Small, PAD-UFES-20)",
        task="skin-tumour",
        task_description="Type of a skin lesion (BCC, SCC, melanoma, actinic keratosis, seborrhoeic "
        "keratosis, naevus) and malignant vs benign, from a lesion cut-out",
        output=OutputSpec(kind="classifier"),
        labels=LABELS,
        input=INPUT,
        architecture=ArchitectureSpec(name=ARCHITECTURE, ensemble_size=len(members), cam_layer="features.12"),
        weights=WeightsSpec(sha256=PENDING_SHA256),
        training_data=TrainingData(
            summary=f"{request.data_description}: {len(samples)} lesion cut-outs from "
            f"{len({s.patient_id for s in samples})} patients ("
            + ", ".join(f"{c} {counts[c]}" for c in CLASSES)
            + ")",
            source="real",
            n_train=len(samples),
            n_validation=0,
            citations=(CITATION,),
        ),
        evaluation=Evaluation(
            metrics=report.headline(),
            split=f"{config.folds}-fold cross-validation grouped by patient_id, out-of-fold, "
            f"TTA over {len(TTA_VIEWS)} rotations, calibrated",
            n=len(samples),
            command=request.command,
        ),
        intended_use=INTENDED_USE,
        limitations=LIMITATIONS,
        reference_only=True,
        calibration=calibration,
        abstention=abstention,
        tta=TtaSpec(views=TTA_VIEWS, jitter=0.0),
    )
    # Stored as float16 (half the size, within the package budget); loading casts back to float32.
    tensors = {
        key: value.half() if value.is_floating_point() else value
        for key, value in ensemble_state_dict([m.state_dict() for m in members]).items()
    }
    return save_model_package(
        request.directory, manifest, tensors, lambda final: model_card(final, report, config, fold_auroc)
    )


def model_card(
    manifest: ModelManifest, report: TumourReport, config: TumourTrainingConfig, fold_auroc: list[float]
) -> str:
    data = manifest.training_data
    cal, policy = manifest.calibration, manifest.abstention
    codes = "\n".join(
        f"| {name} | {label.display} | `{label.code}` ({label.system or 'Photomarker local'}) "
        f"| {label.group} |"
        for name, label in zip(CLASSES, manifest.labels, strict=True)
    )
    spec, weights = manifest.architecture, manifest.weights
    rows = [
        f"| Weights | `{weights.file}`, {weights.parameters} values, SHA-256 `{weights.sha256}` |",
        f"| Architecture | torchvision `{spec.name}` from scratch, ensemble of {spec.ensemble_size}; "
        f"Grad-CAM on `{spec.cam_layer}` |",
        f"| Training | {config.epochs} epochs, batch {config.batch}, AdamW one-cycle lr "
        f"{config.learning_rate:g}, class weights 1/√frequency; augmentation: "
        + (AUGMENTATION if config.augment else "none")
        + " |",
    ]
    table = "\n".join(rows)
    return f"""# {manifest.display_name}

> **Research / reference only — not for clinical decisions.** A small network trained from scratch
> on ~1,200 photos of one Brazilian clinic network. It does not replace a dermatologist or a biopsy.

| | |
|---|---|
| Name / version | `{manifest.name}` {manifest.version} |
| Task | {manifest.task_description} |
{table}
| Input | {manifest.input.size}×{manifest.input.size} px, whole crop squashed, ImageNet normalisation |

## Intended use
{manifest.intended_use}

## Labels and codes
Malignant = BCC + SCC + MEL. Actinic keratosis (pre-malignant) is grouped **benign** here; the
figures are also given with ACK counted as positive.

| Class | Display | Code | Group |
|---|---|---|---|
{codes}

## Training data
{data.summary}. Citation: {CITATION}

## Cross-validated performance
{manifest.evaluation.split}; bootstrap 95 % CIs resample patients. Reproduce with
`{manifest.evaluation.command}`.

**Operating point**: call a lesion malignant when the summed BCC+SCC+MEL probability is ≥
{report.threshold:.3f}, the highest threshold reaching sensitivity ≥ {TARGET_SENSITIVITY:.0%} on the
out-of-fold outputs (chosen on the same outputs it is scored on, so slightly optimistic).

```
{report.format_table()}
```

Malignant-vs-benign AUROC inside each held-out fold: {", ".join(f"{a:.3f}" for a in fold_auroc)}.
The pooled figure above is lower because each fold's network puts its scores on its own scale.

Melanoma is scored on its own above (row MEL): with {report.per_class["MEL"].n_positive} melanoma
photos its interval is wide; do not read the malignant average as melanoma performance.

## Calibration and abstention
Temperature {cal.temperature:g}, fitted on the {cal.fitted_on} (NLL {cal.nll_before} → {cal.nll_after}).
Test-time views: {", ".join(manifest.tta.views)} (the Ehime finding: one 90° rotation can flip
the answer, so the rotations are averaged). Abstention: {policy.rule} (threshold {policy.max_spread}).
No out-of-distribution detector: a photo that is not a lesion cut-out is not recognised as such.

## Limitations
{manifest.limitations}
"""
