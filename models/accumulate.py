"""Many frames of one lesion → one verdict per analysis, and how steady it was (the Ehime way).

One photo can flip a verdict; a few seconds of video, judged several frames a second, rarely
does. Each analysis is combined over the frames that produced a result for it:
- classifier panels and tumour assessments: the quality-weighted mean of every class's
  probability (a sharper frame counts more, see :func:`quality_weight`);
- TIS and Hb: the median (robust to the odd frame that caught a shadow), with its interquartile
  range as the spread.
Steadiness is the share of frames whose own verdict is the accumulated one, with the range of
the main value over time. The accumulated result abstains when too few frames produced one or
when the frames disagree past ``AccumulationPolicy.min_agreement`` (calibrated by
``bench/steadiness.py``); a frame-level abstention on most frames carries over as well.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final, Protocol, TypeVar

import numpy as np

from models.results import (
    Abstention,
    AnalysisName,
    ClassProbability,
    Concept,
    ConditionProbabilities,
    HbEstimate,
    ModelInfo,
    QualityCheckName,
    QualityVerdict,
    Steadiness,
    TisScore,
    TumourAssessment,
    suggested_class,
)

ModelResult = TisScore | ConditionProbabilities | TumourAssessment | HbEstimate
R = TypeVar("R", TisScore, ConditionProbabilities, TumourAssessment, HbEstimate)

# An Hb frame "agrees" when it is within this of the median: about the model's own residual
# error (MAE 1.6 g/dL on CP-AnemiC), so only frames that would change the reading count against.
HB_AGREEMENT_G_DL: Final = 1.0
# A frame twice as sharp as the gate asks for counts twice; past three times it counts no more,
# so one crisp frame cannot outvote the rest.
MAX_QUALITY_WEIGHT: Final = 3.0


@dataclass(frozen=True)
class AccumulationPolicy:
    """When an accumulated verdict is worth giving (settings ``accumulate_*``)."""

    min_frames: int = 3
    min_agreement: float = 0.5

    @classmethod
    def from_settings(cls, settings: _AccumulationSettings) -> AccumulationPolicy:
        return cls(min_frames=settings.accumulate_min_frames, min_agreement=settings.accumulate_min_agreement)


class _AccumulationSettings(Protocol):
    """The settings fields read here (satisfied by ``plugin.settings.Settings``)."""

    @property
    def accumulate_min_frames(self) -> int: ...

    @property
    def accumulate_min_agreement(self) -> float: ...


@dataclass(frozen=True)
class FrameResult:
    """One accepted frame's results: where it sits (seconds, or place in a series) and its weight."""

    position: float
    weight: float
    results: tuple[tuple[ModelInfo, ModelResult], ...]


@dataclass(frozen=True)
class Accumulated:
    """One analysis combined over frames, its steadiness, and each used frame's distance to it."""

    model: ModelInfo
    result: ModelResult
    steadiness: Steadiness
    # frame index (into the frames given) → how far that frame's own result is from the combined one.
    distances: dict[int, float]


def quality_weight(verdict: QualityVerdict) -> float:
    """Sharpness over the gate's threshold, between 1 and ``MAX_QUALITY_WEIGHT``."""
    blur = next((c for c in verdict.checks if c.name == QualityCheckName.BLUR), None)
    if blur is None or blur.threshold <= 0:
        return 1.0
    return float(min(max(blur.value / blur.threshold, 1.0), MAX_QUALITY_WEIGHT))


def accumulate(frames: Sequence[FrameResult], policy: AccumulationPolicy) -> list[Accumulated]:
    """Every analysis any frame produced, combined over the frames that produced it, in first-seen order."""
    grouped: dict[AnalysisName, list[tuple[int, ModelInfo, ModelResult]]] = {}
    for index, frame in enumerate(frames):
        for model, result in frame.results:
            grouped.setdefault(analysis_name(result), []).append((index, model, result))
    out: list[Accumulated] = []
    for analysis, items in grouped.items():
        model = items[0][1]
        indices = [index for index, _, _ in items]
        results = [result for _, _, result in items]
        weights = [frames[index].weight for index in indices]
        positions = [frames[index].position for index in indices]
        combined, labels, values, measure, distances, spread = _combine(results, weights)
        agreed = sum(label == _label(combined) for label in labels) / len(labels)
        steadiness = Steadiness(
            analysis=analysis,
            frames_used=len(results),
            agreement=agreed,
            measure=measure,
            low=min(values),
            high=max(values),
            timeline=tuple(zip(positions, labels, strict=True)),
            spread=spread,
        )
        combined = _with_abstention(combined, steadiness, results, policy)
        out.append(Accumulated(model, combined, steadiness, dict(zip(indices, distances, strict=True))))
    return out


