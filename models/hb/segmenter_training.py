"""Training and scoring the conjunctiva segmenter on composites of real CP-AnemiC strips.

``photomarker train hb-localiser --data labels.csv`` runs :func:`train_segmenter`:

1. Read the data set like the Hb training does (duplicate rule, strict CV groups from
   ``models.hb.dataset``) and put whole groups — never single strips — on the training or the
   held-out side (80 / 20), so no strip, copy or re-crop of one is on both.
2. Paste training strips into generated eyelid scenes (``models.hb.scenes``, 75 % with a
   strip, 25 % without any conjunctiva); the strip's alpha is the exact ground-truth mask.
3. Train the tiny U-Net (``models.hb.segmenter``) with Dice + binary cross-entropy, mirror
   images as augmentation, one CPU thread.
4. Score it on held-out composites made from the held-out strips with other seeds — and the
   classical localiser, and the two as deployed (network, classical fallback), on the very same
   photos — then write the package with a model card generated from those figures.

``photomarker evaluate hb-localiser --data labels.csv`` regenerates the same held-out set and
scores the installed package without training.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Final

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from PIL import Image

from models.engine.network import ensemble_state_dict
from models.hb.dataset import STRICT_GROUPING_RULE, cv_groups, load_dataset, load_strips
from models.hb.localise import Localisation, localise_conjunctiva
from models.hb.package import CITATION
from models.hb.scenes import Scene, eyelid_scene, negative_scene
from models.hb.segmenter import (
    ARCHITECTURE,
    CAM_LAYER,
    INPUT_HEIGHT,
    INPUT_WIDTH,
    MIN_AREA_FRACTION,
    MIN_CONFIDENCE,
    TASK,
    WIDTHS,
    ConjunctivaSegmenter,
    ConjunctivaUNet,
    photo_tensor,
)
from models.hb.strip import Strip
from models.intake import IntakeLimits, decode_photo
from models.manifest import (
    ArchitectureSpec,
    Evaluation,
    InputSpec,
    LabelSpec,
    ModelManifest,
    Normalisation,
    OutputSpec,
    TrainingData,
    TtaSpec,
    WeightsSpec,
)
from models.registry import PENDING_SHA256, PackageRequest, save_model_package

DEFAULT_NAME: Final = "hb-conjunctiva-localiser"
REFERENCE_LABEL: Final = "reference — trained on generated composites"
HELD_OUT_SHARE: Final = 0.2
SPLIT_SEED: Final = 7
SEEDS: Final = {"train": 11, "held-out": 22, "validation": 33}
COUNTS: Final = {"train": 2000, "held-out": 500, "validation": 400}
# Confidence thresholds compared on validation composites (training strips, unseen scenes).
CONFIDENCE_GRID: Final = (0.7, 0.8, 0.85, 0.9)
POSITIVE_SHARE: Final = 0.7
# A localisation counts as a detection when its mask overlaps the truth at IoU ≥ 0.5.
DETECTION_IOU: Final = 0.5
METHODS: Final = ("network", "classical", "network+fallback")

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


@dataclass(frozen=True)
class StripSplit:
    train: tuple[Strip, ...]
    held_out: tuple[Strip, ...]
    train_groups: frozenset[str]
    held_out_groups: frozenset[str]
    rows: int

    @property
    def groups_train(self) -> int:
        return len(self.train_groups)

    @property
    def groups_held_out(self) -> int:
        return len(self.held_out_groups)


@dataclass
class MethodScore:
    """IoU and detection on positives, false detections on negatives, for one method."""

    ious: list[float] = field(default_factory=list)
    false_found: int = 0
    negatives: int = 0

    def to_json(self) -> dict[str, float]:
        iou = np.asarray(self.ious, dtype=np.float64)
        return {
            "mean_iou": round(float(iou.mean()), 4) if iou.size else 0.0,
            "median_iou": round(float(np.median(iou)), 4) if iou.size else 0.0,
            "detection_rate": round(float((iou >= DETECTION_IOU).mean()), 4) if iou.size else 0.0,
            "found_rate": round(float((iou > 0).mean()), 4) if iou.size else 0.0,
            "false_found_rate": round(self.false_found / self.negatives, 4) if self.negatives else 0.0,
            "positives": int(iou.size),
            "negatives": self.negatives,
        }


@dataclass(frozen=True)
class SegmenterReport:
    scores: dict[str, dict[str, float]]
    fallback_used: int  # held-out photos (of all) the deployed localiser sent to the classical method
    seconds: float

    def to_json(self) -> dict[str, object]:
        return {
            "held_out": self.scores,
            "fallback_used": self.fallback_used,
            "score_seconds": round(self.seconds, 1),
        }

    def format_table(self) -> str:
        head = (
            f"{'method':<18} {'mean IoU':>8} {'median':>7} {'detected':>9} {'found':>7} {'false on neg.':>13}"
        )
        lines = [head]
        for method, s in self.scores.items():
            lines.append(
                f"{method:<18} {s['mean_iou']:>8.3f} {s['median_iou']:>7.3f} {s['detection_rate']:>9.1%} "
                f"{s['found_rate']:>7.1%} {s['false_found_rate']:>13.1%}"
            )
        first = next(iter(self.scores.values()))
        lines.append(
            f"({first['positives']} held-out composites with conjunctiva, {first['negatives']} without; "
            f"detected = IoU ≥ {DETECTION_IOU:g}; classical fallback used on {self.fallback_used} of them)"
        )
        return "\n".join(lines)


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
    return StripSplit(train, held_out, frozenset(unique) - held, frozenset(held), dataset.rows)


def make_scenes(strips: Sequence[Strip], count: int, seed: int) -> list[Scene]:
    rng = np.random.default_rng(seed)
    scenes = []
    for _ in range(count):
        if rng.random() < POSITIVE_SHARE:
            scenes.append(eyelid_scene(rng, strips[int(rng.integers(len(strips)))]))
        else:
            scenes.append(negative_scene(rng))
    return scenes


def scene_arrays(scenes: Sequence[Scene]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Network inputs (N, 3, 96, 128) and soft targets (N, 1, 96, 128): the mask's area share."""
    x = np.stack([photo_tensor(scene.rgb) for scene in scenes])
    y = np.stack(
        [
            np.asarray(
                Image.fromarray(scene.mask.astype(np.uint8) * 255).resize(
                    (INPUT_WIDTH, INPUT_HEIGHT), Image.Resampling.BOX
                ),
                dtype=np.float32,
            )[None]
            / 255.0
            for scene in scenes
        ]
    )
    return x.astype(np.float32), y.astype(np.float32)


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


