"""Network architectures a manifest may name, and the small reference CNN.

A manifest's ``architecture.name`` is looked up here first; ``package.module:function`` is also
accepted, but only inside the ``models`` package, so a manifest dropped into the model
directory can never make Photomarker import arbitrary code. Every builder takes
``num_outputs`` (classes, or 1 for a regressor) plus the manifest's ``params``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn
from torchvision.models import mobilenet_v3_small, resnet18
from torchvision.models.resnet import BasicBlock

from models.errors import InvalidModelManifest

Builder = Callable[..., nn.Module]


class ReferenceCnn(nn.Module):
    """A ResNet-style net of three torchvision ``BasicBlock``s: ~90 k parameters at widths 16/32/48.

    Small enough to train on a laptop CPU in a minute and ship in the package; its last block
    (``blocks.2``) keeps a 1/8-resolution map, fine enough for a useful Grad-CAM.
    """

    def __init__(self, num_outputs: int, widths: tuple[int, int, int] | list[int] = (16, 32, 48)) -> None:
        super().__init__()
        w0, w1, w2 = widths
        self.stem = nn.Sequential(
            nn.Conv2d(3, w0, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w0), nn.ReLU(inplace=True)
        )
        self.blocks = nn.Sequential(
            BasicBlock(w0, w1, stride=2, downsample=_projection(w0, w1, 2)),
            BasicBlock(w1, w2, stride=2, downsample=_projection(w1, w2, 2)),
            BasicBlock(w2, w2),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(w2, num_outputs)

    def forward(self, x: Tensor) -> Tensor:
        features = self.blocks(self.stem(x))
        return self.head(self.pool(features).flatten(1))  # type: ignore[no-any-return]


def _projection(inputs: int, outputs: int, stride: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride=stride, bias=False), nn.BatchNorm2d(outputs))


def _reference_cnn(num_outputs: int, **params: Any) -> nn.Module:
    return ReferenceCnn(num_outputs, **params)


def _mobilenet_v3_small(num_outputs: int, **params: Any) -> nn.Module:
    # weights=None: Photomarker never downloads weights; everything comes from the package.
    return mobilenet_v3_small(weights=None, num_classes=num_outputs, **params)  # type: ignore[no-any-return]


def _resnet18(num_outputs: int, **params: Any) -> nn.Module:
    return resnet18(weights=None, num_classes=num_outputs, **params)  # type: ignore[no-any-return]


def _efficientnet_lite(variant: str) -> Builder:
    def builder(num_outputs: int, **params: Any) -> nn.Module:
        # Random weights here: a package's own tensors replace them; ImageNet ones only in training.
        from models.engine.pretrained import build

        return build(variant, num_outputs, **params)

    return builder


_BUILDERS: dict[str, Builder] = {
    "reference-cnn": _reference_cnn,
    "mobilenet_v3_small": _mobilenet_v3_small,
    "resnet18": _resnet18,
    **{f"efficientnet_lite{n}": _efficientnet_lite(f"efficientnet_lite{n}") for n in (0, 1, 2)},
}

# Where Grad-CAM looks when a manifest names no cam_layer: the last conv block of each built-in.
DEFAULT_CAM_LAYERS: dict[str, str] = {
    "reference-cnn": "blocks.2",
    "mobilenet_v3_small": "features.12",
    "resnet18": "layer4",
    # The last block stage (see models.engine.pretrained.CAM_LAYER).
    **{f"efficientnet_lite{n}": "blocks.6" for n in (0, 1, 2)},
}


def register_architecture(name: str, builder: Builder, cam_layer: str | None = None) -> None:
    """Make ``name`` available to manifests (e.g. a model family defined under ``models/hb``)."""
    _BUILDERS[name] = builder
    if cam_layer is not None:
        DEFAULT_CAM_LAYERS[name] = cam_layer


def resolve_builder(name: str) -> Builder:
    if name in _BUILDERS:
        return _BUILDERS[name]
    module_name, _, function = name.partition(":")
    if not function or not module_name.startswith("models."):
        raise InvalidModelManifest(
            f"unknown architecture {name!r}: not built in, and not 'models.<module>:<function>'"
        )
    try:
        builder = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as exc:
        raise InvalidModelManifest(f"architecture {name!r} cannot be imported: {exc}") from None
    if not callable(builder):
        raise InvalidModelManifest(f"architecture {name!r} is not callable")
    return builder  # type: ignore[no-any-return]


def build_member(name: str, num_outputs: int, params: dict[str, Any]) -> nn.Module:
    try:
        return resolve_builder(name)(num_outputs=num_outputs, **params)
    except TypeError as exc:
        raise InvalidModelManifest(f"architecture {name!r} rejects its params: {exc}") from None
