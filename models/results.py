"""What an analysis concludes about one photo, in the clinic's words — no FHIR, no torch.

These plain, frozen dataclasses are the hand-over point between the pipelines (which fill
them) and ``fhir_mappings`` (which turns them into Observations). Codes travel as
``Concept`` (system, code, display) because label sets carry SNOMED or local codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

PhotoKind = Literal["skin", "conjunctiva"]

SNOMED = "http://snomed.info/sct"


@dataclass(frozen=True)
class Concept:
    """A coded concept; ``system=None`` means Photomarker's own code system."""

    code: str
    display: str
    system: str | None = None


@dataclass(frozen=True)
class ModelInfo:
    """The model that produced a result, as the Device and Provenance need it."""

    name: str
    version: str
    display_name: str
    manufacturer: str
    weights_sha256: str
    reference_only: bool
    card_url: str | None = None
    task: str = ""


class TisBand(StrEnum):
    MILD = "mild"
    MODERATE = "moderate"
    SEVERE = "severe"


@dataclass(frozen=True)
class TisScore:
    """Three Item Severity: erythema, oedema/papulation, excoriation, each 0–3."""

    erythema: int
    oedema_papulation: int
    excoriation: int
    body_site: Concept | None = None
    lesion_count: int = 1
    abstention: Abstention | None = None

    def __post_init__(self) -> None:
        for name in ("erythema", "oedema_papulation", "excoriation"):
            value = getattr(self, name)
            if not 0 <= value <= 3:
                raise ValueError(f"TIS {name} must be 0–3, got {value}")

    @property
    def total(self) -> int:
        return self.erythema + self.oedema_papulation + self.excoriation

    @property
    def band(self) -> TisBand:
        # Bands from the Keio/Atopiyo TIS use: mild 0–2, moderate 3–5, severe 6–9.
        if self.total <= 2:
            return TisBand.MILD
        if self.total <= 5:
            return TisBand.MODERATE
        return TisBand.SEVERE


@dataclass(frozen=True)
class ClassProbability:
    concept: Concept
    probability: float
    # The model's weight for naming this class (``LabelSpec.decision_weight``): 1 = most likely wins.
    decision_weight: float = 1.0


def suggested_class(classes: Sequence[ClassProbability]) -> ClassProbability | None:
    """The class a result names: the largest probability × decision weight (the most likely when
    every weight is 1, as for every model but one trained under a skewed prior)."""
    return max(classes, key=lambda c: c.probability * c.decision_weight) if classes else None


def weighs_classes(classes: Sequence[ClassProbability]) -> bool:
    """True when the named class follows a balanced rule rather than the largest probability."""
    return any(c.decision_weight != 1.0 for c in classes)


@dataclass(frozen=True)
class Abstention:
    """Why a model declined to commit (spread too wide, input out of distribution)."""

    reason: str
    spread: float | None = None
    ood_score: float | None = None


@dataclass(frozen=True)
class ConditionProbabilities:
    """A classifier's panel: one probability per class, highest first."""

    classes: tuple[ClassProbability, ...]
    abstention: Abstention | None = None
    body_site: Concept | None = None
    # "skin-condition": AD vs its complications; "skin-diagnosis": the N-class list, read as top-k.
    panel: Literal["skin-condition", "skin-diagnosis"] = "skin-condition"
    lesion_count: int = 1

    def top_k(self, k: int) -> tuple[ClassProbability, ...]:
        return tuple(sorted(self.classes, key=lambda c: c.probability, reverse=True)[:k])

    @property
    def top(self) -> ClassProbability:
        return max(self.classes, key=lambda c: c.probability)


@dataclass(frozen=True)
class RecordWeighing:
    """What the patient's record (age, body site) did to a tumour result (``models.tumour.record``).

    ``used`` and ``not_used`` say it in words ("age 63 years", "body site: no coded site"); with
    nothing used the result is the photo's alone. The photo-only figures are kept beside the
    weighed ones, so the Observation can give both.
    """

    used: tuple[str, ...]
    not_used: tuple[str, ...]
    photo_only_malignancy: float
    photo_only_types: tuple[ClassProbability, ...]
    # The Patient's age was weighed in: the Provenance names the Patient as a source.
    age_used: bool = False