def _iou(found: NDArray[np.bool_] | None, truth: NDArray[np.bool_]) -> float:
    if found is None:
        return 0.0
    inter = np.count_nonzero(found & truth)
    union = np.count_nonzero(found | truth)
    return inter / union if union else 0.0


def score_localisers(segmenter: ConjunctivaSegmenter, scenes: Sequence[Scene]) -> SegmenterReport:
    """The network alone, the classical localiser alone, and both as deployed, on the same photos."""
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
                score.ious.append(_iou(mask, scene.mask))
            else:
                score.negatives += 1
                score.false_found += mask is not None
    return SegmenterReport(
        {m: s.to_json() for m, s in scores.items()}, fallback_used, time.perf_counter() - began
    )


@dataclass(frozen=True)
class RuleChoice:
    """Detection and false detections per confidence threshold, without and with the fallback."""

    rows: tuple[tuple[float, float, float, float, int], ...]  # (threshold, detected, false, false+fb, fb)
    positives: int
    negatives: int

    def format_table(self) -> str:
        lines = [f"{'threshold':>9} {'detected':>9} {'false on neg.':>13} {'with fallback when unsure':>26}"]
        for threshold, detected, false, false_fb, handed in self.rows:
            lines.append(
                f"{threshold:>9g} {detected:>9.1%} {false:>13.1%} {false_fb:>15.1%} ({handed} handed over)"
            )
        lines.append(f"({self.positives} validation composites with conjunctiva, {self.negatives} without)")
        return "\n".join(lines)


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
        iou = _iou(seen.mask, scene.mask) if scene.positive else 0.0
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
    report = score_localisers(segmenter, held_out_scenes(split, config))
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


