"""Training the Hb model: grouped cross-validation, then the final fit on all the data.

One recipe serves both: colour features → ridge (penalty by inner grouped CV), and a small
CNN ensemble (``members`` seeds) on the masked strips; the ensemble estimate is their equal-
weight mean. Equal weights, not weights fitted on the out-of-fold predictions, because a
weight chosen on the same predictions that are then scored would flatter the CV figures.

From the out-of-fold (OOF) predictions of the cross-validation come:
- the figures reported (``models.evaluation``), beside the "predict the training mean" baseline;
- the prediction interval: split-conformal, half-width = the ⌈(n+1)·0.95⌉-th smallest OOF
  absolute error (checked by cross-conformal coverage: each fold's half-width from the others);
- the abstention thresholds: the 99th percentile of the OOF CNN spread (members × views) and of
  the OOF out-of-distribution score (Mahalanobis distance of the CNN's pooled features).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

import numpy as np
import torch
from numpy.typing import NDArray

from models.engine.ensemble import fit_feature_gaussian, mahalanobis_score
from models.evaluation.report import RegressionReport, regression_report
from models.evaluation.splits import grouped_kfold
from models.hb.cnn import CnnTraining, train_cnn
from models.hb.colour import ColourRegressor, fit_colour_regressor
from models.hb.dataset import Grouping, HbDataset, cv_groups, load_strips
from models.hb.features import TooLittleTissue, colour_features
from models.hb.inference import MemberOutputs, run_members
from models.hb.model import HbConjunctivaNet
from models.hb.strip import strip_tensor

log = logging.getLogger(__name__)

WHO_CHILD_CUTOFF_G_DL: Final = 11.0  # WHO: anaemia below 11 g/dL at 24–59 months (CP-AnemiC's cut-off)
INTERVAL_LEVEL: Final = 0.95
ABSTAIN_QUANTILE: Final = 0.99

Progress = Callable[[str], None]


@dataclass(frozen=True)
class HbTrainingConfig:
    folds: int = 5
    members: int = 3
    cnn: CnnTraining = field(default_factory=CnnTraining)
    grouping: Grouping = "strict"
    seed: int = 0
    n_resamples: int = 2000


@dataclass(frozen=True, eq=False)
class PreparedData:
    """Everything training needs per usable sample, computed once."""

    dataset: HbDataset
    features: NDArray[np.float64]  # (N, F)
    tensors: NDArray[np.float32]  # (N, 4, 64, 128)
    targets: NDArray[np.float64]
    groups: list[str]
    image_ids: list[str]
    excluded: list[str]  # image IDs whose strip had too little usable tissue


def prepare(dataset: HbDataset, grouping: Grouping = "strict") -> PreparedData:
    strips = load_strips(dataset)
    groups_all = cv_groups(dataset, strips, grouping)
    keep: list[int] = []
    features: list[NDArray[np.float64]] = []
    excluded: list[str] = []
    for index, (sample, strip) in enumerate(zip(dataset.samples, strips, strict=True)):
        try:
            features.append(colour_features(strip))
        except TooLittleTissue:
            excluded.append(sample.image_ids[0])
            continue
        keep.append(index)
    tensors = np.stack([strip_tensor(strips[i], 64, 128) for i in keep])
    return PreparedData(
        dataset=dataset,
        features=np.stack(features),
        tensors=tensors,
        targets=dataset.hb[keep],
        groups=[groups_all[i] for i in keep],
        image_ids=[dataset.samples[i].image_ids[0] for i in keep],
        excluded=excluded,
    )


@dataclass(frozen=True, eq=False)
class FittedHb:
    """One trained model: CNN members (each carrying the colour regressor) and its training mean."""

    members: list[HbConjunctivaNet]
    colour: ColourRegressor
    training_mean: float


def fit(
    features: NDArray[np.float64],
    tensors: NDArray[np.float32],
    targets: NDArray[np.float64],
    groups: Sequence[str],
    config: HbTrainingConfig,
    *,
    seed_offset: int = 0,
) -> FittedHb:
    colour = fit_colour_regressor(features, targets, groups, seed=config.seed)
    members: list[HbConjunctivaNet] = []
    for m in range(config.members):
        cnn_config = replace(config.cnn, seed=config.cnn.seed + 1000 * seed_offset + m)
        net = HbConjunctivaNet()
        net.cnn = train_cnn(tensors, targets, cnn_config)
        net.set_colour(colour)
        members.append(net.eval())
    return FittedHb(members, colour, float(np.mean(targets)))


@dataclass(frozen=True, eq=False)
class CrossValidation:
    """Out-of-fold predictions and what they were scored as."""

    data: PreparedData
    config: HbTrainingConfig
    fold: NDArray[np.intp]
    cnn: NDArray[np.float64]
    colour: NDArray[np.float64]
    ensemble: NDArray[np.float64]
    baseline: NDArray[np.float64]
    spread: NDArray[np.float64]
    ood: NDArray[np.float64]
    report: RegressionReport
    estimator_reports: dict[str, RegressionReport]
    interval_half_width: float
    interval_coverage: float
    seconds: float


def cross_validate(
    data: PreparedData, config: HbTrainingConfig, progress: Progress | None = None
) -> CrossValidation:
    began = time.perf_counter()
    n = data.targets.shape[0]
    fold_of = np.full(n, -1, dtype=np.intp)
    cnn = np.zeros(n)
    colour = np.zeros(n)
    baseline = np.zeros(n)
    spread = np.zeros(n)
    ood = np.zeros(n)
    splits = grouped_kfold(data.groups, config.folds, target=data.targets, seed=config.seed)
    for k, (train, test) in enumerate(splits):
        fitted = fit(
            data.features[train],
            data.tensors[train],
            data.targets[train],
            [data.groups[i] for i in train],
            config,
            seed_offset=k + 1,
        )
        train_out = run_members(fitted.members, data.tensors[train], data.features[train])
        gaussian = _feature_gaussian(train_out)
        out = run_members(fitted.members, data.tensors[test], data.features[test])
        fold_of[test] = k
        cnn[test] = out.cnn_mean
        colour[test] = out.colour
        spread[test] = out.cnn_spread
        ood[test] = mahalanobis_score(torch.from_numpy(out.features), *gaussian).numpy()
        baseline[test] = fitted.training_mean
        if progress is not None:
            progress(
                f"fold {k + 1}/{config.folds}: {len(test)} samples, "
                f"MAE {np.mean(np.abs((cnn[test] + colour[test]) / 2 - data.targets[test])):.2f} g/dL "
                f"({time.perf_counter() - began:.0f} s)"
            )
    ensemble = (cnn + colour) / 2
    half_width = conformal_half_width(ensemble - data.targets, INTERVAL_LEVEL)
    coverage = _cross_conformal_coverage(ensemble - data.targets, fold_of, INTERVAL_LEVEL)
    extra = {
        "groups": len(set(data.groups)),
        "interval_half_width_g_dl": half_width,
        "interval_coverage": coverage,
        "interval_level": INTERVAL_LEVEL,
    }

    def score(values: NDArray[np.float64], details: Mapping[str, object] | None = None) -> RegressionReport:
        # Each fold's baseline is its own training mean; groups are the bootstrap's units.
        return regression_report(
            data.targets,
            values,
            baseline_value=float(np.mean(data.targets)),
            baseline_pred=baseline,
            cutoff=WHO_CHILD_CUTOFF_G_DL,
            groups=data.groups,
            n_resamples=config.n_resamples,
            seed=config.seed,
            extra=details,
        )

    report = score(ensemble, extra)
    estimators = {"cnn": score(cnn), "colour": score(colour)}
    return CrossValidation(
        data=data,
        config=config,
        fold=fold_of,
        cnn=cnn,
        colour=colour,
        ensemble=ensemble,
        baseline=baseline,
        spread=spread,
        ood=ood,
        report=report,
        estimator_reports=estimators,
        interval_half_width=half_width,
        interval_coverage=coverage,
        seconds=time.perf_counter() - began,
    )


@dataclass(frozen=True, eq=False)
class FinalModel:
    fitted: FittedHb
    interval_half_width: float
    residual_std: float
    max_spread: float
    max_ood: float
    ood_gaussian: tuple[torch.Tensor, torch.Tensor]
    seconds: float


def train_final(data: PreparedData, cv: CrossValidation, progress: Progress | None = None) -> FinalModel:
    """Fit on every usable sample; interval and thresholds come from the CV's OOF results."""
    began = time.perf_counter()
    fitted = fit(data.features, data.tensors, data.targets, data.groups, cv.config, seed_offset=0)
    for member in fitted.members:
        member.cnn_weight.fill_(0.5)
        member.interval_half_width.fill_(cv.interval_half_width)
    out = run_members(fitted.members, data.tensors, data.features)
    gaussian = _feature_gaussian(out)
    residuals = cv.ensemble - data.targets
    if progress is not None:
        progress(
            f"final model: {len(fitted.members)} CNN members on {len(data.targets)} samples "
            f"({time.perf_counter() - began:.0f} s)"
        )
    return FinalModel(
        fitted=fitted,
        interval_half_width=cv.interval_half_width,
        residual_std=float(np.sqrt(np.mean(residuals**2))),
        # Thresholds from the OOF values: what in-distribution photos the model never saw look like.
        max_spread=float(np.quantile(cv.spread, ABSTAIN_QUANTILE)),
        max_ood=float(np.quantile(cv.ood, ABSTAIN_QUANTILE)),
        ood_gaussian=gaussian,
        seconds=time.perf_counter() - began,
    )


