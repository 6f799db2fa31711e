"""Shared evaluation: metrics with bootstrap CIs, baseline-beside-model reports, grouped CV splits.

Used by every task (Hb, skin conditions, tumours) so that figures are computed one way.
"""

from models.evaluation.metrics import (
    MetricValue,
    accuracy,
    auroc,
    balanced_accuracy,
    bland_altman_bias,
    bland_altman_lower,
    bland_altman_upper,
    bootstrap,
    mae,
    pearson_r,
    rmse,
    sensitivity,
    specificity,
    top_k_accuracy,
)
from models.evaluation.report import RegressionReport, below_cutoff, regression_report
from models.evaluation.splits import grouped_kfold

__all__ = [
    "MetricValue",
    "RegressionReport",
    "accuracy",
    "auroc",
    "balanced_accuracy",
    "below_cutoff",
    "bland_altman_bias",
    "bland_altman_lower",
    "bland_altman_upper",
    "bootstrap",
    "grouped_kfold",
    "mae",
    "pearson_r",
    "regression_report",
    "rmse",
    "sensitivity",
    "specificity",
    "top_k_accuracy",
]
