"""The figures a conjunctiva localiser is judged by, and the tables that print them.

Per-method IoU and detection on composites with conjunctiva and false detections on those
without (:class:`MethodScore`), the held-out report over all methods (:class:`SegmenterReport`)
and the confidence-threshold comparison on validation composites (:class:`RuleChoice`). The
same tables go to the terminal and into the model card, so the card shows what the run printed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import numpy as np
from numpy.typing import NDArray

from models.evaluation.metrics import Metric, MetricValue, bootstrap, interval_of

# A localisation counts as a detection when its mask overlaps the truth at IoU ≥ 0.5.
DETECTION_IOU: Final = 0.5
METHODS: Final = ("network", "classical", "network+fallback")


# Bootstrapped figures: positives resample whole CV groups of strips (composites of one child's
# strips are not independent); photos without conjunctiva are each drawn afresh, so they resample alone.
_POSITIVE_METRICS: Final[dict[str, Metric]] = {
    "mean_iou": lambda _detected, iou: np.mean(iou, axis=-1),
    "detection_rate": lambda detected, _iou: np.mean(detected, axis=-1),
}
_NEGATIVE_METRICS: Final[dict[str, Metric]] = {
    "false_found_rate": lambda found, _found: np.mean(found, axis=-1),
}


@dataclass
class MethodScore:
    """IoU and detection on positives (with each one's strip group), false detections on negatives."""

    ious: list[float] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    negatives_found: list[bool] = field(default_factory=list)

    def add_positive(self, iou: float, group: str) -> None:
        self.ious.append(iou)
        self.groups.append(group)

    def to_json(self) -> dict[str, float]:
        iou = np.asarray(self.ious, dtype=np.float64)
        found = np.asarray(self.negatives_found, dtype=np.float64)
        detected = (iou >= DETECTION_IOU).astype(np.float64)
        positive = bootstrap(_POSITIVE_METRICS, detected, iou, groups=self.groups) if iou.size else {}
        negative = bootstrap(_NEGATIVE_METRICS, found, found) if found.size else {}
        return {
            **_with_interval("mean_iou", positive),
            "median_iou": round(float(np.median(iou)), 4) if iou.size else 0.0,
            **_with_interval("detection_rate", positive),
            "found_rate": round(float((iou > 0).mean()), 4) if iou.size else 0.0,
            **_with_interval("false_found_rate", negative),
            "positives": int(iou.size),
            "negatives": int(found.size),
        }


def _with_interval(name: str, values: dict[str, MetricValue]) -> dict[str, float]:
    """``name``, ``name_low`` and ``name_high`` (the manifest's convention for a 95 % CI)."""
    return values[name].figures(name) if name in values else {name: 0.0}


def _with_ci(score: dict[str, float], key: str, percent: bool) -> str:
    """``0.898 [0.882, 0.912]`` or ``99.2% [98.3%, 100.0%]``; the bare figure when no CI was kept."""
    form = ".1%" if percent else ".3f"
    bounds = interval_of(score, key)
    interval = f" [{bounds[0]:{form}}, {bounds[1]:{form}}]" if bounds else ""
    return f"{score[key]:{form}}{interval}"


@dataclass(frozen=True)
class SegmenterReport:
    scores: dict[str, dict[str, float]]
    fallback_used: int  # held-out photos (of all) the deployed localiser sent to the classical method
    seconds: float

    def to_json(self) -> dict[str, object]:
        return {
            "held_out": self.scores,
            "fallback_used": self.fallback_used,
            "score_seconds": round(self.seconds, 1),
        }

    def format_table(self) -> str:
        rows = [
            (
                method,
                _with_ci(s, "mean_iou", percent=False),
                f"{s['median_iou']:.3f}",
                _with_ci(s, "detection_rate", percent=True),
                f"{s['found_rate']:.1%}",
                _with_ci(s, "false_found_rate", percent=True),
            )
            for method, s in self.scores.items()
        ]
        head = (
            "method",
            "mean IoU [95% CI]",
            "median",
            "detected [95% CI]",
            "found",
            "false on neg. [95% CI]",
        )
        table = (head, *rows)
        widths = [max(len(row[i]) for row in table) for i in range(len(head))]
        lines = [
            " ".join(
                [
                    row[0].ljust(widths[0]),
                    *(cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)),
                ]
            )
            for row in table
        ]
        first = next(iter(self.scores.values()))
        lines.append(
            f"({first['positives']} held-out composites with conjunctiva, {first['negatives']} without; "
            f"detected = IoU ≥ {DETECTION_IOU:g}; classical fallback used on {self.fallback_used} of them; "
            "CIs: bootstrap, composites with conjunctiva resampled by the CV group of their strip)"
        )
        return "\n".join(lines)


@dataclass(frozen=True)
class RuleChoice:
    """Detection and false detections per confidence threshold, without and with the fallback."""

    rows: tuple[tuple[float, float, float, float, int], ...]  # (threshold, detected, false, false+fb, fb)
    positives: int
    negatives: int

    def format_table(self) -> str:
        lines = [f"{'threshold':>9} {'detected':>9} {'false on neg.':>13} {'with fallback when unsure':>26}"]
        for threshold, detected, false, false_fb, handed in self.rows:
            lines.append(
                f"{threshold:>9g} {detected:>9.1%} {false:>13.1%} {false_fb:>15.1%} ({handed} handed over)"
            )
        lines.append(f"({self.positives} validation composites with conjunctiva, {self.negatives} without)")
        return "\n".join(lines)


def mask_iou(found: NDArray[np.bool_] | None, truth: NDArray[np.bool_]) -> float:
    """Intersection over union of a found mask with the true one; nothing found scores 0."""
    if found is None:
        return 0.0
    inter = np.count_nonzero(found & truth)
    union = np.count_nonzero(found | truth)
    return inter / union if union else 0.0
