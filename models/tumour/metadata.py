"""The clinical questions of PAD-UFES-20 as a comparison: a metadata-only model and a late fusion.

Only answers every row has are used: age, body region and the six lesion questions (itch,
grew, hurt, changed, bleed, elevation). Smoking, family origin, Fitzpatrick type, diameters and
cancer history are missing for exactly the 471 photos that were not biopsied — their absence
says "probably benign" and would leak the label. The shipped model never uses any of this: a
FHIR Media carries no such answers. These figures exist to show what the questions add.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch
from numpy.typing import NDArray

from models.errors import DatasetError
from models.tumour.dataset import CLASSES, MALIGNANT, MALIGNANT_OR_PREMALIGNANT, TumourSample
from models.tumour.report import BinaryFigures, binary_figures, operating_threshold

METADATA_FILE: Final = "metadata_pad_ufes_20.csv"
QUESTIONS: Final = ("itch", "grew", "hurt", "changed", "bleed", "elevation")
L2_PENALTY: Final = 1e-2


@dataclass(frozen=True)
class MetadataTable:
    features: NDArray[np.float64]  # (N, D), rows in sample order
    names: tuple[str, ...]


def _answer(text: str) -> float:
    # True +1, False −1, unknown 0: an unknown answer pulls neither way.
    return {"TRUE": 1.0, "FALSE": -1.0}.get(text.strip().upper(), 0.0)


def load_metadata(csv_path: Path, samples: list[TumourSample]) -> MetadataTable:
    """Features for ``samples`` from ``metadata_pad_ufes_20.csv`` beside the labels (joined on img_id)."""
    path = csv_path.parent / METADATA_FILE
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = {row["img_id"].strip(): row for row in csv.DictReader(handle)}
    except (OSError, KeyError) as exc:
        raise DatasetError(f"cannot read the clinical metadata {path}: {exc}") from None
    missing = [s.img_id for s in samples if s.img_id not in rows]
    if missing:
        raise DatasetError(f"{path}: no metadata for {len(missing)} photos (e.g. {missing[0]!r})")
    chosen = [rows[s.img_id] for s in samples]
    regions = sorted({row["region"].strip().upper() for row in rows.values()})
    names = ["age", *QUESTIONS, *(f"region={r}" for r in regions)]
    table = np.zeros((len(samples), len(names)))
    for i, row in enumerate(chosen):
        try:
            age = float(row["age"])
        except ValueError:
            age = math.nan
        table[i, 0] = age
        table[i, 1 : 1 + len(QUESTIONS)] = [_answer(row[q]) for q in QUESTIONS]
        table[i, 1 + len(QUESTIONS) + regions.index(row["region"].strip().upper())] = 1.0
    return MetadataTable(table, tuple(names))


def fit_predict_logistic(
    features: NDArray[np.float64],
    positive: NDArray[np.bool_],
    train: NDArray[np.intp],
    test: NDArray[np.intp],
) -> NDArray[np.float64]:
    """L2 logistic regression fitted on ``train`` rows (standardised there), P(positive) on ``test``."""
    x = features.copy()
    centre = np.nanmean(x[train], axis=0)
    x = np.where(np.isnan(x), centre, x)
    scale = x[train].std(axis=0)
    scale[scale == 0] = 1.0
    x = (x - centre) / scale
    xt = torch.from_numpy(x).double()
    y = torch.from_numpy(positive.astype(np.float64))
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")
    rows = torch.from_numpy(train)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        logits = xt[rows] @ w + b
        loss = (
            torch.nn.functional.binary_cross_entropy_with_logits(logits, y[rows]) + L2_PENALTY * (w * w).sum()
        )
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    optimiser.step(closure)  # type: ignore[no-untyped-call]
    with torch.no_grad():
        return torch.sigmoid(xt[torch.from_numpy(test)] @ w + b).numpy()


def out_of_fold_metadata(
    table: MetadataTable, positive: NDArray[np.bool_], splits: list[tuple[NDArray[np.intp], NDArray[np.intp]]]
) -> NDArray[np.float64]:
    """P(positive) for every photo from the model fitted without its fold (the CNN's own folds)."""
    out = np.zeros(len(positive))
    for train, test in splits:
        out[test] = fit_predict_logistic(table.features, positive, train, test)
    return out


def late_fusion(image: NDArray[np.float64], metadata: NDArray[np.float64]) -> NDArray[np.float64]:
    """Equal-weight mean of the two log-odds (no weight fitted, so nothing is tuned on the test folds)."""
    eps = 1e-6

    def logit(p: NDArray[np.float64]) -> NDArray[np.float64]:
        p = np.clip(p, eps, 1 - eps)
        return np.asarray(np.log(p / (1 - p)))

    return np.asarray(1 / (1 + np.exp(-(logit(image) + logit(metadata)) / 2)))


@dataclass(frozen=True)
class MetadataComparison:
    """Malignant-vs-benign CV figures with the clinical answers: alone, and fused with the image."""

    features: tuple[str, ...]
    # (grouping, model) → figures; grouping "malignant" or "malignant_or_ack".
    figures: dict[tuple[str, str], BinaryFigures]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"features": list(self.features)}
        for (grouping, model), figures in self.figures.items():
            out.setdefault(grouping, {})[model] = figures.to_json()
        return out

    def format_table(self) -> str:
        lines = []
        for (grouping, model), f in self.figures.items():
            cells = "  ".join(f"{k} {v.format()}" for k, v in f.metrics.items())
            lines.append(f"  {grouping:<17} {model:<15} n={f.n:<5} pos={f.n_positive:<4} {cells}")
        return "\n".join(lines)


def compare_with_metadata(
    csv_path: Path,
    samples: list[TumourSample],
    probabilities: NDArray[np.float64],
    splits: list[tuple[NDArray[np.intp], NDArray[np.intp]]],
    resamples: int,
) -> MetadataComparison | None:
    """Only when ``metadata_pad_ufes_20.csv`` lies beside the labels; the image model is untouched."""
    if not (csv_path.parent / METADATA_FILE).is_file():
        return None
    table = load_metadata(csv_path, samples)
    groups = [s.patient_id for s in samples]
    figures: dict[tuple[str, str], BinaryFigures] = {}
    for grouping, positives in (("malignant", MALIGNANT), ("malignant_or_ack", MALIGNANT_OR_PREMALIGNANT)):
        positive = np.array([s.diagnosis in positives for s in samples])
        image = probabilities[:, [CLASSES.index(c) for c in sorted(positives)]].sum(1)
        metadata = out_of_fold_metadata(table, positive, splits)
        for model, score in (
            ("image", image),
            ("metadata-only", metadata),
            ("image+metadata", late_fusion(image, metadata)),
        ):
            figures[(grouping, model)] = binary_figures(
                positive, score, operating_threshold(positive, score), groups, resamples
            )
    return MetadataComparison(table.names, figures)
