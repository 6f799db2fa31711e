"""Training and scoring the conjunctiva segmenter on composites of real CP-AnemiC strips.

``photomarker train hb-localiser --data labels.csv`` runs :func:`train_segmenter`:

1. Read the data set like the Hb training does (duplicate rule, strict CV groups from
   ``models.hb.dataset``) and put whole groups — never single strips — on the training or the
   held-out side (80 / 20), so no strip, copy or re-crop of one is on both.
2. Paste training strips into generated eyelid scenes (``models.hb.scenes``, 70 % with a
   strip, 30 % without any conjunctiva); the strip's alpha is the exact ground-truth mask.
3. Train the tiny U-Net (``models.hb.segmenter``) with Dice + binary cross-entropy, mirror
   images as augmentation, one CPU thread.
4. Score it on held-out composites made from the held-out strips with other seeds — and the
   classical localiser, and the two as deployed (network, classical fallback), on the very same
   photos — then write the package with a model card generated from those figures.

``photomarker evaluate hb-localiser --data labels.csv`` regenerates the same held-out set and
scores the installed package without training (:func:`rescore`); with ``--record`` it writes those
figures into the package (:func:`record_rescored`).

The composites live in ``models.hb.segmenter_composites``, the score records and their tables
in ``models.hb.segmenter_scores``, the manifest and model card in ``models.hb.segmenter_card``.
"""

from __future__ import annotations

import io
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from PIL import Image

from models.hb.dataset import cv_groups, load_dataset, load_strips
from models.hb.localise import Localisation, localise_conjunctiva
from models.hb.scenes import Scene
from models.hb.segmenter import MIN_AREA_FRACTION, MIN_CONFIDENCE, ConjunctivaSegmenter, ConjunctivaUNet
from models.hb.segmenter_card import record_evaluation, save_segmenter_package
from models.hb.segmenter_composites import COUNTS, SEEDS, StripSplit, make_scenes, scene_arrays
from models.hb.segmenter_scores import (
    DETECTION_IOU,
    METHODS,
    MethodScore,
    RuleChoice,
    SegmenterReport,
    mask_iou,
)
from models.hb.strip import Strip
from models.intake import IntakeLimits, decode_photo
from models.manifest import ModelManifest, load_manifest
from models.registry import PackageRequest

DEFAULT_NAME: Final = "hb-conjunctiva-localiser"
HELD_OUT_SHARE: Final = 0.2
SPLIT_SEED: Final = 7
# Confidence thresholds compared on validation composites (training strips, unseen scenes).
CONFIDENCE_GRID: Final = (0.7, 0.8, 0.85, 0.9)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class SegmenterConfig:
    epochs: int = 10
    batch: int = 32
    learning_rate: float = 3e-3
    seed: int = 0
    train_scenes: int = COUNTS["train"]
    held_out_scenes: int = COUNTS["held-out"]
    validation_scenes: int = COUNTS["validation"]


DEFAULT_CONFIG: Final = SegmenterConfig()


def split_strips(csv_path: Path) -> StripSplit:
    """Training and held-out strips, split by the data set's strict CV groups."""
    dataset = load_dataset(csv_path)
    strips = load_strips(dataset)
    groups = cv_groups(dataset, strips, "strict")
    unique = sorted(set(groups))
    rng = np.random.default_rng(SPLIT_SEED)
    held = set(rng.choice(unique, size=max(1, round(HELD_OUT_SHARE * len(unique))), replace=False).tolist())
    train = tuple(s for s, g in zip(strips, groups, strict=True) if g not in held)
    held_out = tuple(s for s, g in zip(strips, groups, strict=True) if g in held)
    held_out_groups = tuple(str(g) for g in groups if g in held)
    return StripSplit(
        train, held_out, frozenset(unique) - held, frozenset(held), dataset.rows, held_out_groups
    )


