"""What PAD-UFES-20's other columns add to the image model, as comparisons on the CNN's own folds.

Only answers every row has are used: age, body region and the six lesion questions (itch,
grew, hurt, changed, bleed, elevation). Smoking, family origin, Fitzpatrick type, diameters and
cancer history are missing for exactly the 471 photos that were not biopsied — their absence
says "probably benign" and would leak the label. The shipped model never uses any of this: a
FHIR Media carries no such answers. These figures exist to show what the questions add.

The second comparison uses only what a FHIR record does hold for any photo: the patient's age
(``Patient.birthDate`` against the photo's date) and the body region (``Media.bodySite``). A
six-class logistic regression on those gives P(type | age, site); multiplied into the image
model's probabilities and divided by the training prior (the image and the record taken as
independent given the type, so nothing is fitted on the image model's outputs) it gives the
record-weighted probabilities, and the report shows their malignant figures and six-class
balanced accuracy.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch
from numpy.typing import NDArray

from models.errors import DatasetError
from models.evaluation import MetricValue, auroc, balanced_accuracy, bootstrap
from models.tumour.dataset import CLASSES, MALIGNANT, MALIGNANT_OR_PREMALIGNANT, TumourSample
from models.tumour.report import BinaryFigures, binary_figures, operating_threshold

METADATA_FILE: Final = "metadata_pad_ufes_20.csv"
QUESTIONS: Final = ("itch", "grew", "hurt", "changed", "bleed", "elevation")
L2_PENALTY: Final = 1e-2
# Model names in the comparison: the record (age and site) alone, and the image weighed with it.
RECORD_ONLY: Final = "age+site-only"
IMAGE_WITH_RECORD: Final = "image+age+site"


@dataclass(frozen=True)
class MetadataTable:
    features: NDArray[np.float64]  # (N, D), rows in sample order
    names: tuple[str, ...]


def _answer(text: str) -> float:
    # True +1, False −1, unknown 0: an unknown answer pulls neither way.
    return {"TRUE": 1.0, "FALSE": -1.0}.get(text.strip().upper(), 0.0)


def load_metadata(csv_path: Path, samples: list[TumourSample]) -> MetadataTable:
    """Features for ``samples`` from ``metadata_pad_ufes_20.csv`` beside the labels (joined on img_id)."""
    chosen, regions = _metadata_rows(csv_path, samples)
    names = ["age", *QUESTIONS, *(f"region={r}" for r in regions)]
    table = np.zeros((len(samples), len(names)))
    for i, row in enumerate(chosen):
        table[i, 0] = _age(row)
        table[i, 1 : 1 + len(QUESTIONS)] = [_answer(row[q]) for q in QUESTIONS]
        table[i, 1 + len(QUESTIONS) + regions.index(row["region"].strip().upper())] = 1.0
    return MetadataTable(table, tuple(names))


def load_record_context(csv_path: Path, samples: list[TumourSample]) -> MetadataTable:
    """Age, age² (types differ most at the ends of life) and the body region: what FHIR holds."""
    chosen, regions = _metadata_rows(csv_path, samples)
    names = ["age", "age²", *(f"region={r}" for r in regions)]
    table = np.zeros((len(samples), len(names)))
    for i, row in enumerate(chosen):
        table[i, 0] = _age(row)
        table[i, 1] = table[i, 0] ** 2
        table[i, 2 + regions.index(row["region"].strip().upper())] = 1.0
    return MetadataTable(table, tuple(names))


def _age(row: dict[str, str]) -> float:
    try:
        return float(row["age"])
    except ValueError:
        return math.nan


def _metadata_rows(csv_path: Path, samples: list[TumourSample]) -> tuple[list[dict[str, str]], list[str]]:
    """The metadata row of each sample (joined on img_id) and every region, sorted."""
    path = csv_path.parent / METADATA_FILE
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = {row["img_id"].strip(): row for row in csv.DictReader(handle)}
    except (OSError, KeyError) as exc:
        raise DatasetError(f"cannot read the clinical metadata {path}: {exc}") from None
    missing = [s.img_id for s in samples if s.img_id not in rows]
    if missing:
        raise DatasetError(f"{path}: no metadata for {len(missing)} photos (e.g. {missing[0]!r})")
    regions = sorted({row["region"].strip().upper() for row in rows.values()})
    return [rows[s.img_id] for s in samples], regions


def fit_predict_logistic(
    features: NDArray[np.float64],
    positive: NDArray[np.bool_],
    train: NDArray[np.intp],
    test: NDArray[np.intp],
) -> NDArray[np.float64]:
    """L2 logistic regression fitted on ``train`` rows (standardised there), P(positive) on ``test``."""
    target = torch.from_numpy(positive.astype(np.float64))
    loss = torch.nn.functional.binary_cross_entropy_with_logits
    logits = _fit_linear(_standardised(features, train), train, (), loss, target, max_iter=200)
    return torch.sigmoid(logits(test)).numpy()


def fit_predict_multinomial(
    features: NDArray[np.float64],
    labels: NDArray[np.int_],
    train: NDArray[np.intp],
    test: NDArray[np.intp],
) -> NDArray[np.float64]:
    """L2 softmax regression over :data:`CLASSES` fitted on ``train`` rows, probabilities on ``test``."""
    target = torch.from_numpy(labels.astype(np.int64))
    loss = torch.nn.functional.cross_entropy
    logits = _fit_linear(_standardised(features, train), train, (len(CLASSES),), loss, target, max_iter=500)
    return torch.softmax(logits(test), dim=1).numpy()


def _standardised(features: NDArray[np.float64], train: NDArray[np.intp]) -> torch.Tensor:
    """Centred and scaled on the ``train`` rows only; a missing value becomes the centre."""
    x = features.copy()
    centre = np.nanmean(x[train], axis=0)
    x = np.where(np.isnan(x), centre, x)
    scale = x[train].std(axis=0)
    scale[scale == 0] = 1.0
    return torch.from_numpy((x - centre) / scale).double()


def _fit_linear(
    xt: torch.Tensor,
    train: NDArray[np.intp],
    outputs: tuple[int, ...],
    loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    target: torch.Tensor,
    *,
    max_iter: int,
) -> Callable[[NDArray[np.intp]], torch.Tensor]:
    """A linear model with an L2 penalty fitted by L-BFGS on ``train`` rows: the logits of any rows."""
    w = torch.zeros((xt.shape[1], *outputs), dtype=torch.float64, requires_grad=True)
    b = torch.zeros(outputs, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")
    rows = torch.from_numpy(train)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = loss_of(xt[rows] @ w + b, target[rows]) + L2_PENALTY * (w * w).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    optimiser.step(closure)  # type: ignore[no-untyped-call]
    return lambda test: (xt[torch.from_numpy(test)] @ w + b).detach()


def record_fusion(
    image: NDArray[np.float64], record: NDArray[np.float64], prior: NDArray[np.float64]
) -> NDArray[np.float64]:
    """P(type | image) × P(type | record) ÷ P(type), renormalised: Bayes with the two independent
    given the type. A record that says nothing (its probabilities = the prior) leaves the image's."""
    fused = image * record / prior
    return np.asarray(fused / fused.sum(axis=1, keepdims=True))


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
    # The record comparison (age and site, what FHIR holds): its features and, per model, the
    # six-class balanced accuracy of the most likely type.
    record_features: tuple[str, ...] = ()
    balanced_accuracy_6: dict[str, float] = field(default_factory=dict)
    # Image weighed with the record minus the image alone, paired on the same patients' resamples.
    record_gain: dict[str, MetricValue] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "features": list(self.features),
            "record_features": list(self.record_features),
            "six_class_balanced_accuracy": self.balanced_accuracy_6,
            "record_gain": {name: value.as_dict() for name, value in self.record_gain.items()},
        }
        for (grouping, model), figures in self.figures.items():
            out.setdefault(grouping, {})[model] = figures.to_json()
        return out

    def format_table(self) -> str:
        lines = []
        for (grouping, model), f in self.figures.items():
            cells = "  ".join(f"{k} {v.format()}" for k, v in f.metrics.items())
            lines.append(f"  {grouping:<17} {model:<15} n={f.n:<5} pos={f.n_positive:<4} {cells}")
        accuracies = ", ".join(f"{model} {value:.3f}" for model, value in self.balanced_accuracy_6.items())
        if accuracies:
            lines.append(f"  six-class balanced accuracy (most likely type): {accuracies}")
        for name, value in self.record_gain.items():
            lines.append(f"  {name}: {value.value:+.3f} [{value.low:+.3f}, {value.high:+.3f}]")
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
    record = load_record_context(csv_path, samples)
    labels = np.array([s.label for s in samples])
    with_record = np.zeros_like(probabilities)
    record_alone = np.zeros_like(probabilities)
    for train, test in splits:
        record_alone[test] = fit_predict_multinomial(record.features, labels, train, test)
        # Add-one counts: a type absent from a small training set must not divide by zero.
        prior = (np.bincount(labels[train], minlength=len(CLASSES)) + 1) / (len(train) + len(CLASSES))
        with_record[test] = record_fusion(probabilities[test], record_alone[test], prior)
    groups = [s.patient_id for s in samples]
    figures: dict[tuple[str, str], BinaryFigures] = {}
    for grouping, positives in (("malignant", MALIGNANT), ("malignant_or_ack", MALIGNANT_OR_PREMALIGNANT)):
        positive = np.array([s.diagnosis in positives for s in samples])
        index = [CLASSES.index(c) for c in sorted(positives)]
        image = probabilities[:, index].sum(1)
        metadata = out_of_fold_metadata(table, positive, splits)
        for model, score in (
            ("image", image),
            ("metadata-only", metadata),
            ("image+metadata", late_fusion(image, metadata)),
            (RECORD_ONLY, record_alone[:, index].sum(1)),
            (IMAGE_WITH_RECORD, with_record[:, index].sum(1)),
        ):
            figures[(grouping, model)] = binary_figures(
                positive, score, operating_threshold(positive, score), groups, resamples
            )
    models = {"image": probabilities, RECORD_ONLY: record_alone, IMAGE_WITH_RECORD: with_record}
    accuracies = {name: balanced_accuracy(labels, p.argmax(1)) for name, p in models.items()}
    gain = record_gain(labels, probabilities, with_record, groups, resamples)
    return MetadataComparison(table.names, figures, record.names, accuracies, gain)


