"""Metrics on inputs whose answers are known, and bootstrap intervals that cover what they claim."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.evaluation import (
    MetricValue,
    auroc,
    bland_altman_bias,
    bland_altman_lower,
    bland_altman_upper,
    bootstrap,
    mae,
    pearson_r,
    regression_report,
    rmse,
    sensitivity,
    specificity,
    top_k_accuracy,
)

TRUTH = np.array([10.0, 12.0, 8.0, 11.0])
PRED = np.array([11.0, 11.0, 9.0, 13.0])  # differences +1, -1, +1, +2


def test_regression_metrics_by_hand() -> None:
    assert mae(TRUTH, PRED) == pytest.approx(5 / 4)
    assert rmse(TRUTH, PRED) == pytest.approx(math.sqrt(7 / 4))
    assert bland_altman_bias(TRUTH, PRED) == pytest.approx(0.75)
    sd = np.std(PRED - TRUTH, ddof=1)
    assert bland_altman_lower(TRUTH, PRED) == pytest.approx(0.75 - 1.96 * sd)
    assert bland_altman_upper(TRUTH, PRED) == pytest.approx(0.75 + 1.96 * sd)
    assert pearson_r(TRUTH, PRED) == pytest.approx(np.corrcoef(TRUTH, PRED)[0, 1])
    assert pearson_r(TRUTH, 2 * TRUTH + 3) == pytest.approx(1.0)
    assert pearson_r(TRUTH, -TRUTH) == pytest.approx(-1.0)


def test_constant_prediction_has_no_correlation() -> None:
    assert math.isnan(float(pearson_r(TRUTH, np.full(4, 10.25))))


def test_metrics_work_on_a_batch_of_resamples() -> None:
    batch_truth = np.stack([TRUTH, TRUTH[::-1]])
    batch_pred = np.stack([PRED, PRED[::-1]])
    assert mae(batch_truth, batch_pred) == pytest.approx([1.25, 1.25])
    assert pearson_r(batch_truth, batch_pred).shape == (2,)


def test_sensitivity_and_specificity_from_a_confusion_matrix() -> None:
    # 3 true positives, 1 false negative, 2 true negatives, 2 false positives.
    positive = np.array([1, 1, 1, 1, 0, 0, 0, 0], dtype=float)
    called = np.array([1, 1, 1, 0, 0, 0, 1, 1], dtype=float)
    assert sensitivity(positive, called) == pytest.approx(3 / 4)
    assert specificity(positive, called) == pytest.approx(2 / 4)
    assert math.isnan(float(sensitivity(np.zeros(3), np.ones(3))))


def test_below_cutoff_rule_in_the_report() -> None:
    truth = np.array([9.0, 10.0, 12.0, 13.0])
    pred = np.array([10.5, 11.5, 11.5, 12.5])  # calls: anaemic, not, not, not
    report = regression_report(truth, pred, baseline_value=11.0, cutoff=11.0, n_resamples=200)
    assert report.metrics["sensitivity"].value == pytest.approx(0.5)
    assert report.metrics["specificity"].value == pytest.approx(1.0)
    # The constant 11.0 is never "below 11": it calls nobody anaemic.
    assert report.baseline["sensitivity"].value == pytest.approx(0.0)
    assert math.isnan(report.baseline["pearson_r"].value)


def test_auroc_with_ties_and_a_perfect_ranking() -> None:
    labels = np.array([0, 0, 1, 1], dtype=float)
    assert auroc(labels, np.array([0.1, 0.2, 0.8, 0.9])) == pytest.approx(1.0)
    assert auroc(labels, np.array([0.9, 0.8, 0.2, 0.1])) == pytest.approx(0.0)
    # One tie between a positive and a negative counts half.
    assert auroc(labels, np.array([0.1, 0.5, 0.5, 0.9])) == pytest.approx(0.875)
    assert math.isnan(float(auroc(np.ones(3), np.array([0.1, 0.2, 0.3]))))


def test_top_k_accuracy() -> None:
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    labels = np.array([2, 0, 0])
    assert top_k_accuracy(labels, scores, 1) == pytest.approx(1 / 3)
    assert top_k_accuracy(labels, scores, 2) == pytest.approx(2 / 3)
    assert top_k_accuracy(labels, scores, 3) == pytest.approx(1.0)


def test_bootstrap_interval_covers_the_true_bias_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(7)
    true_bias, trials, covered = 0.3, 300, 0
    for trial in range(trials):
        truth = rng.normal(10.0, 2.0, size=80)
        pred = truth + true_bias + rng.normal(0.0, 1.0, size=80)
        ci = bootstrap({"bias": bland_altman_bias}, truth, pred, n_resamples=400, seed=trial)["bias"]
        covered += ci.low <= true_bias <= ci.high
    # Percentile intervals run a little narrow at n = 80; 300 trials put ±2.5 % of noise on top.
    assert 0.89 <= covered / trials <= 0.99


def test_grouped_bootstrap_is_wider_when_rows_repeat() -> None:
    rng = np.random.default_rng(3)
    truth = rng.normal(10, 2, size=30)
    pred = truth + rng.normal(0, 1, size=30)
    # Each sample repeated five times: as many independent units as 30 samples, not 150.
    rep_truth, rep_pred = np.repeat(truth, 5), np.repeat(pred, 5)
    groups = np.repeat(np.arange(30), 5).tolist()
    naive = bootstrap({"mae": mae}, rep_truth, rep_pred, n_resamples=500)["mae"]
    grouped = bootstrap({"mae": mae}, rep_truth, rep_pred, groups=groups, n_resamples=500)["mae"]
    assert (grouped.high - grouped.low) > 1.5 * (naive.high - naive.low)
    assert grouped.value == pytest.approx(naive.value)


def test_undefined_metric_travels_as_null() -> None:
    value = MetricValue(float("nan"), float("nan"), float("nan"))
    assert value.as_dict() == {"value": None, "low": None, "high": None}
    assert value.format() == "n/a"


def test_report_json_carries_the_flat_keys_clients_read() -> None:
    rng = np.random.default_rng(0)
    truth = rng.normal(10, 2, 50)
    report = regression_report(
        truth, truth + rng.normal(0, 1, 50), baseline_value=10.0, cutoff=11.0, n_resamples=200
    )
    data = report.to_json()
    for key in ("n", "mae", "rmse", "pearson_r", "bias", "loa_low", "loa_high", "sensitivity", "specificity"):
        assert key in data
    assert data["n"] == 50
    assert data["ci"]["mae"][0] <= data["mae"] <= data["ci"]["mae"][1]
    assert data["baseline"]["value"] == 10.0
    assert "Pearson r" in report.format_table()


def test_bootstrap_refuses_mismatched_inputs() -> None:
    with pytest.raises(ValueError):
        bootstrap({"mae": mae}, [1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        bootstrap({"mae": mae}, [], [])
