"""Does a richer colour description of the lower conjunctiva predict Hb better? A re-runnable check.

    .venv/bin/python -m models.hb.colour_experiment --data ../shared/data/cp-anemic/labels.csv

Colour-only grouped cross-validation with the shipped training's folds (strict CV groups,
``grouped_kfold`` seed 0, ridge with its penalty chosen by inner grouped CV) for feature sets:

- ``shipped``: the 38 features the shipped model uses (``models.hb.features``);
- ``lowest-third``: those plus L*a*b*, hue, chroma, a*/L* and log R/B, log G/B over the lowest
  third of the tissue (per column) and over the whole tissue;
- ``histograms``: 16-bin histograms of a*, the erythema index and L* over the lower half (the
  half the U-Tokyo/LPixel Grad-CAM pointed at) — the distribution, not just its moments;
- ``all``: everything above.

It prints out-of-fold MAE and Pearson r, the predict-the-training-mean baseline, and for each
set the change in MAE against the shipped set with a 95 % grouped-bootstrap interval.
It changes nothing in the shipped model: adopting a feature set means retraining with
``photomarker train hb``, worth it only when the figures clearly improve.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from models.evaluation.splits import grouped_kfold
from models.hb.colour import fit_colour_regressor
from models.hb.dataset import cv_groups, load_dataset, load_strips
from models.hb.features import TooLittleTissue, colour_features, lower_half
from models.hb.strip import Strip
from models.tissue_colour import srgb_to_lab

Features = NDArray[np.float64]


def _usable(
    strip: Strip,
) -> tuple[
    NDArray[np.uint8], NDArray[np.float32], NDArray[np.float32], NDArray[np.float32], NDArray[np.bool_]
]:
    rgb = strip.rgb.reshape(-1, 3)
    lightness, a, b = srgb_to_lab(rgb)
    # The same exclusions as the shipped features: glare and deep shadow say nothing of the tissue.
    ok = (rgb < 250).all(axis=1) & (lightness >= 15.0)
    return rgb, lightness, a, b, ok


def lowest_third_features(strip: Strip) -> Features:
    rgb, lightness, a, b, ok = _usable(strip)
    mask = strip.mask
    rows = np.arange(mask.shape[0], dtype=np.float64)[:, None]
    top = np.where(mask, rows, np.inf).min(axis=0)
    bottom = np.where(mask, rows, -np.inf).max(axis=0)
    with np.errstate(invalid="ignore"):  # columns without tissue: inf − inf, and no pixel qualifies
        lowest = (mask & (rows >= (bottom - (bottom - top) / 3.0)[None, :])).reshape(-1)
    out: list[float] = []
    for select in (lowest & ok, mask.reshape(-1) & ok):
        if not select.any():
            select = mask.reshape(-1) & ok
        channels = rgb[select].astype(np.float64) + 1.0
        la, lb, ll = a[select], b[select], lightness[select]
        out += [
            float(la.mean()),
            float(ll.mean()),
            float(lb.mean()),
            float(np.degrees(np.arctan2(lb, la)).mean()),
            float(np.hypot(la, lb).mean()),
            float((la / np.maximum(ll, 1.0)).mean()),
            float(np.log(channels[:, 0] / channels[:, 2]).mean()),
            float(np.log(channels[:, 1] / channels[:, 2]).mean()),
        ]
    return np.asarray(out)


def histogram_features(strip: Strip) -> Features:
    rgb, lightness, a, _b, ok = _usable(strip)
    select = lower_half(strip.mask).reshape(-1) & ok
    if not select.any():
        select = strip.mask.reshape(-1) & ok
    channels = rgb[select].astype(np.float64) + 1.0
    erythema = 100.0 * np.log10(channels[:, 0] / channels[:, 1])
    n = float(np.count_nonzero(select))
    parts = [
        np.histogram(a[select], bins=16, range=(0.0, 50.0))[0] / n,
        np.histogram(erythema, bins=16, range=(0.0, 40.0))[0] / n,
        np.histogram(lightness[select], bins=16, range=(20.0, 90.0))[0] / n,
    ]
    return np.concatenate(parts).astype(np.float64)


FEATURE_SETS: dict[str, Callable[[Strip], Features]] = {
    "shipped": colour_features,
    "lowest-third": lambda s: np.concatenate([colour_features(s), lowest_third_features(s)]),
    "histograms": histogram_features,
    "all": lambda s: np.concatenate([colour_features(s), lowest_third_features(s), histogram_features(s)]),
}


def grouped_cv(features: Features, targets: Features, groups: Sequence[str], folds: int = 5) -> Features:
    """Out-of-fold predictions of the ridge (the shipped training's outer folds and inner penalty search)."""
    predicted = np.zeros_like(targets)
    for k, (train, test) in enumerate(grouped_kfold(groups, folds, target=targets, seed=0)):
        model = fit_colour_regressor(features[train], targets[train], [groups[i] for i in train], seed=k + 1)
        predicted[test] = model.predict(features[test])
    return predicted


def training_mean_baseline(targets: Features, groups: Sequence[str], folds: int = 5) -> Features:
    baseline = np.zeros_like(targets)
    for train, test in grouped_kfold(groups, folds, target=targets, seed=0):
        baseline[test] = targets[train].mean()
    return baseline


def mae_difference_ci(
    errors: Features, reference: Features, groups: Sequence[str], n_resamples: int = 2000
) -> tuple[float, float]:
    """95 % grouped-bootstrap interval of mean |error| minus the reference's, resampling whole groups."""
    keys = sorted(set(groups))
    members = {key: [i for i, g in enumerate(groups) if g == key] for key in keys}
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(n_resamples):
        rows = np.concatenate([members[keys[k]] for k in rng.integers(len(keys), size=len(keys))])
        diffs.append(float(errors[rows].mean() - reference[rows].mean()))
    low, high = np.quantile(diffs, [0.025, 0.975])
    return float(low), float(high)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, required=True, help="CP-AnemiC-style labels.csv")
    args = parser.parse_args(argv)
    dataset = load_dataset(args.data)
    strips = load_strips(dataset)
    groups_all = cv_groups(dataset, strips, "strict")
    keep: list[int] = []
    for index, strip in enumerate(strips):
        try:
            colour_features(strip)
        except TooLittleTissue:
            continue
        keep.append(index)
    targets = np.asarray([dataset.samples[i].hb_g_dl for i in keep], dtype=np.float64)
    groups = [groups_all[i] for i in keep]
    baseline = np.abs(training_mean_baseline(targets, groups) - targets)
    lines = [
        f"colour-only ridge, 5-fold grouped CV (strict groups, {len(set(groups))}), n={len(keep)}; "
        f"predict-the-training-mean MAE {baseline.mean():.3f} g/dL:"
    ]
    predictions: dict[str, tuple[int, Features]] = {}
    for name, make in FEATURE_SETS.items():
        features = np.stack([make(strips[i]) for i in keep])
        predictions[name] = (features.shape[1], grouped_cv(features, targets, groups))
    lines += comparison_lines(predictions, targets, groups)
    print("\n".join(lines))  # noqa: T201 - a command-line report


def comparison_lines(
    predictions: dict[str, tuple[int, Features]], targets: Features, groups: Sequence[str]
) -> list[str]:
    """One line per feature set (width, out-of-fold predictions): MAE, r, and — for all but the
    first, the reference — the change in MAE with its 95 % grouped-bootstrap interval."""
    lines: list[str] = []
    reference: tuple[str, Features] | None = None
    for name, (width, predicted) in predictions.items():
        errors = np.abs(predicted - targets)
        line = (
            f"  {name:<20} {width:>5} features  MAE {errors.mean():.3f} g/dL  "
            f"r {np.corrcoef(predicted, targets)[0, 1]:.3f}"
        )
        if reference is None:
            reference = (name, errors)
        else:
            low, high = mae_difference_ci(errors, reference[1], groups)
            change = errors.mean() - reference[1].mean()
            line += f"  ΔMAE vs {reference[0]} {change:+.3f} [{low:+.3f}, {high:+.3f}]"
        lines.append(line)
    return lines


if __name__ == "__main__":
    main()
