"""The tumour network: optional shades-of-grey colour constancy, normalisation, then a small CNN.

The engine hands every network 0–1 RGB normalised by the manifest; the tumour manifest says
mean 0, std 1, so the network sees 0–1 pixels and does its own colour work first. Colour
constancy lives inside the network (not in a pre-processing step) so training, ``evaluate``
and serving run exactly the same arithmetic, and Grad-CAM stays on the engine's one path.
Manifests name the builder as ``models.tumour.network:tumour_net``.
"""

from __future__ import annotations

from typing import Any, Final

import torch
from torch import Tensor, nn

from models.engine.architectures import DEFAULT_CAM_LAYERS, build_member
from models.engine.pretrained import ENCODERS, INPUT_MEAN, INPUT_STD

IMAGENET_MEAN: Final = (0.485, 0.456, 0.406)
IMAGENET_STD: Final = (0.229, 0.224, 0.225)
# Pixels darker than this in every channel are the cut-out's black surround, not skin.
BACKGROUND_LEVEL: Final = 0.04
SHADES_OF_GREY_P: Final = 6.0


class ShadesOfGrey(nn.Module):
    """Finlayson & Trezzi (2004) colour constancy on the lesion pixels, as in ISIC-winning pipelines.

    The illuminant of each photo is the Minkowski p-norm mean of each channel over the non-black
    pixels; each channel is scaled so that illuminant becomes grey (overall brightness kept).
    Phone photos from different clinics and lamps differ mostly in that colour cast.
    """

    def __init__(self, p: float = SHADES_OF_GREY_P) -> None:
        super().__init__()
        self.p = p

    def forward(self, x01: Tensor) -> Tensor:
        mask = (x01.amax(1, keepdim=True) > BACKGROUND_LEVEL).to(x01.dtype)
        count = mask.sum((2, 3)).clamp_min(1.0)
        illuminant = ((x01.clamp_min(0) ** self.p * mask).sum((2, 3)) / count) ** (1 / self.p)
        illuminant = illuminant.clamp_min(1e-3)
        gain = illuminant.mean(1, keepdim=True) / illuminant
        return (x01 * gain[:, :, None, None]).clamp(0, 1)


def input_scaling(backbone: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The pretrained EfficientNet-Lite weights expect (x − 127) / 128; the rest ImageNet mean/std."""
    if backbone in ENCODERS:
        return INPUT_MEAN, INPUT_STD
    return IMAGENET_MEAN, IMAGENET_STD


class TumourNet(nn.Module):
    """0–1 RGB → colour constancy (optional) → the backbone's input scaling → ``backbone`` logits."""

    def __init__(self, num_outputs: int, backbone: str, colour_constancy: bool, **params: Any) -> None:
        super().__init__()
        self.colour: nn.Module = ShadesOfGrey() if colour_constancy else nn.Identity()
        mean, std = input_scaling(backbone)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        self.backbone = build_member(backbone, num_outputs, params)

    def forward(self, x01: Tensor) -> Tensor:
        x = (self.colour(x01) - self.mean) / self.std
        return self.backbone(x)  # type: ignore[no-any-return]


def tumour_net(
    num_outputs: int, backbone: str = "mobilenet_v3_small", colour_constancy: bool = False, **params: Any
) -> nn.Module:
    return TumourNet(num_outputs, backbone, colour_constancy, **params)


def cam_layer(backbone: str) -> str:
    """Grad-CAM's layer inside :class:`TumourNet`: the backbone's last conv block."""
    return f"backbone.{DEFAULT_CAM_LAYERS[backbone]}"
