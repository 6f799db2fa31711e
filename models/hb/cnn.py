"""The CNN Hb regressor: a small convolutional net on the masked 64×128 conjunctiva strip.

No pretrained weights exist for this input (and nothing may be downloaded), so the net is
small enough to learn from a few hundred strips on a CPU in about a minute: four conv blocks
(16–32–48–48 channels, ≈ 40 k parameters), a mask-weighted average pool so that background
pixels never dilute the tissue's evidence, and a linear head. The target is standardised with
the training set's mean and SD, which are stored as buffers so the module returns g/dL.

Augmentation keeps what carries the signal: horizontal flips (left and right eyes mirror each
other), small shifts and a mild overall brightness change (lighting varies between photos).
Vertical flips are left out: they would swap the lower and upper halves, and the lower half
is where the U-Tokyo study located the signal. Hue is never jittered — it *is* the signal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import Tensor, nn

INPUT_HEIGHT: Final = 64
INPUT_WIDTH: Final = 128
INPUT_CHANNELS: Final = 4  # RGB zeroed outside the tissue, then the tissue mask
CAM_LAYER: Final = "features.3"


def _block(inputs: int, outputs: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(outputs),
        nn.ReLU(inplace=True),
    )


class HbStripCnn(nn.Module):
    """(B, 4, 64, 128) masked strips → (B, 1) haemoglobin in g/dL."""

    target_mean: Tensor
    target_std: Tensor

    def __init__(self, widths: Sequence[int] = (16, 32, 48, 48), dropout: float = 0.2) -> None:
        super().__init__()
        w = list(widths)
        # A strided stem halves the resolution at once: colour, not fine texture, is the signal,
        # and it makes training ~4× cheaper on a CPU. The last block keeps an 8×16 map for Grad-CAM.
        self.features = nn.Sequential(
            _block(INPUT_CHANNELS, w[0], stride=2),
            nn.Sequential(nn.MaxPool2d(2), _block(w[0], w[1])),
            nn.Sequential(nn.MaxPool2d(2), _block(w[1], w[2])),
            _block(w[2], w[3]),
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(w[3], 1)
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))

    def forward(self, x: Tensor) -> Tensor:
        maps = self.features(x)
        # Average only over tissue: the mask channel, shrunk to the feature map's size.
        mask = F.adaptive_avg_pool2d(x[:, 3:4], maps.shape[-2:])
        pooled = (maps * mask).sum(dim=(2, 3)) / mask.sum(dim=(2, 3)).clamp_min(1e-3)
        z: Tensor = self.head(self.dropout(pooled))
        return z * self.target_std + self.target_mean


def hb_strip_cnn(num_outputs: int = 1, **params: Any) -> nn.Module:
    """Builder the model manifest names (``models.hb.cnn:hb_strip_cnn``)."""
    if num_outputs != 1:
        raise ValueError("the Hb CNN is a regressor with one output")
    return HbStripCnn(**params)


@dataclass(frozen=True)
class CnnTraining:
    """Knobs of one training run; the defaults fit ~300 strips × 60 epochs into ~1 CPU-minute."""

    epochs: int = 60
    batch_size: int = 32
    learning_rate: float = 3e-3
    weight_decay: float = 1e-3
    max_shift_px: int = 6
    brightness: float = 0.08
    seed: int = 0


def train_cnn(
    inputs: NDArray[np.float32],
    targets: NDArray[np.float64],
    config: CnnTraining = CnnTraining(),
) -> HbStripCnn:
    """Train a fresh :class:`HbStripCnn` on (N, 4, 64, 128) strips and Hb targets (g/dL)."""
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    model = HbStripCnn()
    model.target_mean.fill_(float(np.mean(targets)))
    model.target_std.fill_(float(np.std(targets)) or 1.0)
    x_all = torch.from_numpy(np.ascontiguousarray(inputs))
    y_all = torch.from_numpy(np.asarray(targets, dtype=np.float32))
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    steps_per_epoch = math.ceil(len(x_all) / config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=config.learning_rate, total_steps=config.epochs * steps_per_epoch
    )
    model.train()
    for _ in range(config.epochs):
        order = torch.randperm(len(x_all), generator=generator)
        for start in range(0, len(order), config.batch_size):
            index = order[start : start + config.batch_size]
            if index.numel() < 2:
                continue  # BatchNorm cannot normalise a batch of one
            batch = _augment(x_all[index], config, generator)
            prediction = model(batch).squeeze(1)
            # Huber on the standardised scale: robust to the label noise this data set has.
            loss = F.smooth_l1_loss(
                (prediction - model.target_mean) / model.target_std,
                (y_all[index] - model.target_mean) / model.target_std,
            )
            optimiser.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            schedule.step()
    return model.eval()


def _augment(batch: Tensor, config: CnnTraining, generator: torch.Generator) -> Tensor:
    n = batch.shape[0]
    flip = torch.rand(n, generator=generator) < 0.5
    batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
    if config.max_shift_px:
        dy, dx = (
            int(v)
            for v in torch.randint(-config.max_shift_px, config.max_shift_px + 1, (2,), generator=generator)
        )
        batch = torch.roll(batch, shifts=(dy // 2, dx), dims=(2, 3))
    if config.brightness:
        scale = 1.0 + (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * config.brightness
        rgb = (batch[:, :3] * scale).clamp(0.0, 1.0)
        batch = torch.cat([rgb, batch[:, 3:]], dim=1)
    return batch