def conformal_half_width(residuals: NDArray[np.float64], level: float) -> float:
    """Split-conformal: the ⌈(n+1)·level⌉-th smallest |residual| (the largest when n is small)."""
    errors = np.sort(np.abs(residuals))
    n = errors.shape[0]
    if n == 0:
        raise ValueError("no residuals")
    rank = min(n, math.ceil((n + 1) * level))
    return float(errors[rank - 1])


def _cross_conformal_coverage(residuals: NDArray[np.float64], fold: NDArray[np.intp], level: float) -> float:
    """Share of samples inside an interval whose half-width came from the *other* folds only."""
    covered = 0
    for k in np.unique(fold):
        inside = fold == k
        width = conformal_half_width(residuals[~inside], level)
        covered += int(np.count_nonzero(np.abs(residuals[inside]) <= width))
    return covered / int(residuals.shape[0])


def _feature_gaussian(out: MemberOutputs) -> tuple[torch.Tensor, torch.Tensor]:
    """The engine's OOD model: one Gaussian per member over its pooled CAM-layer features."""
    means, precisions = [], []
    for member_features in out.features:
        x = torch.from_numpy(member_features)
        mean, precision = fit_feature_gaussian(x, torch.zeros(x.shape[0], dtype=torch.long), 1)
        means.append(mean)
        precisions.append(precision)
    return torch.stack(means), torch.stack(precisions)
