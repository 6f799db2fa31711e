"""The colour-feature Hb regressor: ridge regression on standardised colour features.

Ridge because the features are many and strongly collinear (a*, the erythema index and R/G
all measure redness) and the samples few: the L2 penalty spreads the weight over correlated
features instead of letting two of them cancel out with huge opposite coefficients. The
penalty is chosen by an inner grouped cross-validation on the training data alone, so the
outer CV figures stay honest. (An RBF kernel ridge and k-nearest neighbours were tried too;
under the strict grouping they were no better, and the linear model is the easiest to audit.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from models.evaluation.splits import grouped_kfold

ALPHAS: Final = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)
INNER_FOLDS: Final = 5


@dataclass(frozen=True, eq=False)
class ColourRegressor:
    """ŷ = intercept + coef · (x − mean) / scale."""

    mean: NDArray[np.float64]
    scale: NDArray[np.float64]
    coef: NDArray[np.float64]
    intercept: float
    alpha: float

    def predict(self, features: NDArray[np.float64]) -> NDArray[np.float64]:
        z = (np.atleast_2d(features) - self.mean) / self.scale
        return np.asarray(z @ self.coef + self.intercept, dtype=np.float64)


def fit_ridge(features: NDArray[np.float64], targets: NDArray[np.float64], alpha: float) -> ColourRegressor:
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)  # a constant feature gets weight 0, not a NaN
    z = (features - mean) / scale
    intercept = float(targets.mean())
    gram = z.T @ z + alpha * np.eye(z.shape[1])
    coef = np.linalg.solve(gram, z.T @ (targets - intercept))
    return ColourRegressor(mean, scale, coef, intercept, alpha)


def fit_colour_regressor(
    features: NDArray[np.float64],
    targets: NDArray[np.float64],
    groups: Sequence[object],
    *,
    alphas: Sequence[float] = ALPHAS,
    seed: int = 0,
) -> ColourRegressor:
    """Ridge with the penalty that predicts held-out groups best (inner grouped CV, squared error)."""
    n_groups = len({str(g) for g in groups})
    folds = min(INNER_FOLDS, n_groups)
    if folds < 2:
        return fit_ridge(features, targets, alphas[len(alphas) // 2])
    splits = grouped_kfold(groups, folds, target=targets, seed=seed)
    errors = []
    for alpha in alphas:
        squared = 0.0
        for train, test in splits:
            model = fit_ridge(features[train], targets[train], alpha)
            squared += float(np.sum((model.predict(features[test]) - targets[test]) ** 2))
        errors.append(squared)
    best = alphas[int(np.argmin(errors))]
    return fit_ridge(features, targets, best)