@dataclass(frozen=True)
class TumourAssessment:
    malignancy_probability: float
    types: tuple[ClassProbability, ...]
    abstention: Abstention | None = None
    body_site: Concept | None = None
    lesion_count: int = 1
    # Set once the record was looked at (write-back, ``workers.writeback``); None: never looked at.
    record: RecordWeighing | None = None


@dataclass(frozen=True)
class HbEstimate:
    """Haemoglobin in g/dL with a prediction interval at ``interval_level``."""

    g_dl: float
    low: float
    high: float
    interval_level: float = 0.95
    abstention: Abstention | None = None


class QualityCheckName(StrEnum):
    BLUR = "blur"
    EXPOSURE = "exposure"
    RESOLUTION = "resolution"
    CONTENT = "content"
    # The Hb analysis's localiser found the palpebral conjunctiva (conjunctiva photos only).
    CONJUNCTIVA_FOUND = "conjunctiva-found"
    # A video or a series: enough frames (photos) passed the other checks to accumulate a verdict.
    FRAMES = "frames"


@dataclass(frozen=True)
class QualityCheck:
    """One quality measurement, its threshold, and — when it failed — what to fix."""

    name: QualityCheckName
    passed: bool
    value: float
    threshold: float
    unit: str = "1"
    advice: str | None = None


@dataclass(frozen=True)
class QualityVerdict:
    checks: tuple[QualityCheck, ...]
    content_found: PhotoKind | None = None

    @property
    def acceptable(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failed(self) -> tuple[QualityCheck, ...]:
        return tuple(check for check in self.checks if not check.passed)


AnalysisName = Literal["tis", "skin-condition", "skin-diagnosis", "skin-tumour", "hb", "photo-quality"]


@dataclass(frozen=True)
class AnalysisNotPerformed:
    """An analysis that was asked for but could not run — said plainly, never scored."""

    analysis: AnalysisName
    reason: str


@dataclass(frozen=True)
class PatientFacts:
    """What the Patient resource tells us that matters for interpretation (WHO cut-offs)."""

    age_months: int | None = None
    sex: Literal["female", "male"] | None = None
    pregnant: bool | None = None


@dataclass(frozen=True)
class FrameCounts:
    """A video's sampled frames (or a series' photos): how many the quality gate let through."""

    source: Literal["video", "series"]
    analysed: int  # passed the gate and went through the models
    rejected: int  # dropped by the gate (blurred, dark, no skin …)
    duration_s: float | None = None  # the video's length; None for a series


@dataclass(frozen=True)
class Steadiness:
    """How steady one accumulated verdict was over the frames that produced it.

    ``agreement`` is the share of those frames whose own verdict is the accumulated one (the same
    top class; for TIS the same band; for Hb within ``HB_AGREEMENT_G_DL``). ``low``–``high`` is the
    range of ``measure`` over the frames, and ``timeline`` each frame's own verdict in order, at its
    time in the video (seconds) or its place in the series (1, 2, …).
    """

    analysis: AnalysisName
    frames_used: int
    agreement: float
    measure: str
    low: float
    high: float
    timeline: tuple[tuple[float, str], ...] = ()
    spread: float | None = None  # TIS and Hb: the interquartile range of the frames' values


@dataclass(frozen=True)
class AnalysisReport:
    """Everything one photo (or one video, or one series) produced, ready for write-back."""

    quality: QualityVerdict
    model_results: tuple[
        tuple[ModelInfo, TisScore | ConditionProbabilities | TumourAssessment | HbEstimate], ...
    ] = ()
    not_performed: tuple[AnalysisNotPerformed, ...] = field(default_factory=tuple)
    # Set for a video or a series: the results are accumulated over its frames.
    frames: FrameCounts | None = None
    steadiness: tuple[Steadiness, ...] = ()

    def steadiness_of(self, analysis: AnalysisName) -> Steadiness | None:
        return next((item for item in self.steadiness if item.analysis == analysis), None)
