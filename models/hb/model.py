"""The shipped Hb model as one torch module per ensemble member: CNN, colour regressor, blend.

The engine keeps every tensor of a model in one safetensors file under ``members.<i>.`` so that
a single SHA-256 (one FHIR Device) names everything that produced a result. Each member is
therefore a complete two-estimator model: its own CNN (members differ only in the CNN's
training seed) and a copy of the colour ridge regressor (deterministic, so the same in every
member), plus the blend weight and the conformal half-width of the prediction interval, both
fitted on cross-validation residuals. ``forward`` is the CNN alone — that is what the engine's
``Predict`` stage runs and explains with Grad-CAM; :meth:`colour_estimate` and :meth:`blend`
complete the estimate in the Hb post-processing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from models.hb.cnn import CAM_LAYER, INPUT_HEIGHT, INPUT_WIDTH, HbStripCnn
from models.hb.colour import ColourRegressor
from models.hb.features import FEATURE_NAMES

# The Grad-CAM layer as seen from the member (the CNN sits under ``cnn``).
MEMBER_CAM_LAYER = f"cnn.{CAM_LAYER}"


class HbConjunctivaNet(nn.Module):
    """One ensemble member: ``forward`` = CNN Hb (g/dL); colour ridge and blend as buffers."""

    colour_mean: Tensor
    colour_scale: Tensor
    colour_coef: Tensor
    colour_intercept: Tensor
    cnn_weight: Tensor
    interval_half_width: Tensor

    def __init__(
        self,
        n_features: int = len(FEATURE_NAMES),
        input_height: int = INPUT_HEIGHT,
        input_width: int = INPUT_WIDTH,
        **cnn_params: Any,
    ) -> None:
        super().__init__()
        if (input_height, input_width) != (INPUT_HEIGHT, INPUT_WIDTH):
            raise ValueError(f"the Hb CNN takes {INPUT_HEIGHT}×{INPUT_WIDTH} strips")
        self.cnn = HbStripCnn(**cnn_params)
        self.register_buffer("colour_mean", torch.zeros(n_features, dtype=torch.float64))
        self.register_buffer("colour_scale", torch.ones(n_features, dtype=torch.float64))
        self.register_buffer("colour_coef", torch.zeros(n_features, dtype=torch.float64))
        self.register_buffer("colour_intercept", torch.zeros((), dtype=torch.float64))
        self.register_buffer("cnn_weight", torch.full((), 0.5, dtype=torch.float64))
        self.register_buffer("interval_half_width", torch.zeros((), dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return self.cnn(x)  # type: ignore[no-any-return]

    def set_colour(self, regressor: ColourRegressor) -> None:
        self.colour_mean.copy_(torch.from_numpy(regressor.mean))
        self.colour_scale.copy_(torch.from_numpy(regressor.scale))
        self.colour_coef.copy_(torch.from_numpy(regressor.coef))
        self.colour_intercept.fill_(regressor.intercept)

    def colour_estimate(self, features: NDArray[np.float64]) -> NDArray[np.float64]:
        """Hb (g/dL) from colour features, (N, F) → (N,)."""
        mean = self.colour_mean.numpy()
        scale = self.colour_scale.numpy()
        z = (np.atleast_2d(features) - mean) / scale
        return np.asarray(z @ self.colour_coef.numpy() + float(self.colour_intercept), dtype=np.float64)

    def blend(self, cnn: NDArray[np.float64], colour: NDArray[np.float64]) -> NDArray[np.float64]:
        w = float(self.cnn_weight)
        return np.asarray(w * cnn + (1.0 - w) * colour, dtype=np.float64)


def hb_conjunctiva_net(num_outputs: int = 1, **params: Any) -> nn.Module:
    """Builder the manifest names: ``models.hb.model:hb_conjunctiva_net``."""
    if num_outputs != 1:
        raise ValueError("the Hb model is a regressor with one output")
    return HbConjunctivaNet(**params)
