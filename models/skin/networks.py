"""The skin networks that are not plain classifiers: the lesion segmenter.

Body part, TIS, AD-vs-complications and diagnosis use the engine's small ``reference-cnn``
(torchvision ``BasicBlock``s, ~90 k parameters); lesion extraction needs a per-pixel answer, so
it is a small U-Net: three encoder levels, a bottleneck, and a decoder that joins each level's
features back in, ~35 k parameters — a few milliseconds per photo on a laptop CPU at 128 px.
"""

from __future__ import annotations

from typing import Any, Final, cast

import torch
from torch import Tensor, nn
from torch.nn import functional

from models.engine import pretrained


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


# --- the lesion segmenter on an ImageNet-pretrained encoder ------------------------------------------

# Where each feature map leaves EfficientNet-Lite's blocks: stride 2, 4, 8, 16, 32.
_SKIPS: Final = (0, 1, 2, 4, 6)


def _separable(inputs: int, outputs: int) -> nn.Sequential:
    """3×3 depthwise then 1×1 pointwise, batch-normalised: a decoder stage at a fraction of the cost."""
    return nn.Sequential(
        nn.Conv2d(inputs, inputs, 3, padding=1, groups=inputs, bias=False),
        nn.BatchNorm2d(inputs),
        nn.ReLU(inplace=True),
        nn.Conv2d(inputs, outputs, 1, bias=False),
        nn.BatchNorm2d(outputs),
        nn.ReLU(inplace=True),
    )


class PretrainedLesionNet(nn.Module):
    """Photo → per-pixel class logits: an EfficientNet-Lite encoder (ImageNet at the start of
    training) and a light U-Net decoder that joins its stride-32…2 features and a full-resolution
    stem back in, so a lesion a few pixels across on the map is still drawn.

    Inputs come normalised as every skin network's, (x − 0.5) / 0.25 on 0–1; the encoder was
    trained on (x − 127) / 128 on 0–255, so the network converts first.
    """

    def __init__(
        self,
        num_outputs: int,
        encoder: str = "efficientnet_lite0",
        widths: tuple[int, ...] | list[int] = (64, 48, 32, 24, 16, 16),
    ) -> None:
        super().__init__()
        self.variant = encoder
        backbone = pretrained.build(encoder, 1000)
        # Only the blocks are kept: the 1280-channel head and the classifier serve ImageNet.
        self.conv_stem = backbone.get_submodule("conv_stem")
        self.bn1 = backbone.get_submodule("bn1")
        self.blocks = cast(nn.Sequential, backbone.get_submodule("blocks"))
        channels = [int(self.blocks[i][-1].conv_pwl.out_channels) for i in (1, 2, 4, 6)]  # type: ignore[index]
        first = int(self.blocks[0][-1].conv_pw.out_channels)  # type: ignore[index]
        w32, w16, w8, w4, w2, w1 = widths
        self.lateral = nn.Sequential(
            nn.Conv2d(channels[3], w32, 1, bias=False), nn.BatchNorm2d(w32), nn.ReLU(inplace=True)
        )
        self.dec16 = _separable(w32 + channels[2], w16)
        self.dec8 = _separable(w16 + channels[1], w8)
        self.dec4 = _separable(w8 + channels[0], w4)
        self.dec2 = _separable(w4 + first, w2)
        self.stem1 = _block(3, w1)
        self.dec1 = _block(w2 + w1, w1)
        self.head = nn.Conv2d(w1, num_outputs, 1)
        # (x − 0.5) / 0.25 → (x − 127/255) / (128/255)
        self.scale = 0.25 / (128 / 255)
        self.shift = (0.5 - 127 / 255) / (128 / 255)

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn1(self.conv_stem(x * self.scale + self.shift))
        features = []
        for index, block in enumerate(self.blocks):
            y = block(y)
            if index in _SKIPS:
                features.append(y)
        f2, f4, f8, f16, f32 = features
        d = self.lateral(f32)
        d = self.dec16(torch.cat([_up(d, f16), f16], dim=1))
        d = self.dec8(torch.cat([_up(d, f8), f8], dim=1))
        d = self.dec4(torch.cat([_up(d, f4), f4], dim=1))
        d = self.dec2(torch.cat([_up(d, f2), f2], dim=1))
        full = self.stem1(x)
        d = self.dec1(torch.cat([_up(d, full), full], dim=1))
        return self.head(d)  # type: ignore[no-any-return]


def lesion_unet(num_outputs: int, **params: Any) -> nn.Module:
    """Builder named in a pretrained lesion package's manifest (``models.skin.networks:lesion_unet``)."""
    return PretrainedLesionNet(num_outputs, **params)


def load_pretrained_encoder(network: nn.Module, variant: str) -> None:
    """The wheel's ImageNet tensors into every encoder layer the network kept, strictly.

    The file's head (``conv_head``, ``bn2``, ``classifier``) has no place here and is left out;
    any other file tensor without a place, or any encoder tensor left unfilled, raises.
    """
    tensors = pretrained.imagenet_state_dict(variant, network)
    head = ("conv_head.", "bn2.", "classifier.")
    wanted = {k: v for k, v in tensors.items() if not k.startswith(head)}
    own = network.state_dict()
    encoder_keys = {k for k in own if k.startswith(("conv_stem.", "bn1.", "blocks."))}
    unplaced = sorted(set(wanted) - set(own))
    unfilled = sorted(encoder_keys - set(wanted))
    if unplaced or unfilled:
        raise RuntimeError(
            f"{variant}: ImageNet weights do not fit (no place for {unplaced}, unfilled {unfilled})"
        )
    network.load_state_dict(wanted, strict=False)


def load_starting_weights(network: nn.Module, variant: str, architecture: str) -> None:
    """ImageNet weights for training to start from: a whole EfficientNet-Lite classifier gets every
    tensor but its new class head (its 1280-channel head serves the task too); the lesion U-Net
    only its encoder's."""
    if architecture == variant:
        pretrained.load_imagenet(network, variant)
    else:
        load_pretrained_encoder(network, variant)


PRETRAINED_LESION_ARCHITECTURE = "models.skin.networks:lesion_unet"
PRETRAINED_LESION_CAM_LAYER = "lateral"
