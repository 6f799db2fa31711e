"""Calibration fitted on validation outputs: temperature scaling, residual spread, thresholds.

Temperature scaling (Guo et al. 2017) divides every logit by one fitted T > 0; it changes how
confident the probabilities are, never which class wins for a single view. The engine averages
softmax(logits / T) over ensemble members and TTA views, so T is fitted on exactly that
average — fitting it per view would calibrate something the engine never reports.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

MIN_TEMPERATURE = 0.05
MAX_TEMPERATURE = 100.0


@dataclass(frozen=True)
class TemperatureFit:
    temperature: float
    nll_before: float
    nll_after: float


def averaged_probabilities(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """(…, N, C) logits → (N, C): softmax at ``temperature``, averaged over leading dimensions."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return probs.reshape(-1, *probs.shape[-2:]).mean(0)


def negative_log_likelihood(probabilities: Tensor, labels: Tensor) -> float:
    picked = probabilities[torch.arange(labels.numel()), labels].clamp_min(1e-12)
    return float(-picked.log().mean())


def fit_temperature(logits: Tensor, labels: Tensor, *, steps: int = 200) -> TemperatureFit:
    """Minimise the NLL of the member/view-averaged probabilities over log T (so T stays > 0).

    In float64 and to a tight tolerance: the NLL is flat near its minimum (a 0.1 % change of T
    moves it by ~1e-7), so a float32 fit stopped wherever rounding let it, and two CPUs gave
    temperatures 6e-4 apart from the same logits.
    """
    logits = logits.detach().double()
    before = negative_log_likelihood(averaged_probabilities(logits), labels)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS(
        [log_t],
        lr=0.1,
        max_iter=steps,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
    )

    def closure() -> Tensor:
        optimiser.zero_grad()
        probs = _averaged(logits, log_t)
        loss = -probs[torch.arange(labels.numel()), labels].clamp_min(1e-12).log().mean()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    optimiser.step(closure)  # type: ignore[no-untyped-call]
    # A model no better than chance drives T towards infinity; cap it so probabilities stay defined.
    temperature = float(log_t.detach().exp())
    if not math.isfinite(temperature):
        temperature = 1.0
    temperature = min(max(temperature, MIN_TEMPERATURE), MAX_TEMPERATURE)
    after = negative_log_likelihood(averaged_probabilities(logits, temperature), labels)
    if after > before:  # LBFGS wandered off: keep the identity rather than make it worse
        return TemperatureFit(1.0, before, before)
    return TemperatureFit(temperature, before, after)


def _averaged(logits: Tensor, log_t: Tensor) -> Tensor:
    probs = torch.softmax(logits / log_t.exp(), dim=-1)
    return probs.reshape(-1, *probs.shape[-2:]).mean(0)


def expected_calibration_error(
    probabilities: NDArray[np.floating], labels: NDArray[np.integer], bins: int = 15
) -> float:
    """ECE over equal-width confidence bins of the top class (the usual reliability summary)."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for low, high in itertools.pairwise(edges):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            total += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(total)


def residual_std(predicted: NDArray[np.floating], observed: NDArray[np.floating]) -> float:
    """RMS of validation residuals: the spread a regressor's prediction interval starts from."""
    return float(np.sqrt(np.mean((np.asarray(predicted) - np.asarray(observed)) ** 2)))


def quantile_threshold(scores: NDArray[np.floating], quantile: float) -> float:
    """The score that ``quantile`` of in-distribution validation photos stay at or below."""
    if not 0 < quantile < 1:
        raise ValueError("quantile must be in (0, 1)")
    return float(np.quantile(np.asarray(scores, dtype=np.float64), quantile))
