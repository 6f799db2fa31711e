"""Tumour figures computed one way for CV and for ``evaluate``: per class, grouped, per skin type.

Every figure carries a percentile bootstrap 95 % CI that resamples patients (not photos).
Malignant = BCC + SCC + MEL; the second grouping also counts ACK (pre-malignant) as positive.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from models.evaluation import MetricValue, auroc, bootstrap, sensitivity, specificity
from models.tumour.dataset import CLASSES, MALIGNANT, MALIGNANT_OR_PREMALIGNANT

FloatArray = NDArray[np.float64]
Metric = Callable[[FloatArray, FloatArray], Any]
TARGET_SENSITIVITY: Final = 0.90


def _thresholded(threshold: float) -> Mapping[str, Metric]:
    def sens(t: FloatArray, s: FloatArray) -> Any:
        return sensitivity(t, (s >= threshold).astype(np.float64))

    def spec(t: FloatArray, s: FloatArray) -> Any:
        return specificity(t, (s >= threshold).astype(np.float64))

    def balanced(t: FloatArray, s: FloatArray) -> Any:
        return (sens(t, s) + spec(t, s)) / 2

    return {"auroc": auroc, "sensitivity": sens, "specificity": spec, "balanced_accuracy": balanced}


def operating_threshold(
    positive: NDArray[np.bool_], score: FloatArray, target: float = TARGET_SENSITIVITY
) -> float:
    """The highest score threshold whose sensitivity is at least ``target`` on these data."""
    positives = np.sort(score[positive])[::-1]
    if positives.size == 0:
        return 0.5
    needed = int(np.ceil(target * positives.size))
    return float(positives[needed - 1])


@dataclass(frozen=True)
class BinaryFigures:
    n: int
    n_positive: int
    metrics: dict[str, MetricValue]

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "n_positive": self.n_positive,
            **{k: v.as_dict() for k, v in self.metrics.items()},
        }


def binary_figures(
    positive: NDArray[np.bool_], score: FloatArray, threshold: float, groups: Sequence[str], resamples: int
) -> BinaryFigures:
    truth = positive.astype(np.float64)
    values = bootstrap(_thresholded(threshold), truth, score, groups=groups, n_resamples=resamples)
    return BinaryFigures(len(truth), int(truth.sum()), values)


@dataclass(frozen=True)
class TumourReport:
    threshold: float
    ack_threshold: float
    malignant: BinaryFigures
    malignant_or_ack: BinaryFigures
    per_class: dict[str, BinaryFigures]
    per_fitzpatrick: dict[str, BinaryFigures]
    accuracy: float
    balanced_accuracy_6: float
    # The same two figures for the plain largest probability, when the report's types were
    # suggested by another rule (``decision_weights``); otherwise equal to the two above.
    accuracy_most_likely: float = float("nan")
    balanced_accuracy_6_most_likely: float = float("nan")
    # Share of each type's photos called malignant at the operating point: per-type sensitivity
    # for BCC/SCC/MEL (melanoma's own), the false-alarm rate for the benign types.
    called_malignant: dict[str, MetricValue] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "operating_threshold": self.threshold,
            "malignant_or_ack_operating_threshold": self.ack_threshold,
            "n": self.malignant.n,
            **{k: v.as_dict() for k, v in self.malignant.metrics.items()},
            "malignant_vs_benign": self.malignant.to_json(),
            "malignant_or_ack_vs_rest": self.malignant_or_ack.to_json(),
            "per_class": {k: v.to_json() for k, v in self.per_class.items()},
            "per_fitzpatrick": {k: v.to_json() for k, v in self.per_fitzpatrick.items()},
            "six_class_accuracy": self.accuracy,
            "six_class_balanced_accuracy": self.balanced_accuracy_6,
            "six_class_accuracy_most_likely": self.accuracy_most_likely,
            "six_class_balanced_accuracy_most_likely": self.balanced_accuracy_6_most_likely,
            "called_malignant": {k: v.as_dict() for k, v in self.called_malignant.items()},
        }

    def headline(self) -> dict[str, float]:
        """Point figures for the manifest (CIs live in the card)."""
        out = {f"malignant_{k}": round(v.value, 4) for k, v in self.malignant.metrics.items()}
        out["malignant_operating_threshold"] = round(self.threshold, 4)
        out["malignant_or_ack_operating_threshold"] = round(self.ack_threshold, 4)
        out["malignant_or_ack_auroc"] = round(self.malignant_or_ack.metrics["auroc"].value, 4)
        out["malignant_or_ack_sensitivity"] = round(self.malignant_or_ack.metrics["sensitivity"].value, 4)
        out["malignant_or_ack_specificity"] = round(self.malignant_or_ack.metrics["specificity"].value, 4)
        out["mel_specificity"] = round(self.per_class["MEL"].metrics["specificity"].value, 4)
        for name, figures in self.per_class.items():
            out[f"{name.lower()}_auroc"] = round(figures.metrics["auroc"].value, 4)
            out[f"{name.lower()}_sensitivity"] = round(figures.metrics["sensitivity"].value, 4)
        out["six_class_accuracy"] = round(self.accuracy, 4)
        out["six_class_balanced_accuracy"] = round(self.balanced_accuracy_6, 4)
        out["six_class_balanced_accuracy_most_likely"] = round(self.balanced_accuracy_6_most_likely, 4)
        return out

    def format_table(self) -> str:
        def row(name: str, f: BinaryFigures) -> str:
            cells = "  ".join(f"{k} {v.format()}" for k, v in f.metrics.items())
            return f"  {name:<22} n={f.n:<5} pos={f.n_positive:<4} {cells}"

        lines = [
            f"Operating points: malignant probability ≥ {self.threshold:.3f}; "
            f"malignant-or-ACK probability ≥ {self.ack_threshold:.3f}"
        ]
        lines.append(row("malignant (BCC+SCC+MEL)", self.malignant))
        lines.append(row("malignant or ACK", self.malignant_or_ack))
        lines.append("Per class (one vs rest; sensitivity/specificity of the top class):")
        lines += [row(name, f) for name, f in self.per_class.items()]
        lines.append("Malignant vs benign by Fitzpatrick type (counts shown):")
        lines += [row(f"type {name}", f) for name, f in self.per_fitzpatrick.items()]
        lines.append(
            f"6-class accuracy {self.accuracy:.3f}, balanced accuracy {self.balanced_accuracy_6:.3f} "
            f"(largest probability: {self.accuracy_most_likely:.3f}, "
            f"{self.balanced_accuracy_6_most_likely:.3f})"
        )
        lines.append(
            "Called malignant at the operating point, by type: "
            + ", ".join(f"{k} {v.format()}" for k, v in self.called_malignant.items())
        )
        return "\n".join(lines)


def tumour_report(
    probabilities: FloatArray,
    labels: NDArray[np.int_],
    groups: Sequence[str],
    fitzpatrick: Sequence[int | None],
    *,
    threshold: float | None = None,
    ack_threshold: float | None = None,
    decision_weights: FloatArray | None = None,
    resamples: int = 1000,
) -> TumourReport:
    """Figures for (N, 6) probabilities in :data:`CLASSES` order; thresholds fitted when not given.

    ``threshold`` is the malignant (BCC+SCC+MEL) operating point, ``ack_threshold`` the one of the
    second grouping (ACK counted positive); ``evaluate`` passes the package's own, CV fits them.
    ``decision_weights`` ((6,) or, in CV, each photo's fold's (N, 6)) choose the suggested type as
    the largest probability × weight; the six-class figures are those of that choice.
    """
    names = np.array(CLASSES)[labels]
    malignant = np.isin(names, list(MALIGNANT))
    index = [CLASSES.index(c) for c in sorted(MALIGNANT)]
    score = probabilities[:, index].sum(1)
    if threshold is None:
        threshold = operating_threshold(malignant, score)
    ack_index = [CLASSES.index(c) for c in sorted(MALIGNANT_OR_PREMALIGNANT)]
    ack_score = probabilities[:, ack_index].sum(1)
    with_ack = np.isin(names, list(MALIGNANT_OR_PREMALIGNANT))
    if ack_threshold is None:
        ack_threshold = operating_threshold(with_ack, ack_score)
    most_likely = probabilities.argmax(1)
    top = most_likely if decision_weights is None else (probabilities * decision_weights).argmax(1)
    per_class = {}
    for c, name in enumerate(CLASSES):
        # Sensitivity/specificity at "top class is c": the score is the indicator, threshold 0.5.
        figures = binary_figures(labels == c, probabilities[:, c], 2.0, groups, resamples)
        hits = bootstrap(
            _thresholded(0.5),
            (labels == c).astype(np.float64),
            (top == c).astype(np.float64),
            groups=groups,
            n_resamples=resamples,
        )
        metrics = {
            "auroc": figures.metrics["auroc"],
            **{k: hits[k] for k in ("sensitivity", "specificity", "balanced_accuracy")},
        }
        per_class[name] = BinaryFigures(figures.n, figures.n_positive, metrics)
    per_type: dict[str, BinaryFigures] = {}
    types = np.array([str(t) if t is not None else "unknown" for t in fitzpatrick])
    for skin_type in [*(str(t) for t in range(1, 7)), "unknown"]:
        rows = types == skin_type
        if rows.any():
            per_type[skin_type] = binary_figures(
                malignant[rows],
                score[rows],
                threshold,
                [g for g, r in zip(groups, rows, strict=True) if r],
                resamples,
            )
    present = [c for c in range(len(CLASSES)) if (labels == c).any()]
    recalls = [float((top[labels == c] == c).mean()) for c in present]
    recalls_most_likely = [float((most_likely[labels == c] == c).mean()) for c in present]
    called: dict[str, MetricValue] = {}
    for c, name in enumerate(CLASSES):
        rows = labels == c
        if rows.any():
            called[name] = bootstrap(
                {"rate": lambda t, s: np.asarray(np.mean(s >= threshold, axis=-1))},
                np.ones(int(rows.sum())),
                score[rows],
                groups=[g for g, r in zip(groups, rows, strict=True) if r],
                n_resamples=resamples,
            )["rate"]
    return TumourReport(
        threshold=threshold,
        malignant=binary_figures(malignant, score, threshold, groups, resamples),
        malignant_or_ack=binary_figures(with_ack, ack_score, ack_threshold, groups, resamples),
        ack_threshold=ack_threshold,
        per_class=per_class,
        per_fitzpatrick=per_type,
        accuracy=float((top == labels).mean()),
        balanced_accuracy_6=float(np.mean(recalls)),
        accuracy_most_likely=float((most_likely == labels).mean()),
        balanced_accuracy_6_most_likely=float(np.mean(recalls_most_likely)),
        called_malignant=called,
    )
