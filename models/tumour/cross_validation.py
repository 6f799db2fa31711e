"""Patient-grouped cross-validation of the tumour recipe, fold by fold, with checkpoints.

Each fold's members are seeded by the fold's index, and its held-out outputs (and float16
weights) are saved under a key of everything that changes them, so a killed run resumes, a run
with fewer test-time views reuses the folds, and folds can be trained in separate processes.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from models.evaluation import auroc, grouped_kfold
from models.tumour.dataset import CLASSES, MALIGNANT, TumourSample
from models.tumour.network import cam_layer
from models.tumour.training import (
    TTA_VIEWS,
    Progress,
    TumourTrainingConfig,
    build_network,
    feature_gaussian,
    ood_scores,
    train_member,
    tta_logits,
)


@dataclass
class CrossValidation:
    """Out-of-fold logits for every sample and which fold held it out."""

    logits: Tensor  # (M, K, N, C)
    fold: np.ndarray
    seconds: float
    fold_sizes: list[tuple[int, int]] = field(default_factory=list)
    # Malignant-vs-benign AUROC inside each held-out fold: pooling folds also mixes their score scales.
    fold_auroc: list[float] = field(default_factory=list)
    splits: list[tuple[Any, Any]] = field(default_factory=list)
    # Each photo's out-of-distribution score under the fold that held it out (Gaussian fitted on
    # that fold's training photos): what an unseen lesion crop scores, for the abstention threshold.
    ood: np.ndarray | None = None


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
    ood = np.zeros(len(samples))
    views = [TTA_VIEWS.index(view) for view in config.tta_views]  # all four computed, these used
    sizes = []
    fold_aurocs = []
    began = time.perf_counter()
    for k, (train, test) in enumerate(splits):
        test_t = torch.from_numpy(test)
        saved = _load_fold(config, k, test)
        if saved is not None:
            logits[:, :, test_t], ood[test] = saved
            note = " (from checkpoint)"
        else:
            logits[:, :, test_t], ood[test], reused = _train_fold(x01, labels, config, k, train, test)
            note = f" ({reused} of {config.members} members from checkpoint)" if reused else ""
        fold[test] = k
        held = torch.softmax(logits[:, views][:, :, test_t], -1).mean((0, 1))[:, : len(MALIGNANT)].sum(1)
        fold_auroc = auroc((labels[test_t] < len(MALIGNANT)).double().numpy(), held.double().numpy())
        sizes.append((len(train), len(test)))
        fold_aurocs.append(round(float(fold_auroc), 4))
        progress(
            f"fold {k + 1}/{config.folds}: {len(train)} train, {len(test)} held out "
            f"malignant AUROC {float(fold_auroc):.3f} ({time.perf_counter() - began:.0f} s){note}"
        )
    return CrossValidation(
        logits[:, views], fold, time.perf_counter() - began, sizes, fold_aurocs, splits, ood
    )


def _train_fold(
    x01: Tensor, labels: Tensor, config: TumourTrainingConfig, k: int, train: np.ndarray, test: np.ndarray
) -> tuple[Tensor, np.ndarray, int]:
    """Fold k's members trained on its training patients; their (M, K, n, C) held-out logits and
    OOD scores, saved to the checkpoint directory when there is one, and how many members came
    from a smaller run's checkpoint."""
    train_t, test_t = torch.from_numpy(train), torch.from_numpy(test)
    layer = cam_layer(config.backbone)
    reused_logits, members = _members_saved_with_fewer(config, k, test)
    for m in range(len(members), config.members):
        seed = config.seed * 100 + k * 10 + m
        members.append(train_member(x01[train_t], labels[train_t], config, seed=seed))
    logits = torch.cat([reused_logits, tta_logits(members[len(reused_logits) :], x01[test_t])])
    gaussian = feature_gaussian(members, x01[train_t], labels[train_t], layer)
    ood = ood_scores(members, x01[test_t], gaussian, layer).numpy()
    _save_fold(config, k, test, logits, ood, members)
    return logits, ood, len(reused_logits)