def fit_network(
    x: NDArray[np.float32], y: NDArray[np.float32], config: SegmenterConfig, progress: Progress
) -> ConjunctivaUNet:
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    network = ConjunctivaUNet()
    optimiser = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=1e-4)
    steps = config.epochs * int(np.ceil(len(x) / config.batch))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, config.learning_rate, total_steps=steps)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    for epoch in range(config.epochs):
        network.train()
        order = rng.permutation(len(x))
        total = 0.0
        for start in range(0, len(order), config.batch):
            index = torch.from_numpy(order[start : start + config.batch])
            xb, yb = xs[index], ys[index]
            # Left and right eyes mirror each other; a vertical flip would put the eye below the lid.
            if rng.random() < 0.5:
                xb, yb = xb.flip(-1), yb.flip(-1)
            logits = network(xb)
            loss = F.binary_cross_entropy_with_logits(logits, yb) + _dice_loss(logits, yb)
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(index)
        progress(f"segmenter epoch {epoch + 1}/{config.epochs}: loss {total / len(x):.4f}")
    return network.eval()


def _dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits)
    inter = (p * target).sum(dim=(1, 2, 3))
    union = p.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3))
    # +1 on both sides: a scene without conjunctiva scores 1 when nothing is predicted.
    return (1.0 - (2.0 * inter + 1.0) / (union + 1.0)).mean()


def score_localisers(
    segmenter: ConjunctivaSegmenter, scenes: Sequence[Scene], strip_groups: Sequence[str]
) -> SegmenterReport:
    """The network alone, the classical localiser alone, and both as deployed, on the same photos.

    ``strip_groups`` is the CV group of each strip the scenes were made from (``Scene.source``):
    the CIs resample composites with conjunctiva by it.
    """
    began = time.perf_counter()
    scores = {method: MethodScore() for method in METHODS}
    fallback_used = 0
    limits = IntakeLimits()
    for scene in scenes:
        buffer = io.BytesIO()
        Image.fromarray(scene.rgb).save(buffer, format="PNG")
        photo = decode_photo(buffer.getvalue(), limits=limits)
        network = segmenter.segment(scene.rgb).mask
        classical = localise_conjunctiva(photo, None).mask
        deployed: Localisation = localise_conjunctiva(photo, segmenter)
        fallback_used += deployed.fallback is not None
        for method, mask in zip(METHODS, (network, classical, deployed.mask), strict=True):
            score = scores[method]
            if scene.positive:
                score.add_positive(mask_iou(mask, scene.mask), _group_of(scene, strip_groups))
            else:
                score.negatives_found.append(mask is not None)
    return SegmenterReport(
        {m: s.to_json() for m, s in scores.items()}, fallback_used, time.perf_counter() - began
    )


def _group_of(scene: Scene, strip_groups: Sequence[str]) -> str:
    if scene.source is None or scene.source >= len(strip_groups):
        raise ValueError("a composite with conjunctiva must name a strip of the scored split")
    return strip_groups[scene.source]


def choose_rule(network: ConjunctivaUNet, strips: Sequence[Strip], config: SegmenterConfig) -> RuleChoice:
    """The confidence threshold and fallback rule, judged on composites of *training* strips.

    "Unsure" is a component covering ≥ 1 % of the frame below the threshold; "with fallback"
    hands those photos to the classical localiser, as a fallback on low confidence would.
    """
    scenes = make_scenes(strips, config.validation_scenes, SEEDS["validation"])
    segmenter = ConjunctivaSegmenter(network, 0.0, DEFAULT_NAME, "unsaved")
    limits = IntakeLimits()
    found: list[tuple[bool, float, float, float, bool]] = []  # positive, confidence, area, iou, classical
    for scene in scenes:
        seen = segmenter.segment(scene.rgb)
        buffer = io.BytesIO()
        Image.fromarray(scene.rgb).save(buffer, format="PNG")
        classical = localise_conjunctiva(decode_photo(buffer.getvalue(), limits=limits), None).mask
        iou = mask_iou(seen.mask, scene.mask) if scene.positive else 0.0
        found.append((scene.positive, seen.confidence, seen.area_fraction, iou, classical is not None))
    table = np.asarray(found, dtype=np.float64)
    positive = table[:, 0] == 1
    rows = []
    for threshold in CONFIDENCE_GRID:
        sure = (table[:, 1] >= threshold) & (table[:, 2] >= MIN_AREA_FRACTION)
        unsure = ~sure & (table[:, 2] >= MIN_AREA_FRACTION)
        detected = float(((table[:, 3] >= DETECTION_IOU) & sure)[positive].mean())
        false = float(sure[~positive].mean())
        false_fb = float((sure | (unsure & (table[:, 4] == 1)))[~positive].mean())
        rows.append((threshold, detected, false, false_fb, int(unsure.sum())))
    return RuleChoice(tuple(rows), int(positive.sum()), int((~positive).sum()))


