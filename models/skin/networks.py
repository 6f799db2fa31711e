"""The skin networks that are not plain classifiers: the lesion segmenter.

Body part, TIS, AD-vs-complications and diagnosis use the engine's small ``reference-cnn``
(torchvision ``BasicBlock``s, ~90 k parameters); lesion extraction needs a per-pixel answer, so
it is a small U-Net: three encoder levels, a bottleneck, and a decoder that joins each level's
features back in, ~35 k parameters — a few milliseconds per photo on a laptop CPU at 128 px.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional


def _block(inputs: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, 3, padding=1, bias=False),
        nn.BatchNorm2d(outputs),
        nn.ReLU(inplace=True),
        nn.Conv2d(outputs, outputs, 3, padding=1, bias=False),
        nn.BatchNorm2d(outputs),
        nn.ReLU(inplace=True),
    )


class LesionNet(nn.Module):
    """Photo (3×S×S) → per-pixel class logits (C×S×S): no lesion, rash lesion, tumour-like growth."""

    def __init__(self, num_outputs: int, widths: tuple[int, int, int] | list[int] = (8, 16, 32)) -> None:
        super().__init__()
        w0, w1, w2 = widths
        self.enc0 = _block(3, w0)
        self.enc1 = _block(w0, w1)
        self.enc2 = _block(w1, w2)
        self.bottleneck = _block(w2, w2)
        self.dec2 = _block(w2 + w2, w1)
        self.dec1 = _block(w1 + w1, w0)
        self.dec0 = _block(w0 + w0, w0)
        self.head = nn.Conv2d(w0, num_outputs, 1)

    def forward(self, x: Tensor) -> Tensor:
        e0 = self.enc0(x)
        e1 = self.enc1(functional.max_pool2d(e0, 2))
        e2 = self.enc2(functional.max_pool2d(e1, 2))
        b = self.bottleneck(functional.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([_up(b, e2), e2], dim=1))
        d1 = self.dec1(torch.cat([_up(d2, e1), e1], dim=1))
        d0 = self.dec0(torch.cat([_up(d1, e0), e0], dim=1))
        return self.head(d0)  # type: ignore[no-any-return]


def _up(x: Tensor, like: Tensor) -> Tensor:
    return functional.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


def lesion_net(num_outputs: int, **params: Any) -> nn.Module:
    """Builder named in the lesion package's manifest (``models.skin.networks:lesion_net``)."""
    return LesionNet(num_outputs, **params)


LESION_ARCHITECTURE = "models.skin.networks:lesion_net"
LESION_CAM_LAYER = "bottleneck"