def _members_saved_with_fewer(
    config: TumourTrainingConfig, k: int, test: np.ndarray
) -> tuple[Tensor, list[nn.Module]]:
    """The members a run of this recipe with fewer members already trained in fold k.

    Member m's seed does not depend on how many members there are, so those are the first members
    of this run too: their held-out logits are reused exactly (float32, as saved); their networks
    come back from the float16 weights, which only the OOD statistics read.
    """
    for fewer in range(config.members - 1, 0, -1):
        smaller = replace(config, members=fewer)
        path = _fold_file(smaller, k)
        if path is None or not path.is_file():
            continue
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if not torch.equal(saved["test"], torch.from_numpy(test)) or "members" not in saved:
            continue  # another fold, or held-out outputs kept without the networks (held_out.py)
        members = []
        for weights in saved["members"]:
            network = build_network(config)
            state = {name: t.float() if t.is_floating_point() else t for name, t in weights.items()}
            network.load_state_dict(state)
            members.append(network.eval())
        return saved["logits"], members
    return torch.zeros(0, len(TTA_VIEWS), len(test), len(CLASSES)), []


def train_folds(
    samples: list[TumourSample],
    x01: Tensor,
    config: TumourTrainingConfig,
    folds: list[int],
    progress: Progress,
) -> None:
    """Only the given CV folds (0-based), each saved to ``config.checkpoint_dir``.

    Folds are independent and seeded by their index, so separate processes (or machines sharing
    the directory) can each take some; a later full run then reads them all "from checkpoint"
    and gets exactly the figures a single run would have.
    """
    if config.checkpoint_dir is None:
        raise ValueError("training single folds needs a checkpoint directory to keep them in")
    labels = torch.tensor([s.label for s in samples])
    splits = patient_folds(samples, config.folds, seed=config.seed)
    began = time.perf_counter()
    for k in folds:
        train, test = splits[k]
        if _load_fold(config, k, test) is None:
            reused = _train_fold(x01, labels, config, k, train, test)[2]
            note = f"saved ({time.perf_counter() - began:.0f} s)" + (
                f", {reused} of {config.members} members from checkpoint" if reused else ""
            )
        else:
            note = "already saved"
        progress(f"fold {k + 1}/{config.folds}: {note}")


def _fold_file(config: TumourTrainingConfig, k: int) -> Path | None:
    """One file per fold, keyed by everything that changes its outputs (recipe, size, members, seed)."""
    if config.checkpoint_dir is None:
        return None
    # The views and the type rule do not change the training.
    trained = replace(config, tta_views=TTA_VIEWS, type_rule="most-likely").describe()
    key = hashlib.sha256(f"{trained}|{config.folds}|{config.members}|{config.seed}".encode()).hexdigest()[:16]
    return config.checkpoint_dir / f"tumour-cv-{key}-fold{k}.pt"


def _load_fold(config: TumourTrainingConfig, k: int, test: np.ndarray) -> tuple[Tensor, np.ndarray] | None:
    path = _fold_file(config, k)
    if path is None or not path.is_file():
        return None
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if not torch.equal(saved["test"], torch.from_numpy(test)):
        return None  # other data: the fold is not the one saved
    return saved["logits"], saved["ood"].numpy()


def _save_fold(
    config: TumourTrainingConfig,
    k: int,
    test: np.ndarray,
    logits: Tensor,
    ood: np.ndarray,
    members: list[nn.Module],
) -> None:
    """The fold's held-out outputs, and its members' weights (float16) for held-out studies that
    need the fold's own model on new inputs (``bench/steadiness_folds.py --folds``)."""
    path = _fold_file(config, k)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    weights = [
        {name: t.detach().half() if t.is_floating_point() else t for name, t in m.state_dict().items()}
        for m in members
    ]
    saved = {
        "test": torch.from_numpy(test),
        "logits": logits,
        "ood": torch.from_numpy(ood),
        "members": weights,
    }
    torch.save(saved, partial)
    partial.replace(path)  # a killed run never leaves half a checkpoint
