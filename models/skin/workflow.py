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
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from models.engine.calibration import fit_temperature, quantile_threshold
from models.engine.ensemble import aggregate_classifier
from models.engine.network import ensemble_state_dict
from models.engine.pretrained import starting_weights
from models.engine.tta import apply_geometry, invert_geometry
from models.evaluation import pearson_r
from models.manifest import AbstentionPolicy, Calibration, ModelManifest, Normalisation, TtaView
from models.registry import PackageRequest, save_model_package
from models.skin.dataset import SkinTask
from models.skin.networks import load_starting_weights
from models.skin.package import model_card
from models.skin.package_manifest import skin_manifest
from models.skin.task_data import Progress, TaskData, load_task_data
from models.skin.tasks import TASKS, TaskSpec, tta_views
from models.skin.training import (
    SkinTrainingConfig,
    balanced_weights,
    grouped_split,
    member_network,
    normalise,
    train_member,
)

StepReport = Callable[[int, int], None]  # (steps done, steps in all) across every member


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
    if size is not None:  # an experiment at another input side, trained and served at it
        spec = replace(spec, input_size=size, served_size=None)
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
    manifest = skin_manifest(
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
