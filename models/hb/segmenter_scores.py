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

# A localisation counts as a detection when its mask overlaps the truth at IoU ≥ 0.5.
DETECTION_IOU: Final = 0.5
METHODS: Final = ("network", "classical", "network+fallback")


@dataclass
class MethodScore:
    """IoU and detection on positives, false detections on negatives, for one method."""

    ious: list[float] = field(default_factory=list)
    false_found: int = 0
    negatives: int = 0

    def to_json(self) -> dict[str, float]:
        iou = np.asarray(self.ious, dtype=np.float64)
        return {
            "mean_iou": round(float(iou.mean()), 4) if iou.size else 0.0,
            "median_iou": round(float(np.median(iou)), 4) if iou.size else 0.0,
            "detection_rate": round(float((iou >= DETECTION_IOU).mean()), 4) if iou.size else 0.0,
            "found_rate": round(float((iou > 0).mean()), 4) if iou.size else 0.0,
            "false_found_rate": round(self.false_found / self.negatives, 4) if self.negatives else 0.0,
            "positives": int(iou.size),
            "negatives": self.negatives,
        }


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
        head = (
            f"{'method':<18} {'mean IoU':>8} {'median':>7} {'detected':>9} {'found':>7} {'false on neg.':>13}"
        )
        lines = [head]
        for method, s in self.scores.items():
            lines.append(
                f"{method:<18} {s['mean_iou']:>8.3f} {s['median_iou']:>7.3f} {s['detection_rate']:>9.1%} "
                f"{s['found_rate']:>7.1%} {s['false_found_rate']:>13.1%}"
            )
        first = next(iter(self.scores.values()))
        lines.append(
            f"({first['positives']} held-out composites with conjunctiva, {first['negatives']} without; "
            f"detected = IoU ≥ {DETECTION_IOU:g}; classical fallback used on {self.fallback_used} of them)"
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