def most_representative(accumulated: Sequence[Accumulated], frame_count: int) -> int:
    """The frame closest to the accumulated verdicts: lowest mean rank of its distances."""
    if not accumulated:
        return 0
    ranks = np.full((len(accumulated), frame_count), float(frame_count))
    for row, item in enumerate(accumulated):
        ordered = sorted(item.distances, key=lambda index: item.distances[index])
        for rank, index in enumerate(ordered):
            ranks[row, index] = rank
    return int(np.argmin(ranks.mean(axis=0)))


def analysis_name(result: ModelResult) -> AnalysisName:
    if isinstance(result, TisScore):
        return "tis"
    if isinstance(result, ConditionProbabilities):
        return result.panel
    if isinstance(result, TumourAssessment):
        return "skin-tumour"
    return "hb"


# --- combining ---------------------------------------------------------------------------------

_Combined = tuple[ModelResult, list[str], list[float], str, list[float], float | None]


def _combine(results: list[ModelResult], weights: list[float]) -> _Combined:
    """(combined result, each frame's label, each frame's value of the measure, the measure's name,
    each frame's distance to the combined result, spread)."""
    first = results[0]
    if isinstance(first, ConditionProbabilities):
        return _combine_panels(_all(results, ConditionProbabilities), weights)
    if isinstance(first, TumourAssessment):
        return _combine_tumours(_all(results, TumourAssessment), weights)
    if isinstance(first, TisScore):
        return _combine_tis(_all(results, TisScore))
    return _combine_hb(_all(results, HbEstimate))


def _all(results: list[ModelResult], kind: type[R]) -> list[R]:
    if not all(isinstance(result, kind) for result in results):
        raise ValueError(f"frames of one analysis gave results of different types (expected {kind.__name__})")
    return [result for result in results if isinstance(result, kind)]


def _mean_classes(
    panels: Sequence[tuple[ClassProbability, ...]], weights: Sequence[float]
) -> tuple[tuple[ClassProbability, ...], np.ndarray, np.ndarray]:
    """Weighted mean per class (by code), highest first; also each frame's vector and the mean's."""
    concepts: dict[str, Concept] = {}
    decision_weights: dict[str, float] = {}
    for classes in panels:
        for item in classes:
            concepts.setdefault(item.concept.code, item.concept)
            decision_weights.setdefault(item.concept.code, item.decision_weight)
    codes = list(concepts)
    matrix = np.array(
        [
            [next((c.probability for c in classes if c.concept.code == code), 0.0) for code in codes]
            for classes in panels
        ]
    )
    w = np.asarray(weights, dtype=float)
    mean = (matrix * w[:, None]).sum(axis=0) / w.sum()
    ordered = sorted(
        (
            ClassProbability(concepts[code], float(p), decision_weights[code])
            for code, p in zip(codes, mean, strict=True)
        ),
        key=lambda item: item.probability,
        reverse=True,
    )
    return tuple(ordered), matrix, mean


def _top_display(classes: Sequence[ClassProbability]) -> str:
    named = suggested_class(classes)
    return named.concept.display if named is not None else "—"


def _combine_panels(panels: list[ConditionProbabilities], weights: list[float]) -> _Combined:
    classes, matrix, mean = _mean_classes([p.classes for p in panels], weights)
    first = panels[0]
    combined = ConditionProbabilities(
        classes=classes,
        body_site=_most_common([p.body_site for p in panels]),
        panel=first.panel,
        lesion_count=round(statistics.median(p.lesion_count for p in panels)),
    )
    top = classes[0]
    values = [
        next((c.probability for c in p.classes if c.concept.code == top.concept.code), 0.0) for p in panels
    ]
    distances = list(np.abs(matrix - mean).sum(axis=1))
    labels = [_top_display(p.classes) for p in panels]
    return combined, labels, values, f"probability of {top.concept.display}", distances, None


