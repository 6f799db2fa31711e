"""Metrics for regressors and classifiers, each with a bootstrap 95 % confidence interval.

Every metric here is a function of ``(y_true, y_score)`` that works on a batch of resamples at
once: inputs of shape ``(n,)`` give a scalar, inputs of shape ``(B, n)`` give ``B`` values. That
lets :func:`bootstrap` draw thousands of resamples as one index matrix instead of a Python loop,
so a report with CIs costs milliseconds and tests can check CI coverage by simulation.

Conventions: a difference is ``prediction − truth`` (Bland–Altman); a binary "positive" is
whatever the caller's rule makes it (for Hb: below the anaemia cut-off). A metric that is
undefined on a sample (no positives, constant predictions) is NaN, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
Metric = Callable[[FloatArray, FloatArray], FloatArray]

DEFAULT_RESAMPLES = 2000
DEFAULT_LEVEL = 0.95
# 1.96 SD either side of the mean difference: the 95 % limits of agreement of Bland & Altman (1986).
LOA_Z = 1.96


@dataclass(frozen=True)
class MetricValue:
    """A metric on the whole sample and its bootstrap percentile interval (NaN when undefined)."""

    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float | None]:
        return {"value": _finite(self.value), "low": _finite(self.low), "high": _finite(self.high)}

    def figures(self, name: str) -> dict[str, float]:
        """``name`` and, when finite, its CI as ``name_low`` / ``name_high``, rounded to 4 places:
        how manifests store a metric. Empty for an undefined metric."""
        if not np.isfinite(self.value):
            return {}
        out = {name: round(self.value, 4)}
        if np.isfinite(self.low) and np.isfinite(self.high):
            out[f"{name}_low"], out[f"{name}_high"] = round(self.low, 4), round(self.high, 4)
        return out

    def format(self, digits: int = 2) -> str:
        if not np.isfinite(self.value):
            return "n/a"
        if not (np.isfinite(self.low) and np.isfinite(self.high)):
            return f"{self.value:.{digits}f}"
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def interval_of(figures: Mapping[str, float], name: str) -> tuple[float, float] | None:
    """The CI a manifest's metrics hold for ``name`` (see :meth:`MetricValue.figures`), if any."""
    low, high = figures.get(f"{name}_low"), figures.get(f"{name}_high")
    return None if low is None or high is None else (low, high)


def _finite(x: float) -> float | None:
    # JSON has no NaN: an undefined metric travels as null.
    return float(x) if np.isfinite(x) else None


# --- regression -----------------------------------------------------------------------------------


def mae(y_true: FloatArray, y_pred: FloatArray) -> FloatArray:
    return np.asarray(np.mean(np.abs(y_pred - y_true), axis=-1))


def rmse(y_true: FloatArray, y_pred: FloatArray) -> FloatArray:
    return np.asarray(np.sqrt(np.mean((y_pred - y_true) ** 2, axis=-1)))


