"""Writing the trained tumour classifier as a model package: weights, manifest and model card.

Every figure in the card and the manifest comes from the cross-validation that ``photomarker
train tumour`` just ran (the card quotes the command); nothing is typed in by hand.
"""

from __future__ import annotations

import datetime
from collections import Counter
from pathlib import Path
from typing import Final

import numpy as np
import torch
from torch import Tensor, nn

from models.engine.calibration import fit_temperature, quantile_threshold
from models.engine.ensemble import aggregate_classifier
from models.engine.network import ensemble_state_dict
from models.engine.pretrained import starting_weights
from models.manifest import (
    AbstentionPolicy,
    Calibration,
    Evaluation,
    LabelSpec,
    ModelManifest,
    OutputSpec,
    TrainingData,
    TtaSpec,
    WeightsSpec,
)
from models.registry import PENDING_SHA256, PackageRequest, save_model_package
from models.tumour.cross_validation import CrossValidation
from models.tumour.dataset import CLASSES, LABELS, TumourSample, input_spec
from models.tumour.metadata import MetadataComparison
from models.tumour.record_card import (
    FIGURES_HEADER,
    comparison_sections,
    figures_row,
    provenance_line,
    record_verdict,
)
from models.tumour.report import TARGET_SENSITIVITY, TumourReport
from models.tumour.training import TTA_VIEWS, TumourTrainingConfig

DEFAULT_NAME: Final = "tumour-padufes"
THRESHOLD_KEY: Final = "malignant_operating_threshold"
ACK_THRESHOLD_KEY: Final = "malignant_or_ack_operating_threshold"
# The aim of issue #5: malignant vs benign AUROC and sensitivity at the stated operating point.
AIM_AUROC: Final = 0.90
AIM_SENSITIVITY: Final = 0.90
CITATION: Final = (
    "Pacheco A.G.C. et al. (2020). PAD-UFES-20: a skin lesion dataset composed of patient data and "
    "clinical images collected from smartphones. Data in Brief 32:106221. Data: Mendeley Data, "
    "DOI 10.17632/zr7vgbcyr2.1, CC BY 4.0. Images modified: lesions segmented and cropped onto "
    "black (public student project chamiyeah/2025-FYP-groupPenguins), downsampled to ≤ 512 px, JPEG."
)
LIMITATIONS: Final = (
    "Trained on PAD-UFES-20 only: patients of one dermatology programme (one clinic network) in "
    "Espírito Santo, Brazil; Fitzpatrick types 4–6 nearly absent, so nothing is known about darker "
    "skin; melanoma is rare (21 photos), so its figures have wide intervals; inputs were lesion "
    "cut-outs on black, not whole photos, so a whole photo must be cropped to the lesion first "
    "(whole-photo lesion extraction is a separate stage, not validated here). A small CNN trained "
    "on ~1,200 photos. Not a diagnosis; never a substitute for a dermatologist or a biopsy."
)
INTENDED_USE: Final = (
    "Research evaluation only — not for clinical decisions: whether a skin-lesion cut-out (a lesion "
    "cropped from a smartphone photo, the surround black or transparent) looks malignant (BCC, SCC, "
    "melanoma) or benign (actinic keratosis, seborrhoeic keratosis, naevus), with per-type "
    "probabilities. It reads the image alone: a FHIR Media carries no answers to the clinical "
    "questions (itch, growth, bleeding, …), so none are used."
)
ABSTAIN_QUANTILE: Final = 0.95
OOD_QUANTILE: Final = 0.99
# Views that agree within 5 probability points agree: never abstain below that spread.
MIN_SPREAD: Final = 0.05
# SNOMED codes FHIR.md asks to re-check before clinical use.
CODE_STATUS: Final = {"BCC": "confirmed", "MEL": "verify (public sources conflict)", "NEV": "confirmed"}
ABLATION_FILE: Final = "models/tumour/ABLATION.md"
REFERENCE_NOTE: Final = " Every result it produces is marked *reference — not for clinical use*."


_BACKBONE_NAMES: Final = {
    "mobilenet_v3_small": "MobileNetV3-Small",
    "reference-cnn": "small ResNet",
    **{f"efficientnet_lite{n}": f"EfficientNet-Lite{n}" for n in (0, 1, 2)},
}