def _combine_tumours(assessments: list[TumourAssessment], weights: list[float]) -> _Combined:
    classes, matrix, mean = _mean_classes([a.types for a in assessments], weights)
    w = np.asarray(weights, dtype=float)
    malignancy = float((np.array([a.malignancy_probability for a in assessments]) * w).sum() / w.sum())
    combined = TumourAssessment(
        malignancy_probability=min(max(malignancy, 0.0), 1.0),
        types=classes,
        body_site=_most_common([a.body_site for a in assessments]),
        lesion_count=round(statistics.median(a.lesion_count for a in assessments)),
    )
    values = [a.malignancy_probability for a in assessments]
    distances = list(np.abs(matrix - mean).sum(axis=1) + np.abs(np.array(values) - malignancy))
    labels = [_top_display(a.types) for a in assessments]
    return combined, labels, values, "malignancy probability", distances, None


def _combine_tis(scores: list[TisScore]) -> _Combined:
    # median_low keeps each item a score a frame actually gave (0–3), never a half step.
    combined = TisScore(
        erythema=statistics.median_low(s.erythema for s in scores),
        oedema_papulation=statistics.median_low(s.oedema_papulation for s in scores),
        excoriation=statistics.median_low(s.excoriation for s in scores),
        body_site=_most_common([s.body_site for s in scores]),
        lesion_count=round(statistics.median(s.lesion_count for s in scores)),
    )
    totals = [float(s.total) for s in scores]
    distances = [
        abs(s.erythema - combined.erythema)
        + abs(s.oedema_papulation - combined.oedema_papulation)
        + abs(s.excoriation - combined.excoriation)
        for s in scores
    ]
    labels = [s.band.value for s in scores]
    return combined, labels, totals, "TIS total", [float(d) for d in distances], _iqr(totals)


def _combine_hb(estimates: list[HbEstimate]) -> _Combined:
    values = [e.g_dl for e in estimates]
    median = float(statistics.median(values))
    combined = HbEstimate(
        g_dl=median,
        low=min(float(statistics.median(e.low for e in estimates)), median),
        high=max(float(statistics.median(e.high for e in estimates)), median),
        interval_level=estimates[0].interval_level,
    )
    labels = [_hb_label(value, median) for value in values]
    distances = [abs(value - median) for value in values]
    return combined, labels, values, "haemoglobin g/dL", distances, _iqr(values)


def _hb_label(value: float, median: float) -> str:
    return "near the median" if abs(value - median) <= HB_AGREEMENT_G_DL else f"{value:.1f} g/dL"


def _label(result: ModelResult) -> str:
    """The accumulated result's own verdict, in the words the frames' labels use."""
    if isinstance(result, ConditionProbabilities):
        return _top_display(result.classes)
    if isinstance(result, TumourAssessment):
        return _top_display(result.types)
    if isinstance(result, TisScore):
        return result.band.value
    return "near the median"


def _with_abstention(
    combined: ModelResult, steadiness: Steadiness, results: list[ModelResult], policy: AccumulationPolicy
) -> ModelResult:
    abstention = _abstention(steadiness, results, policy)
    return combined if abstention is None else replace(combined, abstention=abstention)


def _abstention(
    steadiness: Steadiness, results: list[ModelResult], policy: AccumulationPolicy
) -> Abstention | None:
    used = steadiness.frames_used
    if used < policy.min_frames:
        return Abstention(f"only {used} frame(s) gave a result, {policy.min_frames} are needed")
    if steadiness.agreement < policy.min_agreement:
        return Abstention(
            f"the frames disagree: {steadiness.agreement:.0%} agree with the accumulated verdict, "
            f"below {policy.min_agreement:.0%}",
            spread=round(1.0 - steadiness.agreement, 4),
        )
    abstained = sum(result.abstention is not None for result in results)
    if abstained * 2 > used:
        return Abstention(f"the model abstained on {abstained} of {used} frames")
    return None


def _most_common(values: Sequence[Concept | None]) -> Concept | None:
    present = [value for value in values if value is not None]
    return Counter(present).most_common(1)[0][0] if present else None


def _iqr(values: Sequence[float]) -> float:
    q1, q3 = np.percentile(np.asarray(values, dtype=float), [25, 75])
    return float(q3 - q1)
