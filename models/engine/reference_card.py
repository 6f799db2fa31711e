"""The model card (``MODEL_CARD.md``) of the reference package, written from its manifest alone."""

from __future__ import annotations

from models.evaluation.metrics import interval_of
from models.manifest import ModelManifest
from models.results import ModelInfo


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def _interval(figures: dict[str, float], key: str) -> str:
    bounds = interval_of(figures, key)
    return f" [{bounds[0]:g}, {bounds[1]:g}]" if bounds else ""


def model_card(manifest: ModelManifest) -> str:
    info: ModelInfo = manifest.model_info()
    figures = manifest.evaluation.metrics
    metrics = "\n".join(
        f"| `{key}` | {value:g}{_interval(figures, key)} |"
        for key, value in figures.items()
        if not key.endswith(("_low", "_high"))
    )
    calibration, policy = manifest.calibration, manifest.abstention
    spec = manifest.architecture
    architecture = (
        f"`{spec.name}` {spec.params}, ensemble of {spec.ensemble_size}; Grad-CAM on `{spec.cam_layer}`"
    )
    return f"""# {manifest.display_name}

> **Reference — not for clinical use.** Trained only on generated images. It answers a
> non-clinical question and Photomarker never turns its output into an Observation.

| | |
|---|---|
| Name / version | `{info.name}` {info.version} |
| Task | {manifest.task_description} |
| Weights | `{manifest.weights.file}`, {manifest.weights.parameters} values, SHA-256 `{info.weights_sha256}` |
| Architecture | {architecture} |
| Starting weights | none: trained from random initialisation |
| Input | {manifest.input.size}×{manifest.input.size} px, {manifest.input.resize}, ImageNet normalisation |

## Intended use
{manifest.intended_use}

## Training data
{manifest.training_data.summary}. Train {manifest.training_data.n_train}, validation
{manifest.training_data.n_validation}, test {manifest.training_data.n_test}. No photo of a person was used.

## Calibration and abstention
Temperature {calibration.temperature:g}, fitted on the {calibration.fitted_on}
(NLL {_number(calibration.nll_before)} → {_number(calibration.nll_after)}).
Test-time views: {", ".join(manifest.tta.views)}, plus colour jitter ±{manifest.tta.jitter:g}.
The engine abstains when the spread over members × views exceeds {_number(policy.max_spread)} or the
out-of-distribution score ({policy.ood_method}) exceeds {_number(policy.max_ood)}; {policy.rule}.

## Metrics ({manifest.evaluation.split}, n = {manifest.evaluation.n})
| Metric | Value [95 % CI] |
|---|---|
{metrics}

CIs are percentile bootstrap intervals over the photos (generated independently, so resampled one
by one); NLL, ECE and the mean spread are given without. `ood_noise` is RGB noise and `ood_wall`
blank painted walls (white, grey, beige, pale blue), never seen in training.
Reproduce with `{manifest.evaluation.command}` (add `--re-evaluate` to score the shipped weights with
their calibration, without training).

## Limitations
{manifest.limitations}
"""
