"""Scored reports: a model's metrics with CIs beside a trivial baseline's, as text or JSON.

A report always carries the baseline ("predict the training mean" for a regressor) because a
metric alone cannot tell a useful model from one that learnt the average: on a narrow target
range a constant can have a respectable MAE.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from models.evaluation.metrics import (
    DEFAULT_LEVEL,
    DEFAULT_RESAMPLES,
    REGRESSION_METRICS,
    FloatArray,
    Metric,
    MetricValue,
    bootstrap,
    sensitivity,
    specificity,
)


def below_cutoff(metric: Metric, cutoff: float) -> Metric:
    """A binary metric applied to "value < cutoff" on both sides (e.g. Hb below 11 g/dL)."""

    def scored(y_true: FloatArray, y_pred: FloatArray) -> FloatArray:
        return metric((y_true < cutoff).astype(np.float64), (y_pred < cutoff).astype(np.float64))

    scored.__name__ = f"{getattr(metric, '__name__', 'metric')}_below_{cutoff:g}"
    return scored


@dataclass(frozen=True)
class RegressionReport:
    """How a regressor and the constant baseline scored on the same samples."""

    n: int
    metrics: Mapping[str, MetricValue]
    baseline: Mapping[str, MetricValue]
    baseline_value: float
    cutoff: float | None
    level: float = DEFAULT_LEVEL
    n_resamples: int = DEFAULT_RESAMPLES
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Flat metric values at the top (``mae``, ``pearson_r``, …) plus their CIs and the baseline."""
        out: dict[str, Any] = {"n": self.n}
        out.update({name: value.as_dict()["value"] for name, value in self.metrics.items()})
        out["ci"] = {
            name: [v["low"], v["high"]] for name, value in self.metrics.items() for v in [value.as_dict()]
        }
        out["ci_level"] = self.level
        out["bootstrap_resamples"] = self.n_resamples
        out["cutoff_g_dl"] = self.cutoff
        out["baseline"] = {
            "description": "predict the training mean",
            "value": self.baseline_value,
            **{name: value.as_dict() for name, value in self.baseline.items()},
        }
        out.update(self.extra)
        return out

    def format_table(self, unit: str = "") -> str:
        """A fixed-width table: metric, model [CI], baseline [CI]."""
        names = {
            "mae": f"MAE{unit}",
            "rmse": f"RMSE{unit}",
            "pearson_r": "Pearson r",
            "bias": f"Bland–Altman bias{unit}",
            "loa_low": f"  lower limit of agreement{unit}",
            "loa_high": f"  upper limit of agreement{unit}",
            "sensitivity": f"sensitivity (< {self.cutoff:g})" if self.cutoff is not None else "sensitivity",
            "specificity": f"specificity (< {self.cutoff:g})" if self.cutoff is not None else "specificity",
        }
        pct = round(self.level * 100)
        header = (
            f"{'metric':<36}{f'model [{pct}% CI]':<28}{f'baseline {self.baseline_value:.2f} [{pct}% CI]'}"
        )
        lines = [header, "-" * len(header)]
        for key, model_value in self.metrics.items():
            base = self.baseline.get(key)
            lines.append(
                f"{names.get(key, key):<36}{model_value.format():<28}{base.format() if base else ''}"
            )
        lines.append(f"n = {self.n}; CIs: percentile bootstrap, {self.n_resamples} resamples")
        return "\n".join(lines)


def regression_report(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    baseline_value: float,
    cutoff: float | None = None,
    groups: Sequence[object] | None = None,
    baseline_pred: ArrayLike | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
    extra: Mapping[str, Any] | None = None,
) -> RegressionReport:
    """Score ``y_pred`` and the constant ``baseline_value`` against ``y_true``.

    ``cutoff`` adds sensitivity and specificity for "below the cut-off" (positive = below).
    ``baseline_pred`` replaces the constant per sample — in cross-validation each fold's
    baseline is that fold's own training mean; ``baseline_value`` is then what is shown.
    """
    truth = np.asarray(y_true, dtype=np.float64)
    pred = np.asarray(y_pred, dtype=np.float64)
    metrics: dict[str, Metric] = dict(REGRESSION_METRICS)
    if cutoff is not None:
        metrics["sensitivity"] = below_cutoff(sensitivity, cutoff)
        metrics["specificity"] = below_cutoff(specificity, cutoff)
    kwargs: dict[str, Any] = {"groups": groups, "n_resamples": n_resamples, "level": level, "seed": seed}
    model = bootstrap(metrics, truth, pred, **kwargs)
    base_pred = (
        np.full_like(truth, baseline_value)
        if baseline_pred is None
        else np.asarray(baseline_pred, dtype=np.float64)
    )
    base = bootstrap(metrics, truth, base_pred, **kwargs)
    # A constant has no correlation with anything; per-fold constants only produce an artefact.
    base["pearson_r"] = MetricValue(float("nan"), float("nan"), float("nan"))
    return RegressionReport(
        n=int(truth.shape[0]),
        metrics=model,
        baseline=base,
        baseline_value=float(baseline_value),
        cutoff=cutoff,
        level=level,
        n_resamples=n_resamples,
        extra=dict(extra or {}),
    )