def calibrate(
    cv: CrossValidation, labels: np.ndarray, views: tuple[str, ...] = TTA_VIEWS
) -> tuple[Calibration, AbstentionPolicy]:
    """Temperature, spread and OOD thresholds fitted on the out-of-fold outputs of every photo."""
    target = torch.from_numpy(labels)
    fit = fit_temperature(cv.logits, target)
    spread = aggregate_classifier(cv.logits, fit.temperature).spread.numpy()
    described = f"out-of-fold cross-validation outputs ({len(labels)} photos), views {', '.join(views)}"
    calibration = Calibration(
        temperature=round(fit.temperature, 6),
        fitted_on=described,
        nll_before=round(fit.nll_before, 6),
        nll_after=round(fit.nll_after, 6),
    )
    rule = (
        f"abstain when the top class's probability varies across the 90° rotations more than the "
        f"{ABSTAIN_QUANTILE:.0%} quantile of that spread on the {described} (at least {MIN_SPREAD:g})"
    )
    max_ood = None
    if cv.ood is not None:
        max_ood = round(quantile_threshold(cv.ood, OOD_QUANTILE), 6)
        rule += (
            f", or when the photo's features lie further from every training class than "
            f"{OOD_QUANTILE:.0%} of held-out lesion crops did (Mahalanobis, each fold's own fit)"
        )
    policy = AbstentionPolicy(
        max_spread=round(max(quantile_threshold(spread, ABSTAIN_QUANTILE), MIN_SPREAD), 6),
        max_ood=max_ood,
        ood_method="feature-mahalanobis" if max_ood is not None else "none",
        rule=rule,
    )
    return calibration, policy


def meets_aim(report: TumourReport) -> bool:
    metrics = report.malignant.metrics
    return metrics["auroc"].value >= AIM_AUROC and metrics["sensitivity"].value >= AIM_SENSITIVITY


def save_tumour_package(
    request: PackageRequest,
    samples: list[TumourSample],
    config: TumourTrainingConfig,
    calibration: Calibration,
    abstention: AbstentionPolicy,
    report: TumourReport,
    members: list[nn.Module],
    fold_auroc: list[float],
    comparison: MetadataComparison | None,
    ood: tuple[Tensor, Tensor] | None,
    *,
    decision_weights: list[float] | None = None,
) -> ModelManifest:
    counts = Counter(s.diagnosis for s in samples)
    labels: tuple[LabelSpec, ...] = tuple(LABELS)
    if decision_weights is not None:
        labels = tuple(
            label.model_copy(update={"decision_weight": round(weight, 6)})
            for label, weight in zip(LABELS, decision_weights, strict=True)
        )
    backbone = _BACKBONE_NAMES.get(config.backbone, config.backbone)
    manifest = ModelManifest(
        name=request.name,
        version=request.version,
        display_name=f"Skin-tumour classifier, 6 types ({backbone}, PAD-UFES-20)",
        task="skin-tumour",
        task_description="Type of a skin lesion (BCC, SCC, melanoma, actinic keratosis, seborrhoeic "
        "keratosis, naevus) and malignant vs benign, from a lesion cut-out",
        output=OutputSpec(kind="classifier"),
        labels=labels,
        input=input_spec(config.size),
        architecture=config.architecture(len(members)),
        weights=WeightsSpec(sha256=PENDING_SHA256),
        starting_weights=starting_weights(config.backbone) if config.starts_pretrained else None,
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
            f"TTA over {len(config.tta_views)} rotations, calibrated",
            n=len(samples),
            command=request.command,
        ),
        intended_use=INTENDED_USE,
        limitations=LIMITATIONS,
        # Real data, but short of the aim: flagged so every Device and Observation says so.
        reference_only=not meets_aim(report),
        calibration=calibration,
        abstention=abstention,
        tta=TtaSpec(views=config.tta_views, jitter=0.0),
    )
    # Network weights stored as float16 (half the size, within the package budget; loading casts
    # back to float32); the OOD Gaussian stays float32, its precision entries need the range.
    tensors = {
        key: value.half() if value.is_floating_point() and key.startswith("members.") else value
        for key, value in ensemble_state_dict([m.state_dict() for m in members], ood).items()
    }
    return save_model_package(
        request.directory,
        manifest,
        tensors,
        lambda final: model_card(final, report, config, fold_auroc, comparison, request.directory),
    )


