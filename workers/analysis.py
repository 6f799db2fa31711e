"""Analyse one photo's bytes: decode → quality gate → whichever pipelines are installed.

The same function serves the CLI (in process) and the Celery tasks, so a photo gets the same
result whichever way it arrived. Until a model for a photo kind is installed the report says
so explicitly (``AnalysisNotPerformed``) — a score is never invented.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from models.intake import DecodedPhoto, IntakeLimits, decode_photo
from models.pipelines import ANALYSES_BY_KIND, installed_pipeline
from models.quality import QualityThresholds, assess_quality
from models.results import AnalysisNotPerformed, AnalysisReport, PhotoKind
from plugin.settings import Settings

RequestedKind = Literal["auto", "skin", "conjunctiva"]

# Pixels the quality gate and today's networks need; JPEGs are decoded at reduced scale to this.
WORKING_MIN_SIDE = 1024


@dataclass(frozen=True)
class AnalysedPhoto:
    decoded: DecodedPhoto
    kind: PhotoKind
    report: AnalysisReport


def analyse_photo(
    data: bytes,
    settings: Settings,
    *,
    requested: RequestedKind = "auto",
    kind_hint: PhotoKind | None = None,
    declared_content_type: str | None = None,
    full_resolution: bool = False,
) -> AnalysedPhoto:
    """``full_resolution`` skips reduced-scale decoding, for when the pixels are also stored."""
    decoded = decode_photo(
        data,
        limits=IntakeLimits.from_settings(settings),
        declared_content_type=declared_content_type,
        min_side=None if full_resolution else WORKING_MIN_SIDE,
    )
    expected = requested if requested != "auto" else kind_hint
    verdict = assess_quality(decoded, QualityThresholds.from_settings(settings), expected=expected)
    kind: PhotoKind = expected or verdict.content_found or "skin"
    if not verdict.acceptable:
        # A photo too poor to score gets its quality result (and a retake), nothing else.
        return AnalysedPhoto(decoded, kind, AnalysisReport(quality=verdict))
    not_performed = []
    for analysis in ANALYSES_BY_KIND[kind]:
        if installed_pipeline(analysis) is None:
            not_performed.append(
                AnalysisNotPerformed(
                    analysis=analysis,
                    reason=f"No {kind} model is installed for this analysis; no score was produced.",
                )
            )
    return AnalysedPhoto(decoded, kind, AnalysisReport(quality=verdict, not_performed=tuple(not_performed)))
