"""The skin packages' model cards, written from the manifest exactly as stored (never typed by hand)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from models.evaluation.metrics import interval_of
from models.manifest import MANIFEST_FILE, Evaluation, ModelManifest, load_manifest, save_manifest
from models.skin.real_lesion_scoring import METRIC_PREFIX
from models.skin.tasks import LESION_CROP, TaskSpec
from models.skin.training import SkinTrainingConfig

if TYPE_CHECKING:
    from models.skin.evaluation_result import SkinEvaluation

REFERENCE_BANNER = (
    "> **Reference — not for clinical use.** Trained only on generated photos (cartoons of skin disease "
    "drawn by `photomarker generate skin`). Its figures show that the pipeline learns what was planted; "
    "they say nothing about real patients."
)

MIXED_BANNER = (
    "> **Reference — not for clinical use.** Trained mostly on generated photos (cartoons of skin disease "
    "drawn by `photomarker generate skin`), with real lesion cut-outs (PAD-UFES-20) pasted into some of "
    "them. Its figures on real lesions are on cut-outs pasted into generated photos, not on whole real "
    "photos of patients."
)


def metrics_table(metrics: dict[str, float]) -> str:
    """Metrics with their ``_low``/``_high`` bootstrap bounds folded into one row each."""
    rows = []
    for name, value in metrics.items():
        if name.endswith(("_low", "_high")) or name.startswith("n_"):
            continue
        bounds = interval_of(metrics, name)
        interval = f" [{bounds[0]:.3f}, {bounds[1]:.3f}]" if bounds else ""
        count = metrics.get(f"n_{name}")
        rows.append(f"| {name} | {value:.3f}{interval} | {'' if count is None else int(count)} |")
    return "| Metric | Value [95 % CI] | n |\n|---|---|---|\n" + "\n".join(rows)


def model_card(manifest: ModelManifest, spec: TaskSpec, config: SkinTrainingConfig) -> str:
    data = manifest.training_data
    arch, weights = manifest.architecture, manifest.weights
    cal, policy = manifest.calibration, manifest.abstention
    labels = "\n".join(
        f"| `{label.group or label.code}` | {label.display} "
        f"| `{label.code}` ({label.system or 'Photomarker local'}) |"
        for label in manifest.labels
    )
    banner = (MIXED_BANNER if data.source == "mixed" else REFERENCE_BANNER) if manifest.reference_only else ""
    levels = manifest.output.levels
    output = manifest.output.kind + (f", {levels} levels per item" if levels else "")
    augmentation = "the eight square symmetries" if spec.dihedral else "mirror image"
    training = (
        f"{config.epochs} epochs per member, batch {config.batch}, AdamW one-cycle lr "
        f"{spec.learning_rate or config.learning_rate:g}; augmentation: {augmentation}, brightness ±15 %, "
        "saturation ±20 %"
    )
    return f"""# {manifest.display_name}

{banner}

| | |
|---|---|
| Name / version | `{manifest.name}` {manifest.version} |
| Task | {manifest.task_description} (registry task `{manifest.task}`) |
| Input | {spec.sees}, {_input_side(manifest)} |
| Output | {output} |
| Architecture | `{arch.name}`, ensemble of {arch.ensemble_size}; Grad-CAM on `{arch.cam_layer}` |
| Weights | `{weights.file}`, {weights.parameters} values (float16), SHA-256 `{weights.sha256}` |
| Training | {training} |
{_starting_row(manifest)}
## Intended use
{manifest.intended_use}

## Labels and codes
| Key in the manifest | Display | Code |
|---|---|---|
{labels}

## Training data
{data.summary}. {data.n_train} for training, {data.n_validation} held out (grouped by `patient_id`) for
calibration.{_citations(manifest)}

## Performance
{_performance(manifest)}

## Calibration and abstention
Temperature {cal.temperature:.3g}, fitted on the {cal.fitted_on} (NLL {cal.nll_before} → {cal.nll_after}).
Test-time views: {", ".join(manifest.tta.views)}. Abstention: {policy.rule}
(threshold {policy.max_spread}). No out-of-distribution detector.