def held_out_scenes(split: StripSplit, config: SegmenterConfig) -> list[Scene]:
    return make_scenes(split.held_out, config.held_out_scenes, SEEDS["held-out"])


def rescore(
    csv_path: Path, segmenter: ConjunctivaSegmenter, config: SegmenterConfig = DEFAULT_CONFIG
) -> tuple[SegmenterReport, StripSplit]:
    """An installed segmenter on the very held-out composites its training was scored on."""
    split = split_strips(csv_path)
    scenes = held_out_scenes(split, config)
    return score_localisers(segmenter, scenes, split.held_out_strip_groups), split


def record_rescored(
    directory: Path,
    segmenter: ConjunctivaSegmenter,
    rescored: tuple[SegmenterReport, StripSplit],
    command: str,
    config: SegmenterConfig = DEFAULT_CONFIG,
) -> ModelManifest:
    """Write ``rescore``'s figures into the package; the card's validation table is made again too.

    The card reports the epochs of the package's own training command; ``config`` gives the
    composite counts, which must be the ones ``rescore`` used.
    """
    report, split = rescored
    manifest = load_manifest(directory)
    training_command = manifest.evaluation.command.split("\n")[0]
    words = shlex.split(training_command)
    epochs = int(words[words.index("--epochs") + 1]) if "--epochs" in words else config.epochs
    trained = replace(config, epochs=epochs)
    rule = choose_rule(segmenter.network, split.train, trained)
    return record_evaluation(directory, manifest, report, rule, split, trained, command)


def train_segmenter(
    csv_path: Path, config: SegmenterConfig, request: PackageRequest | None, progress: Progress
) -> tuple[SegmenterReport, ModelManifest | None, dict[str, object]]:
    began = time.perf_counter()
    split = split_strips(csv_path)
    progress(
        f"{len(split.train)} training strips ({split.groups_train} groups), {len(split.held_out)} held-out "
        f"strips ({split.groups_held_out} groups)"
    )
    train = make_scenes(split.train, config.train_scenes, SEEDS["train"])
    x, y = scene_arrays(train)
    del train
    progress(f"{len(x)} training composites generated in {time.perf_counter() - began:.0f} s")
    network = fit_network(x, y, config, progress)
    train_seconds = time.perf_counter() - began
    rule = choose_rule(network, split.train, config)
    progress("confidence threshold and fallback rule on validation composites:\n" + rule.format_table())
    segmenter = ConjunctivaSegmenter(network, MIN_CONFIDENCE, DEFAULT_NAME, "unsaved")
    report = score_localisers(segmenter, held_out_scenes(split, config), split.held_out_strip_groups)
    extra: dict[str, object] = {
        "train_strips": len(split.train),
        "held_out_strips": len(split.held_out),
        "train_groups": split.groups_train,
        "held_out_groups": split.groups_held_out,
        "train_seconds": round(train_seconds, 1),
        "parameters": sum(p.numel() for p in network.parameters()),
    }
    manifest = None
    if request is not None:
        manifest = save_segmenter_package(request, network, report, rule, split, config)
    return report, manifest, extra
