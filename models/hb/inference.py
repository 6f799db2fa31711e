"""Running trained Hb members on prepared strips (training and cross-validation side).

Mirrors what the engine's ``Predict`` stage does in deployment — the CNN on the strip and on
its mirror image (the test-time views), pooled CAM-layer features of the untouched view for
the out-of-distribution score — without hooks for Grad-CAM, so cross-validation scores the
same numbers the deployed pipeline will produce.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from models.hb.model import MEMBER_CAM_LAYER, HbConjunctivaNet

BATCH: Final = 128


@dataclass(frozen=True, eq=False)
class MemberOutputs:
    cnn: NDArray[np.float64]  # (M, K, N): members × views (identity, hflip)
    colour: NDArray[np.float64]  # (N,)
    features: NDArray[np.float32]  # (M, N, D): pooled CAM-layer features, identity view

    @property
    def cnn_mean(self) -> NDArray[np.float64]:
        return np.asarray(self.cnn.mean(axis=(0, 1)))

    @property
    def cnn_spread(self) -> NDArray[np.float64]:
        # Population SD over member × view outputs, as the engine's aggregate_regressor defines it.
        m, k, n = self.cnn.shape
        return np.asarray(self.cnn.reshape(m * k, n).std(axis=0))


@torch.no_grad()
def run_members(
    members: Sequence[HbConjunctivaNet], tensors: NDArray[np.float32], features: NDArray[np.float64]
) -> MemberOutputs:
    x_all = torch.from_numpy(np.ascontiguousarray(tensors))
    outputs: list[NDArray[np.float64]] = []
    pooled: list[NDArray[np.float32]] = []
    for member in members:
        member.eval()
        captured: list[Tensor] = []
        identity_features: list[Tensor] = []
        hook = member.get_submodule(MEMBER_CAM_LAYER).register_forward_hook(_pool_into(captured))
        try:
            views: list[list[Tensor]] = [[], []]
            for start in range(0, x_all.shape[0], BATCH):
                x = x_all[start : start + BATCH]
                views[0].append(member(x).squeeze(1))
                identity_features.append(captured.pop())
                views[1].append(member(x.flip(-1)).squeeze(1))
                captured.clear()
            outputs.append(np.stack([torch.cat(v).double().numpy() for v in views]))
            pooled.append(torch.cat(identity_features).numpy())
        finally:
            hook.remove()
    colour = members[0].colour_estimate(features)
    return MemberOutputs(np.stack(outputs), colour, np.stack(pooled))


def _pool_into(store: list[Tensor]) -> Callable[[nn.Module, object, Tensor], None]:
    """A forward hook appending the layer output's spatial mean, as the engine pools it."""

    def hook(_module: nn.Module, _inputs: object, output: Tensor) -> None:
        store.append(output.float().mean(dim=(2, 3)))

    return hook
