"""Training for the skin tasks: one loop for classifiers, the ordinal TIS heads and the segmenter.

Every task trains the same way: a patient-grouped validation split (15 % of groups) held out
for calibration and for the thresholds the engine acts on; AdamW with a one-cycle schedule;
augmentation by the eight symmetries of the square (a photo of skin has no "up", except for
body-part photos, which only get a mirror image) and by brightness/saturation jitter (phones and
rooms differ); an ensemble of ``members`` networks from different seeds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn
from torch.nn import functional

from models.engine.architectures import build_member
from models.engine.tta import apply_geometry
from models.evaluation import grouped_kfold
from models.manifest import ALL_TTA_VIEWS, Normalisation

NORMALISATION: Final = Normalisation(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
Objective = Literal["classifier", "ordinal", "segmenter"]
EpochReport = Callable[[int, int, float], None]  # (step, total steps, loss)


@dataclass(frozen=True)
class SkinTrainingConfig:
    epochs: int = 14
    batch: int = 64
    learning_rate: float = 3e-3
    members: int = 2
    seed: int = 0
    validation_share: float = 0.15
    # Body-part photos keep their orientation loosely (a hand is a hand upside down, but a face
    # on its side is rare); skin close-ups have none.
    dihedral: bool = True


@dataclass(frozen=True)
class Split:
    train: NDArray[np.intp]
    validation: NDArray[np.intp]


def grouped_split(groups: Sequence[str], share: float, seed: int) -> Split:
    """About ``share`` of the groups for validation; no group on both sides."""
    folds = max(2, round(1 / share))
    train, validation = grouped_kfold(list(groups), folds, seed=seed)[0]
    return Split(train, validation)


def normalise(x01: Tensor, normalisation: Normalisation = NORMALISATION) -> Tensor:
    mean = torch.tensor(normalisation.mean).view(1, 3, 1, 1)
    std = torch.tensor(normalisation.std).view(1, 3, 1, 1)
    return (x01 - mean) / std


def _jitter(x01: Tensor, generator: torch.Generator) -> Tensor:
    n = x01.shape[0]
    brightness = 1 + (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.3
    saturation = 1 + (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.4
    grey = x01.mean(dim=1, keepdim=True)
    return ((grey + (x01 - grey) * saturation) * brightness).clamp(0, 1)


def member_network(architecture: str, outputs: int, params: dict[str, object], seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build_member(architecture, outputs, dict(params))


def train_member(
    network: nn.Module,
    images: Tensor,
    targets: Tensor,
    objective: Objective,
    config: SkinTrainingConfig,
    seed: int,
    *,
    class_weights: Tensor | None = None,
    report: EpochReport | None = None,
    checkpoint: Path | None = None,
    normalisation: Normalisation = NORMALISATION,
) -> nn.Module:
    """Fit one network on uint8 ``images`` (N, 3, S, S).

    ``targets``: (N,) classes, (N, H) ordinal levels or (N, S, S) class masks. With
    ``checkpoint`` the state is saved after every epoch and a run interrupted is resumed from it
    (only the same run: seed, data shape and recipe).
    """
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = max(1, math.ceil(images.shape[0] / config.batch))
    total = steps_per_epoch * config.epochs
    optimiser = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=config.learning_rate, total_steps=total)
    views = ALL_TTA_VIEWS if config.dihedral else ("identity", "hflip")
    network.train()
    step = 0
    first_epoch = 0
    # The run this checkpoint belongs to: a checkpoint of any other run is never resumed.
    run = f"{seed}|{images.shape}|{config}"
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if state.get("run") == run:
            network.load_state_dict(state["network"])
            optimiser.load_state_dict(state["optimiser"])
            schedule.load_state_dict(state["schedule"])
            generator.set_state(state["generator"])
            first_epoch, step = int(state["epoch"]), int(state["step"])
    for epoch in range(first_epoch, config.epochs):
        order = torch.randperm(images.shape[0], generator=generator)
        running = 0.0
        for start in range(0, images.shape[0], config.batch):
            index = order[start : start + config.batch]
            view = views[int(torch.randint(len(views), (1,), generator=generator))]
            x = apply_geometry(_jitter(images[index].float().div(255), generator), view)
            y = targets[index]
            if objective == "segmenter":
                y = apply_geometry(y.unsqueeze(1), view).squeeze(1)
            loss = objective_loss(network(normalise(x, normalisation)), y, objective, class_weights)
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            schedule.step()
            running += float(loss.detach())
            step += 1
        if report is not None:
            report(step, total, running / steps_per_epoch)
        if checkpoint is not None:
            state = {
                "run": run,
                "network": network.state_dict(),
                "optimiser": optimiser.state_dict(),
                "schedule": schedule.state_dict(),
                "generator": generator.get_state(),
                "epoch": epoch + 1,
                "step": step,
            }
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            torch.save(state, checkpoint.with_suffix(".tmp"))
            checkpoint.with_suffix(".tmp").replace(checkpoint)
    network.eval()
    return network


def objective_loss(output: Tensor, target: Tensor, objective: Objective, weights: Tensor | None) -> Tensor:
    if objective == "classifier":
        return functional.cross_entropy(output, target, weight=weights, label_smoothing=0.05)
    if objective == "ordinal":
        items = target.shape[1]
        logits = output.view(output.shape[0], items, -1)
        # Cross-entropy plus the expected level's squared error: a miss by 2 costs more than by 1.
        ce = functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
        levels = torch.arange(logits.shape[-1], dtype=torch.float32)
        expected = (torch.softmax(logits, dim=-1) * levels).sum(-1)
        return ce + 0.25 * functional.mse_loss(expected, target.float())
    # segmenter: per-pixel cross-entropy plus a soft Dice on the lesion classes (small lesions count).
    ce = functional.cross_entropy(output, target, weight=weights)
    probabilities = torch.softmax(output, dim=1)[:, 1:]
    one_hot = functional.one_hot(target, output.shape[1]).permute(0, 3, 1, 2)[:, 1:].float()
    overlap = (probabilities * one_hot).sum(dim=(0, 2, 3))
    dice = 1 - (2 * overlap + 1) / (probabilities.sum(dim=(0, 2, 3)) + one_hot.sum(dim=(0, 2, 3)) + 1)
    return ce + dice.mean()


def balanced_weights(labels: NDArray[np.int64], classes: int) -> Tensor:
    """1/√frequency class weights, mean 1: rare classes count without swamping the common ones."""
    counts = np.bincount(labels, minlength=classes).astype(np.float64)
    weights = 1 / np.sqrt(np.maximum(counts, 1))
    return torch.tensor(weights / weights.mean(), dtype=torch.float32)
