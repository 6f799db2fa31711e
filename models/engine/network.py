"""The loaded network: ensemble members plus the feature statistics the OOD score needs.

All members of a model share one architecture and one weights file (tensors under
``members.<i>.``), so one SHA-256 — one FHIR Device — names exactly what produced a result.
The optional ``ood_mean`` (members × groups × features) and ``ood_precision`` (members ×
features × features) are the class-conditional Gaussian of the pooled ``cam_layer`` features
on the training set (Lee et al. 2018, shared covariance), fitted by the training code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from models.engine.architectures import DEFAULT_CAM_LAYERS, build_member
from models.errors import InvalidModelManifest, ModelWeightsIncompatible
from models.manifest import ModelManifest

OOD_MEAN = "ood_mean"
OOD_PRECISION = "ood_precision"


class ModelEnsemble(nn.Module):
    """``members`` run one after another on the same batch; ``cam_layer`` names their last conv block."""

    ood_mean: Tensor | None
    ood_precision: Tensor | None

    def __init__(
        self, members: Sequence[nn.Module], cam_layer: str, ood_shapes: tuple[torch.Size, torch.Size] | None
    ) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.cam_layer = cam_layer
        for member in self.members:
            try:
                member.get_submodule(cam_layer)
            except AttributeError:
                raise InvalidModelManifest(
                    f"cam_layer {cam_layer!r} is not a module of the network"
                ) from None
        if ood_shapes is None:
            self.ood_mean = None
            self.ood_precision = None
        else:
            self.register_buffer("ood_mean", torch.zeros(ood_shapes[0]))
            self.register_buffer("ood_precision", torch.zeros(ood_shapes[1]))

    def cam_modules(self) -> list[nn.Module]:
        return [member.get_submodule(self.cam_layer) for member in self.members]


def output_count(manifest: ModelManifest) -> int:
    output = manifest.output
    if output.kind == "regressor":
        return 1
    return len(manifest.labels) * (output.levels or 1)


def cam_layer_of(manifest: ModelManifest) -> str:
    layer = manifest.architecture.cam_layer or DEFAULT_CAM_LAYERS.get(manifest.architecture.name)
    if layer is None:
        raise InvalidModelManifest(f"{manifest.name}: architecture.cam_layer is needed for Grad-CAM")
    return layer


def build_ensemble(manifest: ModelManifest, tensors: Mapping[str, Tensor] | None = None) -> ModelEnsemble:
    """The network of ``manifest``, with ``tensors`` (a state dict) loaded strictly when given."""
    spec = manifest.architecture
    members = [
        build_member(spec.name, output_count(manifest), dict(spec.params)) for _ in range(spec.ensemble_size)
    ]
    ood_shapes = None
    if tensors is not None and OOD_MEAN in tensors and OOD_PRECISION in tensors:
        ood_shapes = (tensors[OOD_MEAN].shape, tensors[OOD_PRECISION].shape)
    network = ModelEnsemble(members, cam_layer_of(manifest), ood_shapes)
    if tensors is not None:
        expected = set(network.state_dict())
        missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        if missing or extra:
            raise ModelWeightsIncompatible(
                f"{manifest.name}: the weights do not fit {spec.name} "
                f"(missing {missing[:3]}{'…' if len(missing) > 3 else ''}, "
                f"unexpected {extra[:3]}{'…' if len(extra) > 3 else ''})"
            )
        try:
            network.load_state_dict(dict(tensors), strict=True)
        except RuntimeError as exc:
            detail = " ".join(str(exc).split())[:300]
            raise ModelWeightsIncompatible(
                f"{manifest.name}: the weights do not fit {spec.name} ({detail})"
            ) from None
    network.eval()
    return network


def ensemble_state_dict(
    members: Sequence[Mapping[str, Tensor]], ood: tuple[Tensor, Tensor] | None = None
) -> dict[str, Tensor]:
    """One state dict for a package: each member's tensors under ``members.<i>.``, then the OOD stats."""
    merged = {
        f"members.{index}.{key}": value.detach().cpu().contiguous()
        for index, member in enumerate(members)
        for key, value in member.items()
    }
    if ood is not None:
        merged[OOD_MEAN] = ood[0].detach().cpu().float().contiguous()
        merged[OOD_PRECISION] = ood[1].detach().cpu().float().contiguous()
    return merged
