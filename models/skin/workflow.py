"""``photomarker train TASK`` for the skin tasks: load the manifest, train, calibrate, write the package.

Steps, top to bottom: the rows carrying the task's labels → inputs (whole photos, or lesion
crops cut around each row's largest masked lesion) → a patient-grouped validation split →
``members`` networks → on the validation photos, under the test-time views the engine will
use: the temperature, the abstention threshold (the 95th percentile of the views' spread) and
the validation figures → the package (weights, manifest, model card). With a held-out test
manifest, ``photomarker evaluate`` then scores the written package end to end and its figures
replace the validation ones in the manifest and card.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image
from torch import Tensor, nn

from models.engine.calibration import fit_temperature, quantile_threshold
from models.engine.ensemble import aggregate_classifier
from models.engine.network import ensemble_state_dict
from models.engine.pretrained import starting_weights
from models.engine.tta import apply_geometry, invert_geometry
from models.errors import DatasetError
from models.evaluation import pearson_r
from models.manifest import (
    ALL_TTA_VIEWS,
    AbstentionPolicy,
    ArchitectureSpec,
    Calibration,
    Evaluation,
    InputSpec,
    LabelSpec,
    ModelManifest,
    Normalisation,
    OutputSpec,
    StartingWeights,
    TrainingData,
    TtaSpec,
    TtaView,
    WeightsSpec,
)
from models.registry import PENDING_SHA256, PackageRequest, save_model_package
from models.skin.dataset import (
    SkinRow,
    SkinTask,
    generated_provenance,
    lesion_crop,
    load_rows,
    read_mask,
    read_rgb,
    rows_for,
    squash,
)
from models.skin.labels import (
    DEFAULT_DIAGNOSES,
    key_of,
    labels_for_keys,
    load_label_file,
)
from models.skin.networks import load_starting_weights
from models.skin.package import model_card
from models.skin.tasks import LESION_CROP, TASKS, TaskSpec
from models.skin.training import (
    SkinTrainingConfig,
    balanced_weights,
    grouped_split,
    member_network,
    normalise,
    train_member,
)

Progress = Callable[[str], None]
StepReport = Callable[[int, int], None]  # (steps done, steps in all) across every member


@dataclass(frozen=True)
class TaskData:
    rows: list[SkinRow]
    images: Tensor  # uint8 (N, 3, S, S)
    targets: Tensor
    labels: tuple[LabelSpec, ...]
    source: str  # "synthetic" when the manifest was written by ``photomarker generate skin``
    generated: dict[str, object] | None = None


def tta_views(spec: TaskSpec) -> tuple[TtaView, ...]:
    return ALL_TTA_VIEWS if spec.dihedral else ("identity", "hflip")


def load_task_data(
    spec: TaskSpec, csv_path: Path, label_file: Path | None, progress: Progress | None = None
) -> TaskData:
    rows = rows_for(spec.task, load_rows(csv_path))
    labels = _labels(spec, rows, label_file)
    keys = [key_of(label) for label in labels]
    arrays: list[NDArray[np.uint8]] = []
    targets: list[Any] = []
    size = spec.input_size
    began = time.perf_counter()
    for index, row in enumerate(rows):
        # Whole-photo tasks read the photo once: for its pixels, and for the mask's size.
        image = None if spec.sees == LESION_CROP else read_rgb(row.image)
        arrays.append(lesion_crop(row, size) if image is None else squash(image, size))
        if spec.task == "lesion" and row.mask is not None and image is not None:
            mask = read_mask(row.mask, image.size)
            targets.append(np.asarray(Image.fromarray(mask).resize((size, size), Image.Resampling.NEAREST)))
        elif spec.task == "tis" and row.tis is not None:  # rows_for keeps only rows with TIS
            targets.append(row.tis)
        else:
            value = {
                "body-part": row.body_part,
                "ad-complications": row.condition,
                "diagnosis": row.diagnosis,
            }[spec.task]
            if value not in keys:
                raise DatasetError(f"line {row.line}: {value!r} is not in the label set")
            targets.append(keys.index(value))
        if progress is not None and (index + 1) % 1000 == 0:
            progress(f"loaded {index + 1}/{len(rows)} photos ({time.perf_counter() - began:.0f} s)")
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    target_tensor = torch.as_tensor(np.asarray(targets), dtype=torch.long)
    generated = generated_provenance(csv_path)
    return TaskData(rows, images, target_tensor, labels, "synthetic" if generated else "real", generated)


def _labels(spec: TaskSpec, rows: Sequence[SkinRow], label_file: Path | None) -> tuple[LabelSpec, ...]:
    if spec.task != "diagnosis":
        return spec.labels
    if label_file is not None:
        return load_label_file(label_file)
    present = sorted({row.diagnosis for row in rows if row.diagnosis})
    default_order = [key_of(label) for label in DEFAULT_DIAGNOSES]
    present.sort(
        key=lambda key: (default_order.index(key) if key in default_order else len(default_order), key)
    )
    if len(present) < 2:
        raise DatasetError("diagnosis needs at least two classes in the manifest")
    return labels_for_keys(present, DEFAULT_DIAGNOSES)


def train_task(
    task: SkinTask,
    csv_path: Path,
    config: SkinTrainingConfig,
    request: PackageRequest,
    progress: Progress,
    *,
    label_file: Path | None = None,
    steps: StepReport | None = None,
    size: int | None = None,
) -> ModelManifest:
    spec = TASKS[task]
    if size is not None:  # an experiment at another input side; the manifest records the one used
        spec = replace(spec, input_size=size)
    config = replace(config, dihedral=spec.dihedral)
    if spec.learning_rate is not None:
        config = replace(config, learning_rate=spec.learning_rate)
    began = time.perf_counter()
    data = load_task_data(spec, csv_path, label_file, progress)
    groups = [row.patient_id for row in data.rows]
    split = grouped_split(groups, config.validation_share, config.seed)
    progress(
        f"{len(data.rows)} photos of {len(set(groups))} groups: {len(split.train)} train, "
        f"{len(split.validation)} validation ({time.perf_counter() - began:.0f} s)"
    )
    outputs = len(data.labels) * (spec.levels or 1)
    weights = None
    if spec.objective == "classifier":
        weights = balanced_weights(data.targets[split.train].numpy(), len(data.labels))
    elif spec.objective == "segmenter":
        weights = balanced_weights(data.targets[split.train].flatten().numpy(), len(data.labels))
    members: list[nn.Module] = []
    per_member = config.epochs
    # Each epoch's state, beside the package: a run stopped half-way resumes (removed when done).
    checkpoints = request.directory.with_name(f".{request.directory.name}.checkpoints")
    for member_index in range(config.members):
        seed = config.seed * 100 + member_index
        network = member_network(spec.architecture, outputs, dict(spec.params), seed)
        if spec.pretrained is not None:
            load_starting_weights(network, spec.pretrained, spec.architecture)

        def report(step: int, total: int, loss: float, offset: int = member_index) -> None:
            if steps is not None:
                steps(offset * total + step, total * config.members)
            del loss

        members.append(
            train_member(
                network,
                data.images[split.train],
                data.targets[split.train],
                spec.objective,
                config,
                seed,
                class_weights=weights,
                report=report,
                checkpoint=checkpoints / f"member-{member_index}.pt",
                normalisation=spec.normalisation,
            )
        )
        progress(
            f"member {member_index + 1}/{config.members} trained "
            f"({time.perf_counter() - began:.0f} s, {per_member} epochs)"
        )
    calibration, abstention, metrics = _calibrate(spec, members, data, split.validation)
    progress(f"validation: {json.dumps({k: round(v, 4) for k, v in metrics.items()})}")
    starting = starting_weights(spec.pretrained) if spec.pretrained is not None else None
    manifest = _manifest(
        spec,
        request,
        data,
        len(split.train),
        len(split.validation),
        calibration,
        abstention,
        metrics,
        config.members,
        starting,
    )
    state = ensemble_state_dict([member.state_dict() for member in members])
    tensors = {key: value.half() if value.is_floating_point() else value for key, value in state.items()}
    written = save_model_package(
        request.directory, manifest, tensors, lambda final: model_card(final, spec, config)
    )
    shutil.rmtree(checkpoints, ignore_errors=True)
    return written


@torch.no_grad()  # not inference_mode: the temperature fit differentiates through these outputs
def view_logits(
    members: Sequence[nn.Module],
    images: Tensor,
    views: Sequence[TtaView],
    normalisation: Normalisation,
    batch: int = 128,
) -> Tensor:
    """(M, K, N, C…) outputs of each member under each view (maps brought back to the photo's frame)."""
    out = []
    for member in members:
        member.eval()
        per_view = []
        for view in views:
            chunks = []
            for start in range(0, images.shape[0], batch):
                x = apply_geometry(images[start : start + batch].float().div(255), view)
                y = member(normalise(x, normalisation))
                if y.dim() == 4:  # segmenter maps: undo the view
                    y = invert_geometry(y, view)
                chunks.append(y)
            per_view.append(torch.cat(chunks))
        out.append(torch.stack(per_view))
    return torch.stack(out)


def _calibrate(
    spec: TaskSpec, members: Sequence[nn.Module], data: TaskData, validation: NDArray[np.intp]
) -> tuple[Calibration, AbstentionPolicy, dict[str, float]]:
    images, targets = data.images[validation], data.targets[validation]
    if spec.objective == "segmenter":
        logits = view_logits(members, images, ("identity", "hflip"), spec.normalisation)
        predicted = torch.softmax(logits.float(), dim=3).mean(dim=(0, 1)).argmax(1)
        truth = targets
        lesion_pred, lesion_true = predicted > 0, truth > 0
        union = (lesion_pred | lesion_true).sum().item()
        metrics = {"validation_lesion_pixel_iou": (lesion_pred & lesion_true).sum().item() / max(union, 1)}
        return Calibration(fitted_on="not calibrated (per-pixel argmax)"), AbstentionPolicy(), metrics
    views = tta_views(spec)
    logits = view_logits(members, images, views, spec.normalisation).float()  # (M, K, N, C)
    m, k, n, _ = logits.shape
    if spec.objective == "ordinal":
        levels = spec.levels or 4
        items = len(data.labels)
        flat = logits.view(m, k, n, items, levels).reshape(m, k, n * items, levels)
        fit = fit_temperature(flat, targets.reshape(-1))
        probabilities = torch.softmax(logits.view(m, k, n, items, levels) / fit.temperature, -1)
        scale = torch.arange(levels, dtype=torch.float32)
        totals = (probabilities * scale).sum(-1).sum(-1)  # (M, K, N)
        spread = totals.reshape(m * k, n).std(0, unbiased=False).numpy()
        predicted_items = probabilities.mean(dim=(0, 1)).argmax(-1)  # (N, items)
        total_pred = predicted_items.sum(1).float().numpy()
        total_true = targets.sum(1).float().numpy()
        metrics = {"validation_total_mae": float(np.abs(total_pred - total_true).mean())}
        r = float(pearson_r(total_true.astype(np.float64), total_pred.astype(np.float64)))
        if np.isfinite(r):  # undefined when every prediction is the same (a barely trained model)
            metrics["validation_total_pearson_r"] = r
        threshold = quantile_threshold(spread, 0.95)
    else:
        fit = fit_temperature(logits, targets)
        aggregate = aggregate_classifier(logits, fit.temperature)
        spread = aggregate.spread.numpy()
        metrics = {"validation_accuracy": float((aggregate.top == targets).float().mean())}
        threshold = quantile_threshold(spread, 0.95)
    calibration = Calibration(
        temperature=fit.temperature,
        fitted_on=f"grouped validation split ({n} photos), {k} test-time views × {m} members",
        nll_before=round(fit.nll_before, 4),
        nll_after=round(fit.nll_after, 4),
    )
    abstention = AbstentionPolicy(
        max_spread=max(threshold, 1e-6),
        rule="abstain when the spread over views and members exceeds "
        "its 95th percentile on validation photos",
    )
    return calibration, abstention, metrics


def _manifest(
    spec: TaskSpec,
    request: PackageRequest,
    data: TaskData,
    n_train: int,
    n_validation: int,
    calibration: Calibration,
    abstention: AbstentionPolicy,
    metrics: dict[str, float],
    members: int,
    starting: StartingWeights | None = None,
) -> ModelManifest:
    reference = data.source == "synthetic"
    label_counts = _label_counts(spec, data)
    # Real lesions pasted into the generated photos (models.skin.real_lesions): cited, and said.
    real = data.generated.get("real_lesions") if data.generated else None
    real_part = real if isinstance(real, dict) else None
    pasted = (
        f"; {real_part['pasted']} of them hold a real {real_part['source']} lesion cut-out "
        f"({real_part['images']} images of {real_part['patients']} patients; held out: "
        f"{real_part['held_out']}), {real_part['licence']}"
        if real_part
        else ""
    )
    return ModelManifest(
        name=request.name,
        version=request.version,
        display_name=f"{spec.description}{' (reference — not for clinical use)' if reference else ''}",
        task=spec.registry_task,
        task_description=spec.description,
        output=OutputSpec(kind=spec.objective, levels=spec.levels),
        labels=data.labels,
        input=InputSpec(
            size=spec.input_size,
            normalisation=spec.normalisation,
            resize="squash",
            region="lesion" if spec.sees == LESION_CROP else "photo",
        ),
        architecture=ArchitectureSpec(
            name=spec.architecture,
            params=dict(spec.params),
            ensemble_size=members,
            cam_layer=spec.cam_layer or "blocks.2",
        ),
        weights=WeightsSpec(sha256=PENDING_SHA256),
        starting_weights=starting,
        training_data=TrainingData(
            summary=f"{len(data.rows)} photos from {request.data_description} ({label_counts})"
            + (f"; generated with `{data.generated['command']}`" if data.generated else "")
            + pasted
            + f"; trained with `{request.command}`",
            source=("mixed" if real_part else "synthetic") if reference else "real",
            n_train=n_train,
            n_validation=n_validation,
            citations=(str(real_part["citation"]),) if real_part else (),
        ),
        evaluation=Evaluation(
            metrics=metrics,
            split="patient-grouped validation split (the photos also used for calibration)",
            n=n_validation,
            command=request.command,
        ),
        intended_use=(
            "Reference model for exercising and testing the Photomarker skin pipeline on generated photos"
            + (" and on real lesions pasted into them" if real_part else "")
            + ". Not for clinical use: trained "
            + (
                "mostly on generated cartoons of skin disease"
                if real_part
                else "only on generated cartoons of skin disease"
            )
            + "."
            if reference
            else f"Research evaluation of {spec.description.lower()} on the site's own photos."
        ),
        limitations=(
            (
                "Generated photos, with real lesion cut-outs pasted into some; real skin around a lesion, "
                "cameras, light and rashes look different. Real lesions are scored only as cut-outs pasted "
                "into generated photos, never in whole real photos."
                if real_part
                else "Generated photos only; real skin, cameras and diseases look different. Figures measure "
                "whether the pipeline learns what was planted, not clinical performance."
            )
            if reference
            else ""
        ),
        reference_only=reference,
        calibration=calibration,
        abstention=abstention,
        # The segmenter too sees all eight square symmetries: what it finds on a photo must not
        # depend on how the phone was held (the eczema-plaque candidate's did).
        tta=TtaSpec(views=tta_views(spec), jitter=0.0),
    )


def _label_counts(spec: TaskSpec, data: TaskData) -> str:
    if spec.task == "lesion":
        with_lesion = int((data.targets.flatten(1) > 0).any(1).sum())
        return f"{with_lesion} with lesions, {len(data.rows) - with_lesion} without"
    if spec.task == "tis":
        totals = data.targets.sum(1)
        mean = float(totals.float().mean())
        return f"TIS total mean {mean:.1f}, range {int(totals.min())}–{int(totals.max())}"
    counts = np.bincount(data.targets.numpy(), minlength=len(data.labels))
    return ", ".join(f"{key_of(label)} {count}" for label, count in zip(data.labels, counts, strict=True))
