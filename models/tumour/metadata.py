"""What PAD-UFES-20's other columns add to the image model, as comparisons on the CNN's own folds.

Only answers every row has are used: age, body region and the six lesion questions (itch,
grew, hurt, changed, bleed, elevation). Smoking, family origin, Fitzpatrick type, diameters and
cancer history are missing for exactly the 471 photos that were not biopsied — their absence
says "probably benign" and would leak the label. The shipped model never uses any of this: a
FHIR Media carries no such answers. These figures exist to show what the questions add.

The second comparison uses only what a FHIR record does hold for any photo: the patient's age
(``Patient.birthDate`` against the photo's date) and the body region (``Media.bodySite``),
through the record model the tumour package serves (``models.tumour.record``), fitted on each
fold's training rows: age and site together, and each alone (a record may hold only one). The
report shows the weighed malignant figures, six-class balanced accuracy and per-type recall.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch
from numpy.typing import NDArray

from models.evaluation import MetricValue, auroc, balanced_accuracy, bootstrap, sensitivity
from models.tumour.dataset import CLASSES, MALIGNANT, MALIGNANT_OR_PREMALIGNANT, TumourSample
from models.tumour.record import (
    FACT_SETS,
    METADATA_FILE,
    add_one_prior,
    age_of,
    fact_columns,
    fit_linear,
    fit_multinomial,
    metadata_rows,
    record_features,
    record_fusion,
    standardise,
)
from models.tumour.report import BinaryFigures, binary_figures, operating_threshold

QUESTIONS: Final = ("itch", "grew", "hurt", "changed", "bleed", "elevation")
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
    chosen, regions = metadata_rows(csv_path, samples)
    names = ["age", *QUESTIONS, *(f"region={r}" for r in regions)]
    table = np.zeros((len(samples), len(names)))
    for i, row in enumerate(chosen):
        table[i, 0] = age_of(row)
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
    target = torch.from_numpy(positive.astype(np.float64))
    loss = torch.nn.functional.binary_cross_entropy_with_logits
    xt, _, _ = standardise(features, train)
    w, b = fit_linear(xt, train, (), loss, target, max_iter=200)
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
    # The record comparison (age and site, what FHIR holds): its features and, per model, the
    # six-class balanced accuracy of the most likely type.
    record_features: tuple[str, ...] = ()
    balanced_accuracy_6: dict[str, float] = field(default_factory=dict)
    # Image weighed with the record minus the image alone, paired on the same patients' resamples.
    record_gain: dict[str, MetricValue] = field(default_factory=dict)
    # Per model, each type's recall (photos of it named as it), in CLASSES order, and their counts.
    recall_6: dict[str, list[float]] = field(default_factory=dict)
    class_counts: tuple[int, ...] = ()
    # The out-of-fold probabilities weighed with age and site (N, 6): the served model's CV outputs.
    with_record: NDArray[np.float64] | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "features": list(self.features),
            "record_features": list(self.record_features),
            "six_class_balanced_accuracy": self.balanced_accuracy_6,
            "record_gain": {name: value.as_dict() for name, value in self.record_gain.items()},
            "six_class_recall": {
                "classes": list(CLASSES),
                "photos": list(self.class_counts),
                **self.recall_6,
            },
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
    record, record_names, _ = record_features(csv_path, samples)
    labels = np.array([s.label for s in samples])
    record_alone = np.zeros_like(probabilities)
    # "image+age+site", "image+age", "image+site": the image weighed with each fact set's regression.
    weighed = {f"image+{facts}": np.zeros_like(probabilities) for facts in FACT_SETS}
    for train, test in splits:
        prior = add_one_prior(labels[train])
        for facts in FACT_SETS:
            columns = fact_columns(facts, record_names)
            names = tuple(record_names[i] for i in columns)
            fitted = fit_multinomial(record[:, columns], names, labels, train)
            alone = fitted.probabilities(record[test][:, columns])
            if facts == "age+site":
                record_alone[test] = alone
            weighed[f"image+{facts}"][test] = record_fusion(probabilities[test], alone, prior)
    with_record = weighed[IMAGE_WITH_RECORD]
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
            *((name, p[:, index].sum(1)) for name, p in weighed.items()),
        ):
            figures[(grouping, model)] = binary_figures(
                positive, score, operating_threshold(positive, score), groups, resamples
            )
    models = {"image": probabilities, RECORD_ONLY: record_alone, **weighed}
    accuracies = {name: balanced_accuracy(labels, p.argmax(1)) for name, p in models.items()}
    gain = record_gain(labels, probabilities, with_record, groups, resamples)
    counts = np.bincount(labels, minlength=len(CLASSES))
    # Each type's sensitivity as "named as it" (0 for a type absent from the data, not NaN: JSON).
    recall = {
        name: [float(np.nan_to_num(sensitivity(labels == k, p.argmax(1) == k))) for k in range(len(CLASSES))]
        for name, p in models.items()
        if name != RECORD_ONLY
    }
    return MetadataComparison(
        table.names,
        figures,
        record_names,
        accuracies,
        gain,
        recall,
        tuple(int(c) for c in counts),
        with_record,
    )


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
