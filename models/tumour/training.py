"""Train the tumour CNN: patient-grouped cross-validation, then the final ensemble on all data.

The network is torchvision's MobileNetV3-Small from scratch (no pretrained weights exist here)
on 64-px crops (small, to train in minutes on a shared CPU). Training augmentation follows the
Ehime preprocessing table: rotation (the eight dihedral views, plus a small random angle),
brightness, saturation, blur and crop.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional

from models.engine.architectures import build_member
from models.engine.tta import apply_geometry
from models.evaluation import auroc, grouped_kfold
from models.manifest import ALL_TTA_VIEWS, TtaView
from models.tumour.dataset import CLASSES, INPUT, MALIGNANT, TumourSample

log = logging.getLogger("photomarker.tumour")

ARCHITECTURE: Final = "mobilenet_v3_small"
_GEOMETRIES: Final = ALL_TTA_VIEWS
# The views averaged at test time (and in CV): the four 90° rotations.
TTA_VIEWS: Final[tuple[TtaView, ...]] = ("identity", "rot90", "rot180", "rot270")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class TumourTrainingConfig:
    folds: int = 5
    epochs: int = 16
    members: int = 1
    batch: int = 32
    learning_rate: float = 3e-3
    seed: int = 0
    augment: bool = True


def _normalise(x01: Tensor) -> Tensor:
    mean = torch.tensor(INPUT.normalisation.mean).view(1, 3, 1, 1)
    std = torch.tensor(INPUT.normalisation.std).view(1, 3, 1, 1)
    return (x01 - mean) / std


def augment(x01: Tensor, generator: torch.Generator) -> Tensor:
    """Ehime-style: dihedral + small rotation, random crop, brightness, saturation, blur."""
    n = x01.shape[0]
    x01 = apply_geometry(x01, _GEOMETRIES[int(torch.randint(len(_GEOMETRIES), (1,), generator=generator))])
    # Rotation by ±20° and a crop keeping 80–100 % of the side, as one affine resample.
    angle = (torch.rand(n, generator=generator) - 0.5) * (2 * math.pi / 9)
    scale = 0.8 + 0.2 * torch.rand(n, generator=generator)
    shift = (torch.rand(n, 2, generator=generator) - 0.5) * 2 * (1 - scale).unsqueeze(1)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = functional.affine_grid(theta, list(x01.shape), align_corners=False)
    x01 = functional.grid_sample(x01, grid, align_corners=False, padding_mode="zeros")
    gain = 1 + (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.4
    saturation = 1 + (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.4
    grey = x01.mean(1, keepdim=True)
    x01 = ((grey + (x01 - grey) * saturation) * gain).clamp(0, 1)
    blurred = functional.avg_pool2d(x01, 3, stride=1, padding=1, count_include_pad=False)
    blur = (torch.rand(n, 1, 1, 1, generator=generator) < 0.3).float()
    return blurred * blur + x01 * (1 - blur)


def class_weights(labels: Tensor) -> Tensor:
    """Inverse square-root frequency: rare classes (MEL 21) count more without dominating."""
    counts = torch.bincount(labels, minlength=len(CLASSES)).float().clamp_min(1)
    weights = counts.rsqrt()
    return weights / (weights * counts).sum() * counts.sum()


def train_member(x01: Tensor, labels: Tensor, config: TumourTrainingConfig, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    network = build_member(ARCHITECTURE, len(CLASSES), {})
    steps = config.epochs * math.ceil(len(labels) / config.batch)
    optimiser = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=1e-2)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=config.learning_rate, total_steps=steps)
    weights = class_weights(labels)
    network.train()
    for epoch in range(config.epochs):
        order = torch.randperm(len(labels), generator=generator)
        total = 0.0
        for start in range(0, len(labels), config.batch):
            index = order[start : start + config.batch]
            if len(index) < 2:  # BatchNorm needs two
                continue
            batch = augment(x01[index], generator) if config.augment else x01[index]
            loss = functional.cross_entropy(network(_normalise(batch)), labels[index], weight=weights)
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(index)
        log.info("seed %d epoch %d: loss %.4f", seed, epoch + 1, total / len(labels))
    return network.eval()


def tta_logits(members: list[nn.Module], x01: Tensor) -> Tensor:
    """(M, K, N, C) logits over members and the 90° rotations, as the engine computes them."""
    out = []
    with torch.inference_mode():
        for member in members:
            views = []
            for view in TTA_VIEWS:
                chunks = [
                    member(_normalise(apply_geometry(x01[s : s + 128], view)))
                    for s in range(0, len(x01), 128)
                ]
                views.append(torch.cat(chunks))
            out.append(torch.stack(views))
    return torch.stack(out)


@dataclass
class CrossValidation:
    """Out-of-fold logits for every sample and which fold held it out."""

    logits: Tensor  # (M, K, N, C)
    fold: np.ndarray
    seconds: float
    fold_sizes: list[tuple[int, int]] = field(default_factory=list)
    # Malignant-vs-benign AUROC inside each held-out fold: pooling folds also mixes their score scales.
    fold_auroc: list[float] = field(default_factory=list)


def patient_folds(samples: list[TumourSample], folds: int, *, seed: int = 0) -> list[tuple[Any, Any]]:
    """(train, test) index pairs; a patient's photos are all on one side of every split."""
    return grouped_kfold([s.patient_id for s in samples], folds, seed=seed)


def cross_validate(
    samples: list[TumourSample], x01: Tensor, config: TumourTrainingConfig, progress: Progress
) -> CrossValidation:
    labels = torch.tensor([s.label for s in samples])
    splits = patient_folds(samples, config.folds, seed=config.seed)
    logits = torch.zeros(config.members, len(TTA_VIEWS), len(samples), len(CLASSES))
    fold = np.full(len(samples), -1)
    sizes = []
    fold_aurocs = []
    began = time.perf_counter()
    for k, (train, test) in enumerate(splits):
        train_t, test_t = torch.from_numpy(train), torch.from_numpy(test)
        members = [
            train_member(x01[train_t], labels[train_t], config, seed=config.seed * 100 + k * 10 + m)
            for m in range(config.members)
        ]
        logits[:, :, test_t] = tta_logits(members, x01[test_t])
        fold[test] = k
        held = torch.softmax(logits[:, :, test_t], -1).mean((0, 1))[:, : len(MALIGNANT)].sum(1)
        fold_auroc = auroc((labels[test_t] < len(MALIGNANT)).double().numpy(), held.double().numpy())
        sizes.append((len(train), len(test)))
        fold_aurocs.append(round(float(fold_auroc), 4))
        progress(
            f"fold {k + 1}/{config.folds}: {len(train)} train, {len(test)} held out "
            f"malignant AUROC {float(fold_auroc):.3f} ({time.perf_counter() - began:.0f} s)"
        )
    return CrossValidation(logits, fold, time.perf_counter() - began, sizes, fold_aurocs)


def train_final(
    samples: list[TumourSample], x01: Tensor, config: TumourTrainingConfig, progress: Progress
) -> list[nn.Module]:
    labels = torch.tensor([s.label for s in samples])
    members = []
    for m in range(config.members):
        members.append(train_member(x01, labels, config, seed=config.seed * 100 + 99 + m))
        progress(f"final member {m + 1}/{config.members} trained")
    return members
