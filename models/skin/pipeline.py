"""The skin analysis as the worker runs it, top to bottom:

1. **body part** — the body-part classifier on the whole photo (a ``Media.bodySite`` the sender
   gave still wins when the Observation is written); "not skin" stops the skin analyses;
2. **lesion extraction** — the lesion segmenter on the whole photo: each connected region of
   "rash" or "tumour-like growth" becomes a square crop at the photo's full decoded resolution,
   so a lesion photographed from across the room is cut out as well as a close-up (the Tohoku
   lesion extraction); no region → "no lesion found", never a score of healthy skin;
3. per crop, the task's network: TIS (three ordinal 0–3 heads), AD vs complications, the
   N-class diagnosis, and the skin-tumour classifier (tumour-like crops only);
4. **aggregation to the photo** — TIS: the most severe lesion (highest expected total), as a
   dermatologist scores TIS on the worst representative lesion; classifier panels: the mean of
   the lesions' probabilities weighted by lesion area; tumour: the most suspicious lesion.

Steps 1–2 run once per photo however many skin analyses ask for them (a small cache keyed by
the photo object). Each analysis is served only when its packages are installed; otherwise the
worker reports it as not performed. Where each step lives: ``models.skin.lesions`` (lesion
extraction), ``models.skin.findings`` (steps 1–2 per photo), ``models.skin.crops`` (steps 3–4);
this module puts them together from the installed packages.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from models.analysis_outcome import AnalysisOutcome
from models.engine.options import EngineOptions
from models.engine.stages import StageTimings
from models.intake import DecodedPhoto
from models.model_stages import execution_for
from models.registry import registry_for
from models.results import AnalysisName, AnalysisNotPerformed, ModelInfo
from models.skin.crops import CropModel
from models.skin.findings import BodyPartClassifier, SkinFinder
from models.skin.lesions import LesionExtractor, LesionKind

# Registry tasks of the skin packages (the analyses' names where the package serves one).
BODY_PART_TASK: Final = "skin-body-part"
LESION_TASK: Final = "skin-lesion"


# --- one skin analysis: findings → crops of one kind → one result per photo ---------------------------


@dataclass(frozen=True, eq=False)
class SkinAnalysisPipeline:
    """One skin analysis: findings → crops of one kind → the task's network → one result per photo."""

    analysis: AnalysisName
    model: ModelInfo
    finder: SkinFinder
    crops: CropModel
    lesion_kind: LesionKind

    def run(
        self, photos: Sequence[DecodedPhoto], timings: StageTimings | None = None
    ) -> list[AnalysisOutcome]:
        findings = self.finder(photos)
        crops: list[DecodedPhoto] = []
        owners: list[int] = []
        outcomes: list[AnalysisOutcome | None] = [None] * len(photos)
        for index, found in enumerate(findings):
            lesions = found.of_kind(self.lesion_kind)
            if found.not_skin:
                outcomes[index] = AnalysisOutcome(
                    self._not_performed("the body-part model found no skin in the photo")
                )
            elif not lesions:
                what = "eczema or rash lesion" if self.lesion_kind == "rash" else "tumour-like lesion"
                outcomes[index] = AnalysisOutcome(self._not_performed(f"no {what} was found in the photo"))
            else:
                crops.extend(lesion.crop for lesion in lesions)
                owners.extend([index] * len(lesions))
        predictions = self.crops.predict(crops) if crops else []
        for index, found in enumerate(findings):
            if outcomes[index] is not None:
                continue
            lesions = found.of_kind(self.lesion_kind)
            mine = [p for p, owner in zip(predictions, owners, strict=True) if owner == index]
            outcomes[index] = self.crops.aggregate(found, lesions, mine)
        return [outcome for outcome in outcomes if outcome is not None]

    def _not_performed(self, why: str) -> AnalysisNotPerformed:
        return AnalysisNotPerformed(
            analysis=self.analysis, reason=f"{why[0].upper()}{why[1:]}; no score was produced."
        )


# --- what is installed -------------------------------------------------------------------------------

_PACKAGE_TASK: Final[dict[AnalysisName, str]] = {
    "tis": "tis",
    "skin-condition": "skin-condition",
    "skin-diagnosis": "skin-diagnosis",
    "skin-tumour": "skin-tumour",
}
_FINDERS: dict[EngineOptions, SkinFinder | None] = {}
_FINDERS_LOCK = threading.Lock()


def skin_finder(options: EngineOptions) -> SkinFinder | None:
    """Body part + lesion extraction from the installed packages (one per process and options)."""
    with _FINDERS_LOCK:
        if options in _FINDERS:
            return _FINDERS[options]
    registry = registry_for(options.model_dir)
    lesion_packages = registry.for_task(LESION_TASK)
    finder = None
    if lesion_packages:
        execution = execution_for(options)
        lesion_model = registry.load(lesion_packages[0].name)
        extractor = LesionExtractor(lesion_model, execution, views=options.view_count)
        body_packages = registry.for_task(BODY_PART_TASK)
        body = (
            BodyPartClassifier(registry.load(body_packages[0].name), execution, options)
            if body_packages
            else None
        )
        finder = SkinFinder(extractor, body)
    with _FINDERS_LOCK:
        return _FINDERS.setdefault(options, finder)


def skin_pipeline(analysis: AnalysisName, options: EngineOptions) -> SkinAnalysisPipeline | None:
    """The analysis on lesion crops, or None when the lesion model or the task's model is missing."""
    finder = skin_finder(options)
    if finder is None:
        return None
    registry = registry_for(options.model_dir)
    packages = registry.for_task(_PACKAGE_TASK[analysis])  # a site's own directory first
    # The first package decides: a whole-photo classifier (region "photo") is left to the
    # generic path, which shows it the whole photo it was trained on.
    if not packages or packages[0].manifest.input.region != "lesion":
        return None
    loaded = registry.load(packages[0].name)
    crops = CropModel(analysis, loaded, execution_for(options), options)
    kind: LesionKind = "tumour" if analysis == "skin-tumour" else "rash"
    return SkinAnalysisPipeline(analysis, loaded.info, finder, crops, kind)


def tis_pipeline_factory(options: EngineOptions) -> SkinAnalysisPipeline | None:
    return skin_pipeline("tis", options)


def condition_pipeline_factory(options: EngineOptions) -> SkinAnalysisPipeline | None:
    return skin_pipeline("skin-condition", options)


def diagnosis_pipeline_factory(options: EngineOptions) -> SkinAnalysisPipeline | None:
    return skin_pipeline("skin-diagnosis", options)


def tumour_pipeline_factory(options: EngineOptions) -> SkinAnalysisPipeline | None:
    return skin_pipeline("skin-tumour", options)


def clear_skin_cache() -> None:
    with _FINDERS_LOCK:
        _FINDERS.clear()
