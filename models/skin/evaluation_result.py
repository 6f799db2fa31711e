"""What ``photomarker evaluate`` reports for a skin task: :class:`SkinEvaluation`.

The figures with their bootstrap 95 % CIs, the per-Fitzpatrick breakdown of one of them, and the
counts behind them, in the three forms they are read in: JSON (``--json``), the flat metrics a
package manifest records (:mod:`models.skin.package`), and the table printed on the console.
How they are computed is in :mod:`models.skin.evaluation_scoring`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.evaluation import MetricValue
from models.skin.dataset import SkinTask


@dataclass(frozen=True)
class SkinEvaluation:
    task: SkinTask
    model: str
    version: str
    reference_only: bool
    n: int
    metrics: dict[str, MetricValue]
    per_fitzpatrick: dict[int, tuple[int, MetricValue]] = field(default_factory=dict)
    breakdown_metric: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    # What was scored, for the card (empty: held-out generated photos).
    split: str = ""
    # Real PAD-UFES-20 lesions (models.skin.real_lesions): its figures sit beside the generated ones.
    real_lesions: bool = False
    # How many photos each metric was computed on, where that differs from n.
    sizes: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "task": self.task,
            "model": self.model,
            "version": self.version,
            "reference_only": self.reference_only,
            "n": self.n,
        }
        if self.split:
            out["split"] = self.split
        for name, value in self.metrics.items():
            out[name] = value.as_dict()["value"]
        out["metrics"] = {name: value.as_dict() for name, value in self.metrics.items()}
        out["counts"] = self.counts
        if self.per_fitzpatrick:
            out["per_fitzpatrick"] = {
                str(k): {"n": n, self.breakdown_metric: v.as_dict()}
                for k, (n, v) in sorted(self.per_fitzpatrick.items())
            }
        return out

    def flat_metrics(self) -> dict[str, float]:
        """For the manifest: value, _low, _high, and n_ per Fitzpatrick type."""
        out: dict[str, float] = {}
        for name, value in self.metrics.items():
            if np.isfinite(value.value):
                out |= value.figures(name)
                if name in self.sizes:
                    out[f"n_{name}"] = self.sizes[name]
        for fitz, (n, value) in sorted(self.per_fitzpatrick.items()):
            key = f"{self.breakdown_metric}_fitzpatrick_{fitz}"
            if np.isfinite(value.value):
                out |= value.figures(key)
                out[f"n_{key}"] = n
        return out

    def format_table(self) -> str:
        lines = [f"{'metric':<34} value [95% CI]"]
        lines += [
            f"{name:<34} {value.format(3)}" + (f"  n={self.sizes[name]}" if name in self.sizes else "")
            for name, value in self.metrics.items()
        ]
        if self.per_fitzpatrick:
            lines.append(f"per Fitzpatrick type ({self.breakdown_metric}):")
            lines += [
                f"  type {k}: n={n:<5} {v.format(3)}" for k, (n, v) in sorted(self.per_fitzpatrick.items())
            ]
        if self.counts:
            lines.append("counts: " + ", ".join(f"{k} {v}" for k, v in self.counts.items()))
        return "\n".join(lines)
