"""What every analysis pipeline hands back for one photo: the result and the map behind it.

Its own module because both the composition of pipelines (``models.pipelines``) and the
pipelines that need their own data path (``models.skin.pipeline``, ``models.hb.pipeline``) use
it, and the composition imports those pipelines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from models.engine.gradcam import ActivationMap
from models.engine.stages import StageTimings
from models.intake import DecodedPhoto
from models.results import (
    AnalysisName,
    AnalysisNotPerformed,
    ConditionProbabilities,
    HbEstimate,
    ModelInfo,
    TisScore,
    TumourAssessment,
)

ModelResult = TisScore | ConditionProbabilities | TumourAssessment | HbEstimate


@dataclass(frozen=True, eq=False)
class AnalysisOutcome:
    """One photo's result for one analysis, and the map of what drove it (when drawn).

    ``AnalysisNotPerformed`` when the pipeline could not even look (e.g. no conjunctiva in the
    photo): said plainly rather than filled with a value the photo did not give.
    """

    result: ModelResult | AnalysisNotPerformed
    explanation: ActivationMap | None = None


class AnalysisPipeline(Protocol):
    """What a worker runs for one analysis: a batch of photos in, one outcome per photo out."""

    @property
    def analysis(self) -> AnalysisName: ...

    @property
    def model(self) -> ModelInfo: ...

    def run(
        self, photos: Sequence[DecodedPhoto], timings: StageTimings | None = None
    ) -> list[AnalysisOutcome]: ...