def record_gain(
    labels: NDArray[np.int_],
    image: NDArray[np.float64],
    with_record: NDArray[np.float64],
    groups: list[str],
    resamples: int,
) -> dict[str, MetricValue]:
    """Weighed minus image-only malignant AUROC and six-class balanced accuracy, patient-bootstrap
    CIs of the difference: both scored on each resample, so the shared noise cancels."""
    index = [CLASSES.index(c) for c in MALIGNANT]
    malignant = np.isin(labels, index).astype(np.float64)

    def auroc_gain(rows: NDArray[np.int_]) -> float:
        y = malignant[rows]
        return float(auroc(y, with_record[rows][:, index].sum(1)) - auroc(y, image[rows][:, index].sum(1)))

    def accuracy_gain(rows: NDArray[np.int_]) -> float:
        named, named_by_image = with_record[rows].argmax(1), image[rows].argmax(1)
        return balanced_accuracy(labels[rows], named) - balanced_accuracy(labels[rows], named_by_image)

    # The bootstrap resamples row numbers; each metric reads its rows' scores itself.
    rows = np.arange(len(labels), dtype=np.float64)
    metrics = {
        f"malignant AUROC, {IMAGE_WITH_RECORD} − image": auroc_gain,
        f"six-class balanced accuracy, {IMAGE_WITH_RECORD} − image": accuracy_gain,
    }
    wrapped = {name: (lambda r, _, fn=fn: np.asarray(fn(r.astype(np.int64)))) for name, fn in metrics.items()}
    return bootstrap(wrapped, rows, rows, groups=groups, n_resamples=resamples)