def save_segmenter_package(
    request: PackageRequest,
    network: ConjunctivaUNet,
    report: SegmenterReport,
    rule: RuleChoice,
    split: StripSplit,
    config: SegmenterConfig,
) -> ModelManifest:
    metrics = {
        f"{method.replace('+', '_')}_{key}": float(value)
        for method, score in report.scores.items()
        for key, value in score.items()
    }
    metrics["min_confidence"] = MIN_CONFIDENCE
    manifest = ModelManifest(
        name=request.name,
        version=request.version,
        display_name=f"Conjunctiva segmenter, tiny U-Net ({REFERENCE_LABEL})",
        task=TASK,
        task_description="Finds the palpebral conjunctiva in a whole photo of a pulled-down lower eyelid",
        output=OutputSpec(kind="classifier"),
        labels=(
            LabelSpec(code="background", display="Not conjunctiva"),
            LabelSpec(code="palpebral-conjunctiva", display="Palpebral conjunctiva"),
        ),
        input=InputSpec(
            size=INPUT_WIDTH,
            normalisation=Normalisation(mean=(0.5, 0.5, 0.5), std=(1.0, 1.0, 1.0)),
            resize="squash",
        ),
        architecture=ArchitectureSpec(
            name=ARCHITECTURE, params={"widths": list(WIDTHS)}, ensemble_size=1, cam_layer=CAM_LAYER
        ),
        weights=WeightsSpec(sha256=PENDING_SHA256),
        training_data=TrainingData(
            summary=f"{config.train_scenes} generated eyelid composites ({POSITIVE_SHARE:.0%} with a real "
            f"CP-AnemiC strip pasted in as the conjunctiva, the rest without any) from {len(split.train)} "
            f"strips in {split.groups_train} groups of {request.data_description}; models.hb.scenes, seed "
            f"{SEEDS['train']}",
            source="mixed",
            n_train=config.train_scenes,
            n_validation=0,
            n_test=config.held_out_scenes,
            citations=(CITATION,),
        ),
        evaluation=Evaluation(
            metrics=metrics,
            split=f"{config.held_out_scenes} held-out composites (seed {SEEDS['held-out']}) made from "
            f"{len(split.held_out)} strips in {split.groups_held_out} CV groups that training never saw",
            n=config.held_out_scenes,
            command=request.command,
        ),
        intended_use="Finding the palpebral conjunctiva in a whole eyelid photo so the Hb estimator reads "
        f"only the tissue. {REFERENCE_LABEL[0].upper()}{REFERENCE_LABEL[1:]} — not for clinical use; when it "
        "is not confident the classical colour localiser is used instead.",
        limitations="Never trained or scored on a real whole-eyelid photo: the tissue is real but the eye, "
        "lid, skin, lashes and light around it are drawn. How it does on real phone photos is unknown. "
        "Photos are squashed to 96×128, so portrait photos distort the eyelid's shape.",
        reference_only=True,
        tta=TtaSpec(views=("identity",), jitter=0.0),
    )
    tensors = ensemble_state_dict([network.state_dict()])
    return save_model_package(
        request.directory, manifest, tensors, lambda final: render_card(final, report, rule, split, config)
    )


