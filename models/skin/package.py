"""The skin packages' model cards, written from the manifest exactly as stored (never typed by hand)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from models.manifest import MANIFEST_FILE, Evaluation, ModelManifest, load_manifest, save_manifest
from models.skin.tasks import LESION_CROP, TaskSpec
from models.skin.training import SkinTrainingConfig

if TYPE_CHECKING:
    from models.skin.evaluate import SkinEvaluation

REFERENCE_BANNER = (
    "> **Reference — not for clinical use.** Trained only on generated photos (cartoons of skin disease "
    "drawn by `photomarker generate skin`). Its figures show that the pipeline learns what was planted; "
    "they say nothing about real patients."
)


def metrics_table(metrics: dict[str, float]) -> str:
    """Metrics with their ``_low``/``_high`` bootstrap bounds folded into one row each."""
    rows = []
    for name, value in metrics.items():
        if name.endswith(("_low", "_high")) or name.startswith("n_"):
            continue
        low, high = metrics.get(f"{name}_low"), metrics.get(f"{name}_high")
        interval = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
        count = metrics.get(f"n_{name}")
        rows.append(f"| {name} | {value:.3f}{interval} | {'' if count is None else int(count)} |")
    return "| Metric | Value [95 % CI] | n |\n|---|---|---|\n" + "\n".join(rows)


def model_card(manifest: ModelManifest, spec: TaskSpec, config: SkinTrainingConfig) -> str:
    data, evaluation = manifest.training_data, manifest.evaluation
    arch, weights = manifest.architecture, manifest.weights
    cal, policy = manifest.calibration, manifest.abstention
    labels = "\n".join(
        f"| `{label.group or label.code}` | {label.display} "
        f"| `{label.code}` ({label.system or 'Photomarker local'}) |"
        for label in manifest.labels
    )
    banner = REFERENCE_BANNER if manifest.reference_only else ""
    levels = manifest.output.levels
    output = manifest.output.kind + (f", {levels} levels per item" if levels else "")
    augmentation = "the eight square symmetries" if spec.dihedral else "mirror image"
    training = (
        f"{config.epochs} epochs per member, batch {config.batch}, AdamW one-cycle lr "
        f"{config.learning_rate:g}; augmentation: {augmentation}, brightness ±15 %, saturation ±20 %"
    )
    return f"""# {manifest.display_name}

{banner}

| | |
|---|---|
| Name / version | `{manifest.name}` {manifest.version} |
| Task | {manifest.task_description} (registry task `{manifest.task}`) |
| Input | {spec.sees}, {manifest.input.size}×{manifest.input.size} px (squashed) |
| Output | {output} |
| Architecture | `{arch.name}`, ensemble of {arch.ensemble_size}; Grad-CAM on `{arch.cam_layer}` |
| Weights | `{weights.file}`, {weights.parameters} values (float16), SHA-256 `{weights.sha256}` |
| Training | {training} |

## Intended use
{manifest.intended_use}

## Labels and codes
| Key in the manifest | Display | Code |
|---|---|---|
{labels}

## Training data
{data.summary}. {data.n_train} for training, {data.n_validation} held out (grouped by `patient_id`) for
calibration.

## Performance
{evaluation.split}; n = {evaluation.n}. Reproduce with:

```
{evaluation.command}
```

{metrics_table(dict(evaluation.metrics))}

## Calibration and abstention
Temperature {cal.temperature:.3g}, fitted on the {cal.fitted_on} (NLL {cal.nll_before} → {cal.nll_after}).
Test-time views: {", ".join(manifest.tta.views)}. Abstention: {policy.rule}
(threshold {policy.max_spread}). No out-of-distribution detector.

## Limitations
{manifest.limitations or "See the training data above."}
"""


def record_evaluation(
    directory: Path, evaluation: SkinEvaluation, command: str, spec: TaskSpec, config: SkinTrainingConfig
) -> ModelManifest:
    """Put held-out figures (from ``photomarker evaluate``) into a written package's manifest and card."""
    manifest = load_manifest(directory)
    scored_on = (
        "end to end (lesion extraction, then this model)" if spec.sees == LESION_CROP else "on whole photos"
    )
    updated = manifest.model_copy(
        update={
            "evaluation": Evaluation(
                metrics=evaluation.flat_metrics(),
                split=f"held-out generated photos (other seed, other subjects), scored {scored_on}; "
                "bootstrap 95 % CIs resample subjects",
                n=evaluation.n,
                command=command,
            )
        }
    )
    save_manifest(updated, directory / MANIFEST_FILE)
    (directory / updated.card).write_text(model_card(updated, spec, config), encoding="utf-8")
    return updated


def training_config_of(manifest: ModelManifest) -> SkinTrainingConfig:
    """The epochs and members a package was trained with, from the command its card records."""
    words = manifest.training_data.summary.split()
    config = SkinTrainingConfig(members=manifest.architecture.ensemble_size)
    if "--epochs" in words:
        value = words[words.index("--epochs") + 1].strip("`;.")
        if value.isdigit():
            config = replace(config, epochs=int(value))
    return config