def pearson_r(y_true: FloatArray, y_pred: FloatArray) -> FloatArray:
    """Pearson correlation; NaN when either side is constant (e.g. the mean baseline)."""
    t = y_true - y_true.mean(axis=-1, keepdims=True)
    p = y_pred - y_pred.mean(axis=-1, keepdims=True)
    denominator = np.sqrt((t * t).sum(axis=-1) * (p * p).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (t * p).sum(axis=-1) / denominator
    # Rounding can leave a constant vector with a tiny non-zero spread; call that undefined too.
    scale = np.maximum(np.abs(y_pred).max(axis=-1), 1.0)
    degenerate = (denominator <= 1e-12) | (np.abs(p).max(axis=-1) <= 1e-9 * scale)
    return np.asarray(np.where(degenerate, np.nan, r))


def bland_altman_bias(y_true: FloatArray, y_pred: FloatArray) -> FloatArray:
    return np.asarray(np.mean(y_pred - y_true, axis=-1))


def _difference_sd(y_true: FloatArray, y_pred: FloatArray) -> FloatArray:
    d = y_pred - y_true
    ddof = 1 if d.shape[-1] > 1 else 0
    return np.asarray(np.std(d, axis=-1, ddof=ddof))


def bland_altman_lower(y_true: FloatArray, y_pred: FloatArray) -> FloatArray:
    return bland_altman_bias(y_true, y_pred) - LOA_Z * _difference_sd(y_true, y_pred)


def bland_altman_upper(y_true: FloatArray, y_pred: FloatArray) -> FloatArray:
    return bland_altman_bias(y_true, y_pred) + LOA_Z * _difference_sd(y_true, y_pred)


# --- binary decisions (inputs are 0/1) -------------------------------------------------------------


def sensitivity(positive_true: FloatArray, positive_pred: FloatArray) -> FloatArray:
    """True-positive rate; NaN when the sample has no positives."""
    positives = positive_true.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray((positive_true * positive_pred).sum(axis=-1) / positives)


def specificity(positive_true: FloatArray, positive_pred: FloatArray) -> FloatArray:
    """True-negative rate; NaN when the sample has no negatives."""
    negative_true = 1.0 - positive_true
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray((negative_true * (1.0 - positive_pred)).sum(axis=-1) / negative_true.sum(axis=-1))


def accuracy(label_true: FloatArray, label_pred: FloatArray) -> FloatArray:
    return np.asarray(np.mean(label_true == label_pred, axis=-1))


def balanced_accuracy(labels: NDArray[np.int_], predicted: NDArray[np.int_]) -> float:
    """Mean over the classes present of the share of their rows called that class (NaN for none)."""
    recalls = [float(np.mean(predicted[labels == c] == c)) for c in np.unique(labels)]
    return float(np.mean(recalls)) if recalls else float("nan")


def auroc(positive_true: FloatArray, score: FloatArray) -> FloatArray:
    """Area under the ROC curve (Mann–Whitney U with mid-ranks for ties); NaN without both classes."""
    order = np.argsort(score, axis=-1, kind="mergesort")
    sorted_score = np.take_along_axis(score, order, axis=-1)
    ranks = _mid_ranks(sorted_score)
    ranks_in_place = np.empty_like(ranks)
    np.put_along_axis(ranks_in_place, order, ranks, axis=-1)
    n_pos = positive_true.sum(axis=-1)
    n_neg = positive_true.shape[-1] - n_pos
    rank_sum = (ranks_in_place * positive_true).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _mid_ranks(sorted_values: FloatArray) -> FloatArray:
    """1-based ranks of already-sorted rows, ties sharing the mean of their positions."""
    rows = np.atleast_2d(sorted_values)
    out = np.empty_like(rows, dtype=np.float64)
    n = rows.shape[-1]
    positions = np.arange(1, n + 1, dtype=np.float64)
    for i, row in enumerate(rows):
        # Start of each run of equal values; every member of a run gets the run's mean position.
        starts = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
        ends = np.r_[starts[1:], n]
        means = (positions[starts] + positions[ends - 1]) / 2.0
        out[i] = np.repeat(means, ends - starts)
    return out.reshape(sorted_values.shape)


def top_k_accuracy(label_true: ArrayLike, class_scores: ArrayLike, k: int) -> float:
    """Share of samples whose true class index is among the ``k`` highest scores (no CI)."""
    labels = np.asarray(label_true, dtype=np.int64)
    scores = np.asarray(class_scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] != labels.shape[0]:
        raise ValueError("class_scores must be (n_samples, n_classes) matching label_true")
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


# --- bootstrap ------------------------------------------------------------------------------------


def bootstrap(
    metrics: Mapping[str, Metric],
    y_true: ArrayLike,
    y_score: ArrayLike,
    *,
    groups: Sequence[object] | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> dict[str, MetricValue]:
    """Each metric on the full sample with a percentile bootstrap CI at ``level``.

    With ``groups`` the resampling unit is the group (a patient, a duplicate image), because
    rows of one group are not independent and row-level resampling would make CIs too narrow.
    Replicates where a metric is undefined (NaN) are left out of its percentiles.
    """
    truth = np.asarray(y_true, dtype=np.float64)
    score = np.asarray(y_score, dtype=np.float64)
    if truth.ndim != 1 or truth.shape != score.shape:
        raise ValueError("y_true and y_score must be 1-D and of equal length")
    if not 0.0 < level < 1.0:
        raise ValueError("level must be between 0 and 1")
    n = truth.shape[0]
    if n == 0:
        raise ValueError("no samples to score")
    rng = np.random.default_rng(seed)
    point = {name: float(fn(truth, score)) for name, fn in metrics.items()}
    if groups is None:
        index = rng.integers(0, n, size=(n_resamples, n))
        replicates = {name: fn(truth[index], score[index]) for name, fn in metrics.items()}
    else:
        replicates = _grouped_replicates(metrics, truth, score, groups, n_resamples, rng)
    tail = (1.0 - level) / 2.0 * 100.0
    out: dict[str, MetricValue] = {}
    for name, values in replicates.items():
        finite = values[np.isfinite(values)]
        if finite.size == 0 or not np.isfinite(point[name]):
            out[name] = MetricValue(point[name], float("nan"), float("nan"))
        else:
            low, high = np.percentile(finite, [tail, 100.0 - tail])
            out[name] = MetricValue(point[name], float(low), float(high))
    return out


def _grouped_replicates(
    metrics: Mapping[str, Metric],
    truth: FloatArray,
    score: FloatArray,
    groups: Sequence[object],
    n_resamples: int,
    rng: np.random.Generator,
) -> dict[str, FloatArray]:
    if len(groups) != truth.shape[0]:
        raise ValueError("groups must have one entry per sample")
    _, group_index = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)
    members = [np.flatnonzero(group_index == g) for g in range(int(group_index.max()) + 1)]
    out = {name: np.empty(n_resamples) for name in metrics}
    for b in range(n_resamples):
        chosen = rng.integers(0, len(members), size=len(members))
        index = np.concatenate([members[g] for g in chosen])
        for name, fn in metrics.items():
            out[name][b] = float(fn(truth[index], score[index]))
    return out


REGRESSION_METRICS: Mapping[str, Metric] = {
    "mae": mae,
    "rmse": rmse,
    "pearson_r": pearson_r,
    "bias": bland_altman_bias,
    "loa_low": bland_altman_lower,
    "loa_high": bland_altman_upper,
}