def render_card(
    manifest: ModelManifest,
    report: SegmenterReport,
    rule: RuleChoice,
    split: StripSplit,
    config: SegmenterConfig,
) -> str:
    return "\n".join(
        [
            f"# {manifest.display_name} — `{manifest.name}` {manifest.version}",
            "",
            "> **Reference — trained on generated composites; not for clinical use.** The tissue is real "
            "(CP-AnemiC strips); everything around it is drawn.",
            "",
            f"Generated by `{manifest.evaluation.command}` on {date.today().isoformat()}; every figure below "
            "comes from that run.",
            "",
            "## What it does",
            "",
            "Finds the palpebral conjunctiva in a whole photo of a pulled-down lower eyelid, for the Hb "
            "estimator (`hb-conjunctiva`) to read. The photo is squashed to 96×128; the largest component "
            "with probability > 0.5 is kept when it covers ≥ 1 % of the frame and its mean probability is "
            f'≥ {MIN_CONFIDENCE:g}; otherwise the network\'s answer is "not found". The classical colour '
            "localiser (`models.hb.localise`) is the fallback when no segmenter is installed; it is not "
            "asked when the network is unsure (see the validation table below). A photo whose "
            "conjunctiva is not found gets a photo-quality result that says so (retake) and no Hb "
            "value. Pre-cropped strips (transparent background) skip both methods.",
            "",
            "## How it was made",
            "",
            f"- {CITATION}",
            f"- {split.rows} labelled rows → {len(split.train) + len(split.held_out)} distinct strips "
            f"(the Hb training's duplicate rule), split by whole CV groups ({STRICT_GROUPING_RULE}): "
            f"{len(split.train)} strips / {split.groups_train} groups for training, "
            f"{len(split.held_out)} strips / {split.groups_held_out} groups held out.",
            f"- {config.train_scenes} training composites (`models.hb.scenes`, seed {SEEDS['train']}): "
            f"{POSITIVE_SHARE:.0%} with a strip scaled, rotated and mirrored into a drawn eyelid scene (skin "
            "tones very light to very dark, eyeball and iris above, lid margin and lashes below, fingers, "
            "walls, red skin blotches, colour casts, gradients, vignetting, blur, noise, JPEG; a third "
            "are close-ups with a thick lining cut off at the frame's sides); the rest without "
            "conjunctiva (an eye with the lid not pulled down, red skin, a limb with eczema in front "
            "of a wall, walls). The strip's alpha channel is the ground-truth mask.",
            f"- Tiny U-Net, widths {list(WIDTHS)}, {manifest.weights.parameters} parameters; Dice + BCE, "
            f"AdamW with a one-cycle schedule, {config.epochs} epochs, batch {config.batch}, mirror images, "
            "one CPU thread.",
            f"- Weights SHA-256 `{manifest.weights.sha256}`.",
            "",
            "## Choosing the confidence threshold and the fallback rule",
            "",
            f"On {config.validation_scenes} validation composites (seed {SEEDS['validation']}) made from the "
            '*training* strips, so the held-out figures below stay untouched by the choice. "With '
            'fallback" hands every unsure photo (a component ≥ 1 % of the frame below the threshold) to '
            f"the classical localiser. Shipped: threshold {MIN_CONFIDENCE:g}, no fallback on low "
            "confidence.",
            "",
            "```",
            rule.format_table(),
            "```",
            "",
            "## Held-out composites",
            "",
            manifest.evaluation.split + "; the classical localiser scored on the same photos, and the "
            "localiser as deployed (`network+fallback`: the classical method only when no network is "
            "installed, so equal to the network here). Detected = IoU ≥ 0.5 with the true mask (a miss "
            "counts as IoU 0); false on neg. = any mask on a photo without conjunctiva.",
            "",
            "```",
            report.format_table(),
            "```",
            "",
            "## Limitations",
            "",
            manifest.limitations,
            "",
            "## Reproduce",
            "",
            "```",
            manifest.evaluation.command,
            f"photomarker evaluate hb-localiser --data PATH/labels.csv --model {manifest.name}",
            "```",
            "",
        ]
    )
