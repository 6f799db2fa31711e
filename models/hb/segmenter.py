"""The conjunctiva segmentation network: a tiny U-Net, and running it on a whole photo.

The network reads the photo squashed to 96×128 (height × width; phone photos of an eyelid are
landscape) and gives every pixel the probability that it is palpebral conjunctiva. Three
down-steps with 8–16–32–48 channels (≈ 70 k parameters, < 0.3 MB) are enough for a shape as
plain as a pink crescent between the eyeball and the lid, and it runs in a few milliseconds
on one CPU core. It is trained only on generated composites (``models.hb.scenes``), so its
package is labelled *reference — trained on generated composites*.

From the probabilities to a mask: the largest 8-connected component above 0.5 is the
candidate; its *confidence* is the mean probability inside it. A candidate covering less than
1 % of the frame or with confidence below :data:`MIN_CONFIDENCE` counts as not found (see
``models.hb.localise`` for when the classical method is asked instead). The
chosen component is drawn back at the photo's own size from the bilinearly enlarged
probabilities, so the mask's edge is smooth rather than blocky.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from PIL import Image
from torch import Tensor, nn

from models.errors import InvalidModelManifest
from models.hb.components import label_components
from models.registry import LoadedModel, registry_for

ARCHITECTURE: Final = "models.hb.segmenter:conjunctiva_unet"
TASK: Final = "hb-localise"
INPUT_HEIGHT: Final = 96
INPUT_WIDTH: Final = 128
WIDTHS: Final = (8, 16, 32, 48)
CAM_LAYER: Final = "bottleneck"
# A component must cover this share of the frame (the classical localiser's floor too).
MIN_AREA_FRACTION: Final = 0.01
# Mean probability inside the component below which the network's answer is "not found". Chosen
# on validation composites made from *training* strips (not the held-out ones): from 0.7 to 0.85
# false detections fell from 3.7 % to 0.9 % with detection unchanged (the card's table).
MIN_CONFIDENCE: Final = 0.85


def _convs(inputs: int, outputs: int, count: int = 2) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index in range(count):
        layers += [
            nn.Conv2d(inputs if index == 0 else outputs, outputs, 3, padding=1, bias=False),
            nn.BatchNorm2d(outputs),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class ConjunctivaUNet(nn.Module):
    """RGB (N, 3, 96, 128) in 0–1 → conjunctiva logits (N, 1, 96, 128)."""

    def __init__(self, widths: tuple[int, ...] = WIDTHS) -> None:
        super().__init__()
        w = tuple(int(v) for v in widths)
        if len(w) != 4:
            raise ValueError("the segmenter has four levels of widths")
        # One conv per step at full resolution and on the way up: the full-resolution layers cost
        # the most, and a crescent's outline needs little depth there.
        self.down = nn.ModuleList([_convs(3, w[0], 1), _convs(w[0], w[1]), _convs(w[1], w[2])])
        self.bottleneck = _convs(w[2], w[3])
        self.up = nn.ModuleList(
            [_convs(w[3] + w[2], w[2], 1), _convs(w[2] + w[1], w[1], 1), _convs(w[1] + w[0], w[0], 1)]
        )
        self.head = nn.Conv2d(w[0], 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        skips: list[Tensor] = []
        h = x - 0.5
        for block in self.down:
            h = block(h)
            skips.append(h)
            h = F.max_pool2d(h, 2)
        h = self.bottleneck(h)
        for block, skip in zip(self.up, reversed(skips), strict=True):
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = block(torch.cat([h, skip], dim=1))
        return self.head(h)  # type: ignore[no-any-return]


def conjunctiva_unet(num_outputs: int = 2, **params: Any) -> nn.Module:
    """Builder the manifest names: ``models.hb.segmenter:conjunctiva_unet`` (background, conjunctiva)."""
    if num_outputs != 2:
        raise ValueError("the segmenter has two labels: background and conjunctiva")
    widths = params.get("widths", WIDTHS)
    return ConjunctivaUNet(tuple(widths))


def photo_tensor(rgb: NDArray[np.uint8]) -> NDArray[np.float32]:
    """(3, 96, 128) float32 in 0–1: the photo squashed to the network's input."""
    small = Image.fromarray(rgb).resize(
        (INPUT_WIDTH, INPUT_HEIGHT), Image.Resampling.BILINEAR, reducing_gap=2.0
    )
    return np.ascontiguousarray(np.asarray(small, dtype=np.float32).transpose(2, 0, 1) / 255.0)


@dataclass(frozen=True, eq=False)
class Segmentation:
    """What the network saw: the chosen component's mask at the photo's size, or why none."""

    mask: NDArray[np.bool_] | None
    confidence: float  # mean probability inside the best component (0 when there is none)
    area_fraction: float  # the best component's share of the frame


@dataclass(frozen=True, eq=False)
class ConjunctivaSegmenter:
    """The loaded network and the confidence it must reach for its mask to be used."""

    network: ConjunctivaUNet
    min_confidence: float
    name: str
    version: str

    @torch.no_grad()
    def probabilities(self, rgb: NDArray[np.uint8]) -> NDArray[np.float32]:
        """(96, 128) probability of conjunctiva for an (H, W, 3) photo."""
        x = torch.from_numpy(photo_tensor(rgb))[None]
        return torch.sigmoid(self.network(x))[0, 0].numpy()

    def segment(self, rgb: NDArray[np.uint8]) -> Segmentation:
        return mask_from_probabilities(self.probabilities(rgb), rgb.shape[:2], self.min_confidence)


def mask_from_probabilities(
    probabilities: NDArray[np.float32], size: tuple[int, int], min_confidence: float
) -> Segmentation:
    """The largest confident component of a low-resolution probability map, at ``size`` (H, W)."""
    labels, count = label_components(probabilities > 0.5)
    if count == 0:
        return Segmentation(None, 0.0, 0.0)
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    best = int(np.argmax(areas[1:]) + 1)
    component = labels == best
    confidence = float(probabilities[component].mean())
    area_fraction = float(areas[best]) / labels.size
    if area_fraction < MIN_AREA_FRACTION or confidence < min_confidence:
        return Segmentation(None, confidence, area_fraction)
    # Keep the component's neighbourhood only (one pixel around it), then enlarge smoothly.
    near = component.copy()
    near[1:, :] |= component[:-1, :]
    near[:-1, :] |= component[1:, :]
    near[:, 1:] |= near[:, :-1].copy()
    near[:, :-1] |= near[:, 1:].copy()
    kept = np.where(near, probabilities, 0.0).astype(np.float32)
    height, width = size
    big = np.asarray(Image.fromarray(kept, "F").resize((width, height), Image.Resampling.BILINEAR))
    mask = big > 0.5
    if not mask.any():
        return Segmentation(None, confidence, area_fraction)
    return Segmentation(mask, confidence, area_fraction)


def segmenter_from(loaded: LoadedModel) -> ConjunctivaSegmenter:
    network = loaded.network().members[0]
    if not isinstance(network, ConjunctivaUNet):
        raise InvalidModelManifest(f"{loaded.manifest.name}: members are not ConjunctivaUNet")
    return ConjunctivaSegmenter(network.eval(), MIN_CONFIDENCE, loaded.manifest.name, loaded.manifest.version)


@lru_cache(maxsize=4)
def installed_segmenter(model_dir: Path | None = None) -> ConjunctivaSegmenter | None:
    """The installed segmenter (a site's own directory first); None: only the classical method runs."""
    registry = registry_for(model_dir)
    for package in registry.for_task(TASK):
        if package.manifest.architecture.name == ARCHITECTURE:
            return segmenter_from(registry.load(package.name))
    return None
