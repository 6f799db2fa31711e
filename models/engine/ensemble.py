"""Turning many outputs for one photo (ensemble members × TTA views) into a mean and a spread,
and scoring how unlike the training photos it is.

Spread is the population standard deviation (ddof=0) over all member×view outputs: for a
classifier, of the probability given to the class the mean picks; for a regressor, of the
value, in its unit. The out-of-distribution score is the Mahalanobis distance of the pooled
last-block features from the nearest class mean of the training features (shared covariance),
divided by √features so its scale does not grow with the network's width; members are averaged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class ClassifierAggregate:
    probabilities: Tensor  # (N, C), calibrated, averaged over members and views
    top: Tensor  # (N,)
    spread: Tensor  # (N,)


@dataclass(frozen=True)
class RegressorAggregate:
    value: Tensor  # (N,)
    spread: Tensor  # (N,)


def aggregate_classifier(logits: Tensor, temperature: float) -> ClassifierAggregate:
    """``logits`` (M, K, N, C) → mean calibrated probabilities and the spread of the winner."""
    m, k, n, c = logits.shape
    per_output = torch.softmax(logits.float() / temperature, dim=-1).reshape(m * k, n, c)
    mean = per_output.mean(0)
    top = mean.argmax(-1)
    winner = per_output.gather(2, top.view(1, n, 1).expand(m * k, n, 1)).squeeze(2)
    return ClassifierAggregate(mean, top, winner.std(0, unbiased=False))


def aggregate_regressor(values: Tensor) -> RegressorAggregate:
    """``values`` (M, K, N, 1) → mean and spread over members and views."""
    m, k, n, _ = values.shape
    flat = values.float().reshape(m * k, n)
    return RegressorAggregate(flat.mean(0), flat.std(0, unbiased=False))


def mahalanobis_score(features: Tensor, means: Tensor, precision: Tensor) -> Tensor:
    """``features`` (M, N, D), ``means`` (M, G, D), ``precision`` (M, D, D) → (N,) scores."""
    d = features.shape[-1]
    diff = features.float().unsqueeze(2) - means.float().unsqueeze(1)  # (M, N, G, D)
    squared = torch.einsum("mngd,mde,mnge->mng", diff, precision.float(), diff)
    nearest = squared.clamp_min(0).min(dim=2).values  # (M, N)
    return (nearest / d).sqrt().mean(0)


def fit_feature_gaussian(
    features: Tensor, groups: Tensor, n_groups: int, shrinkage: float = 1e-3
) -> tuple[Tensor, Tensor]:
    """Class means and the shared precision of (N, D) training features; ``shrinkage`` keeps it invertible."""
    features = features.double()
    means = torch.stack([features[groups == g].mean(0) for g in range(n_groups)])
    centred = features - means[groups]
    covariance = centred.T @ centred / max(1, features.shape[0] - 1)
    scale = covariance.diagonal().mean()
    covariance = covariance + shrinkage * scale * torch.eye(covariance.shape[0], dtype=covariance.dtype)
    return means.float(), torch.linalg.inv(covariance).float()
