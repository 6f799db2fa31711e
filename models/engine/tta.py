"""Test-time augmentation: the dihedral views of a square input plus a small colour jitter.

The Ehime skin-tumour study found that rotating one photo by 90° can flip the diagnosis, so the
engine looks at each photo several ways and reports the mean and the spread. Views are applied
on the device to the whole batch (view-major: all photos under view 0, then view 1, …); the
geometric views are exact permutations of pixels, so their inverse brings a Grad-CAM map back
onto the original photo without resampling.

How many views run is a setting (``PHOTOMARKER_INFERENCE_TTA_VIEWS``): a plan is cut to its
first N views, so the views come in the order that makes every prefix worth having (see
``VIEW_ORDER``), the colour jitter last. Fewer views cost less and give a spread over fewer
outputs; with one view there is no spread to judge (see ``models.model_stages.abstention_limits``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import torch
from torch import Tensor

from models.manifest import TtaSpec, TtaView

# Rec. 601 luma, as the quality gate uses, for the saturation jitter's grey point.
_LUMA: Final = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class View:
    geometry: TtaView = "identity"
    brightness: float = 0.0
    saturation: float = 0.0


@dataclass(frozen=True)
class TtaPlan:
    """The views in order; view 0 is always the untouched photo (the OOD score reads it)."""

    views: tuple[View, ...]

    def __post_init__(self) -> None:
        if not self.views or self.views[0] != View():
            raise ValueError("a TTA plan starts with the identity view")

    def __len__(self) -> int:
        return len(self.views)

    def prefix(self, count: int | None) -> TtaPlan:
        """The first ``count`` views (all of them when None or more than the plan has)."""
        if count is None or count >= len(self.views):
            return self
        if count < 1:
            raise ValueError(f"a TTA plan needs at least one view, not {count}")
        return TtaPlan(self.views[:count])


IDENTITY_ONLY: Final = TtaPlan((View(),))

# The order a manifest's geometric views are taken in, whatever order the manifest lists them:
# the photo as taken, its mirror image (the most natural second look: a left arm mirrored is a
# right arm), upside down and its mirror, then the 90° family. Each power-of-two prefix of the
# eight is a group (identity; + mirror; + rot180 and vflip; all eight), so the mean over such a
# prefix does not change when the photo itself is flipped or turned that way. A manifest with
# only rotations (identity, rot90, rot180, rot270) gives identity, rot180, rot90, rot270: two
# views are again a group, four all of them.
VIEW_ORDER: Final[tuple[TtaView, ...]] = (
    "identity",
    "hflip",
    "rot180",
    "vflip",
    "rot90",
    "rot270",
    "transpose",
    "antitranspose",
)


def plan_from(spec: TtaSpec, *, views: int | None = None) -> TtaPlan:
    """The manifest's geometric views in ``VIEW_ORDER``, then a brighter/more saturated and a duller
    view (colour jitter, last: it changes no pixel's place), cut to the first ``views`` (None: all)."""
    listed = set(spec.views)
    ordered = [View(geometry) for geometry in VIEW_ORDER if geometry in listed and geometry != "identity"]
    plan = [View(), *ordered]
    if spec.jitter > 0:
        plan += [View("identity", spec.jitter, spec.jitter), View("identity", -spec.jitter, -spec.jitter)]
    return TtaPlan(tuple(plan)).prefix(views)


def apply_geometry(x: Tensor, geometry: TtaView) -> Tensor:
    """``geometry`` on the last two dimensions (square maps only for the 90° family)."""
    if geometry == "identity":
        return x
    if geometry == "hflip":
        return x.flip(-1)
    if geometry == "vflip":
        return x.flip(-2)
    if geometry == "rot90":
        return x.rot90(1, (-2, -1))
    if geometry == "rot180":
        return x.rot90(2, (-2, -1))
    if geometry == "rot270":
        return x.rot90(3, (-2, -1))
    if geometry == "transpose":
        return x.transpose(-2, -1)
    return x.transpose(-2, -1).flip(-2, -1)  # antitranspose: reflection in the anti-diagonal


_INVERSE: Final[dict[TtaView, TtaView]] = {
    "identity": "identity",
    "hflip": "hflip",
    "vflip": "vflip",
    "rot90": "rot270",
    "rot180": "rot180",
    "rot270": "rot90",
    "transpose": "transpose",
    "antitranspose": "antitranspose",
}


def invert_geometry(x: Tensor, geometry: TtaView) -> Tensor:
    return apply_geometry(x, _INVERSE[geometry])


def _jitter(x01: Tensor, view: View) -> Tensor:
    if view.brightness == 0 and view.saturation == 0:
        return x01
    weights = torch.tensor(_LUMA, device=x01.device, dtype=x01.dtype).view(1, 3, 1, 1)
    grey = (x01 * weights).sum(1, keepdim=True)
    out = grey + (x01 - grey) * (1 + view.saturation)
    return (out * (1 + view.brightness)).clamp_(0, 1)


def expand(
    x01: Tensor,
    plan: TtaPlan,
    mean: Tensor | None = None,
    std: Tensor | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
    out: Tensor | None = None,
) -> Tensor:
    """(N, 3, S, S) in 0–1 → (K·N, 3, S, S), view-major, normalised by ``mean``/``std`` when given.

    Normalisation commutes with the geometric views, so the photos are normalised once and
    each view is written straight into the output (one pass over the K·N tensor, not four).
    ``out``, when given, is written instead of a new tensor (see ``PreProcess``).
    """
    n = x01.shape[0]
    shape = (len(plan) * n, *x01.shape[1:])
    if out is None:
        out = torch.empty(shape, dtype=x01.dtype, device=x01.device, memory_format=memory_format)
    elif tuple(out.shape) != shape:
        raise ValueError(f"out has shape {tuple(out.shape)}, the views need {shape}")

    def normalise(x: Tensor) -> Tensor:
        return x if mean is None or std is None else (x - mean) / std

    base = normalise(x01)
    for index, view in enumerate(plan.views):
        source = base if view.brightness == 0 and view.saturation == 0 else normalise(_jitter(x01, view))
        out[index * n : (index + 1) * n].copy_(apply_geometry(source, view.geometry))
    return out


def invert_maps(maps: Tensor, plan: TtaPlan) -> Tensor:
    """(…, K·N, h, w) maps from the views → (…, K, N, h, w), each back in the photo's orientation."""
    k = len(plan)
    per_view = maps.reshape(*maps.shape[:-3], k, maps.shape[-3] // k, *maps.shape[-2:])
    return torch.stack(
        [
            invert_geometry(per_view[..., index, :, :, :], view.geometry)
            for index, view in enumerate(plan.views)
        ],
        dim=-4,
    )