def type_rule_text(manifest: ModelManifest, report: TumourReport) -> str:
    """How the named type is chosen, with the six-class figures of that choice (and of the other)."""
    plain = f"Six-class accuracy {report.accuracy:.3f}, balanced accuracy {report.balanced_accuracy_6:.3f}."
    if all(label.decision_weight == 1.0 for label in manifest.labels):
        return plain + " The type a result names is the most likely one."
    weights = ", ".join(
        f"{name} {label.decision_weight:.2f}" for name, label in zip(CLASSES, manifest.labels, strict=True)
    )
    return (
        'The type a result names ("Suggested type") is the one with the largest probability × its '
        f"weight ({weights}): 1 / the class prior the network was trained under (training frequency "
        "× loss weight), the Bayes rule for balanced accuracy (logit adjustment, Menon et al. 2021). "
        "Nothing in it is fitted: the recipe and the training labels fix it; the probabilities, and so "
        "the malignant figures, are untouched. The per-type sensitivities above are those of this rule. "
        + plain
        + f" Naming the most likely type instead: accuracy {report.accuracy_most_likely:.3f}, balanced "
        f"accuracy {report.balanced_accuracy_6_most_likely:.3f}."
    )


def model_card(
    manifest: ModelManifest,
    report: TumourReport,
    config: TumourTrainingConfig,
    fold_auroc: list[float],
    comparison: MetadataComparison | None,
    directory: Path,
    *,
    generated_on: datetime.date | None = None,
) -> str:
    """The card; ``generated_on`` is the day the figures were made (today unless a later run, such as
    attaching the record model, rewrites the card of a package trained before)."""
    data = manifest.training_data
    cal, policy = manifest.calibration, manifest.abstention
    codes = "\n".join(
        f"| {name} | {label.display} | `{label.code}` | {label.system or 'Photomarker local code'} "
        f"| {CODE_STATUS.get(name, '—')} | {label.group} |"
        for name, label in zip(CLASSES, manifest.labels, strict=True)
    )
    spec, weights = manifest.architecture, manifest.weights
    size = (directory / weights.file).stat().st_size
    malignant = report.malignant.metrics
    auroc, sens, spec_ = malignant["auroc"], malignant["sensitivity"], malignant["specificity"]
    met = meets_aim(report)
    verdict = (
        f"It **meets** the aim of AUROC ≥ {AIM_AUROC:.2f} with sensitivity ≥ {AIM_SENSITIVITY:.0%} at the "
        "operating point in cross-validation; it has not been validated on an independent set."
        if met
        else f"It **does not meet the aim** (malignant-vs-benign AUROC ≥ {AIM_AUROC:.2f} and sensitivity "
        f"≥ {AIM_SENSITIVITY:.0%} at the stated specificity): cross-validated AUROC {auroc.format()}, "
        f"and at sensitivity {sens.format()} the specificity is only {spec_.format()}."
    )
    weighed_verdict = record_verdict(comparison) if comparison is not None and manifest.record else ""
    per_class = "\n".join(figures_row(name, f) for name, f in report.per_class.items())
    called = ", ".join(f"{name} {value.format()}" for name, value in report.called_malignant.items()) + "."
    dark = sum(report.per_fitzpatrick[t].n for t in ("4", "5", "6") if t in report.per_fitzpatrick)
    unknown = report.per_fitzpatrick["unknown"].n if "unknown" in report.per_fitzpatrick else 0
    per_type = "\n".join(figures_row(f"type {name}", f) for name, f in report.per_fitzpatrick.items())
    metadata = comparison_sections(comparison, manifest.record) if comparison is not None else ""
    first = manifest.starting_weights
    start = "from ImageNet-pretrained weights" if first else "from scratch"
    starting = (
        f"{first.description}; {first.source}, SHA-256 `{first.sha256}`; licence {first.licence}"
        if first
        else "none (trained from scratch)"
    )
    ablation = (
        f"See `{ABLATION_FILE}` for the recipes tried (each row with its CV AUROC and the command "
        "that produced it)."
    )
    return f"""# {manifest.display_name} — `{manifest.name}` {manifest.version}

> **Research evaluation only — not for clinical decisions.** {verdict}{weighed_verdict} Trained {start} on
> ~1,200 lesion cut-outs of one Brazilian clinic network; it does not replace a dermatologist or
> a biopsy.{REFERENCE_NOTE if manifest.reference_only else ""}

{provenance_line(manifest, generated_on or datetime.date.today())}

| | |
|---|---|
| Task | {manifest.task_description} |
| Weights | `{weights.file}`, {size / 1e6:.1f} MB, {weights.parameters} values, SHA-256 `{weights.sha256}` |
| Architecture | `{spec.name}` ({spec.params.get("backbone")}), ensemble of {spec.ensemble_size}; \
Grad-CAM on `{spec.cam_layer}` |
| Training recipe | {config.describe()} |
| Input | {manifest.input.size}×{manifest.input.size} px, whole crop squashed, surround black |
| Training data | real photographs (PAD-UFES-20), not generated |
| Starting weights | {starting} |

## Intended use
{manifest.intended_use}

## Labels and codes
Malignant = BCC + SCC + MEL. Actinic keratosis (pre-malignant) is grouped **benign** for the
malignancy probability; the figures are also given with ACK counted as positive.

| Class | Display | Code | System | Code status | Group |
|---|---|---|---|---|---|
{codes}

## Training data
{data.summary}.

Citation: {CITATION}

## Cross-validated performance
{manifest.evaluation.split}; bootstrap 95 % CIs resample patients.

**Operating point**: call a lesion malignant when the summed BCC+SCC+MEL probability is ≥
{report.threshold:.3f} — the highest threshold reaching sensitivity ≥ {TARGET_SENSITIVITY:.0%} on the
out-of-fold outputs (chosen on the same outputs it is scored on, so slightly optimistic). There
the specificity is {spec_.format()}. `photomarker evaluate tumour` scores at this same threshold.

{FIGURES_HEADER}
{figures_row("malignant (BCC+SCC+MEL) vs benign", report.malignant)}
{figures_row("malignant or ACK vs SEK+NEV", report.malignant_or_ack)}

Malignant-vs-benign AUROC inside each held-out fold: {", ".join(f"{a:.3f}" for a in fold_auroc)}.

### Each type (one vs rest; sensitivity/specificity of "top class is this type")
{FIGURES_HEADER}
{per_class}

{type_rule_text(manifest, report)}
**Melanoma on its own** is the MEL row: {report.per_class["MEL"].n_positive} melanoma photos, so its
interval is wide; do not read the malignant figures as melanoma performance.

Share of each type called malignant at the operating point (for BCC, SCC and MEL that is the
type's own sensitivity; for ACK, SEK and NEV the false-alarm rate):
{called}

### By Fitzpatrick skin type (malignant vs benign, at the operating point; counts shown)
{FIGURES_HEADER}
{per_type}

Types 4–6 are nearly absent ({dark} of {report.malignant.n} photos) and {unknown} photos have no type
recorded: nothing can be said about darker skin.
{metadata}
## Calibration and abstention
Temperature {cal.temperature:g}, fitted on the {cal.fitted_on} (NLL {cal.nll_before} → {cal.nll_after}).
Test-time views: {", ".join(manifest.tta.views)} — the Ehime finding that one 90° rotation can flip
the answer, so the rotations are averaged (and, with several members, the members vote).
Abstention: {policy.rule} (spread threshold {policy.max_spread}; OOD threshold {policy.max_ood}).
An abstaining result still carries its probabilities, marked as abstained. The
out-of-distribution test is weak for a network this small: it is no guarantee that a whole photo
or an image without a lesion is recognised, so the input must be a lesion cut-out (black or
transparent surround) from lesion extraction; a plain skin-coloured square can pass it.

## What was tried
{ablation}

## Limitations
{manifest.limitations}
"""