## Limitations
{manifest.limitations or "See the training data above."}
"""


def _starting_row(manifest: ModelManifest) -> str:
    start = manifest.starting_weights
    if start is None:
        return "| Starting weights | none: trained from random initialisation |\n"
    return (
        f"| Starting weights | {start.description}; {start.source}, licence {start.licence}, "
        f"SHA-256 `{start.sha256}` |\n"
    )


def _citations(manifest: ModelManifest) -> str:
    citations = manifest.training_data.citations
    return "".join(f"\n\nReal data, cite: {citation}." for citation in citations)


def _performance(manifest: ModelManifest) -> str:
    """The held-out figures; real-lesion ones (``pad_…``) in a section of their own when recorded."""
    evaluation = manifest.evaluation
    splits, commands = evaluation.split.split("\n"), evaluation.command.split("\n")
    generated = {k: v for k, v in evaluation.metrics.items() if not _is_real(k)}
    real = {k: v for k, v in evaluation.metrics.items() if _is_real(k)}
    real_command = next((c for c in commands if _real_command(c)), None)
    generated_command = next((c for c in commands if not _real_command(c)), commands[0])
    text = f"""{splits[0]}; n = {evaluation.n}. Reproduce with:

```
{generated_command}
```

{metrics_table(generated)}
"""
    if real and real_command is not None:
        text += f"""
### Real lesions (PAD-UFES-20)
{splits[-1]}. Reproduce with:

```
{real_command}
```

{metrics_table(real)}
"""
    return text


def record_evaluation(
    directory: Path, evaluation: SkinEvaluation, command: str, spec: TaskSpec, config: SkinTrainingConfig
) -> ModelManifest:
    """Put held-out figures (from ``photomarker evaluate``) into a written package's manifest and card.

    Generated and real-lesion figures (``pad_…``, ``models.skin.real_lesion_scoring``) live side by side:
    recording one kind keeps the other's metrics, its command and its description (one line each).
    """
    manifest = load_manifest(directory)
    old = manifest.evaluation
    scored_on = (
        "end to end (lesion extraction, then this model)" if spec.sees == LESION_CROP else "on whole photos"
    )
    new_split = evaluation.split or (
        f"held-out generated photos (other seed, other subjects), scored {scored_on}; "
        "bootstrap 95 % CIs resample subjects"
    )
    kept_real = {k: v for k, v in old.metrics.items() if _is_real(k)}
    kept_generated = {k: v for k, v in old.metrics.items() if not _is_real(k)}
    old_commands, old_splits = old.command.split("\n"), old.split.split("\n")
    if evaluation.real_lesions:
        metrics = kept_generated | evaluation.flat_metrics()
        generated_commands = [c for c in old_commands if not _real_command(c)]
        commands = [*generated_commands[:1], command]
        splits = [*old_splits[:1], new_split]
        n = old.n
    else:
        metrics = evaluation.flat_metrics() | kept_real
        real = [c for c in old_commands if _real_command(c)]
        commands = [command, *real[:1]]
        splits = [new_split, *(old_splits[1:2] if real else [])]
        n = evaluation.n
    updated = manifest.model_copy(
        update={
            "evaluation": Evaluation(
                metrics=metrics, split="\n".join(splits), n=n, command="\n".join(commands)
            )
        }
    )
    save_manifest(updated, directory / MANIFEST_FILE)
    (directory / updated.card).write_text(model_card(updated, spec, config), encoding="utf-8")
    return updated


def _is_real(metric: str) -> bool:
    return metric.startswith(METRIC_PREFIX) or metric.startswith(f"n_{METRIC_PREFIX}")


def _real_command(command: str) -> bool:
    """A recorded real-lesion command: ``photomarker evaluate lesion --data <a PAD-UFES-20 CSV>``."""
    return "pad-ufes" in command.lower()


def training_config_of(manifest: ModelManifest) -> SkinTrainingConfig:
    """The epochs and members a package was trained with, from the command its card records."""
    words = manifest.training_data.summary.split()
    config = SkinTrainingConfig(members=manifest.architecture.ensemble_size)
    if "--epochs" in words:
        value = words[words.index("--epochs") + 1].strip("`;.")
        if value.isdigit():
            config = replace(config, epochs=int(value))
    return config


def _input_side(manifest: ModelManifest) -> str:
    side = manifest.input.size
    shown = f"{side}×{side} px (squashed)"
    trained = manifest.input.trained_size
    if trained is not None and trained != side:
        shown += f"; trained at {trained}×{trained} px, served larger to see small lesions (FixRes)"
    return shown
