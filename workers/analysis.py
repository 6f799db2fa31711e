"""Analyse photos' bytes: decode → quality gate → whichever pipelines are installed.

The same functions serve the CLI (in process) and the Celery tasks, so a photo gets the same
result whichever way it arrived. :func:`analyse_photos` takes several photos at once so a
worker can batch across requests: each pipeline then runs once over every photo that needs it.
Until a model for an analysis is installed the report says so explicitly
(``AnalysisNotPerformed``) — a score is never invented.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from fhir_mappings.media import HeatMap
from models.cut_out import as_cut_out
from models.engine.gradcam import render_overlay
from models.engine.options import EngineOptions
from models.errors import PhotomarkerError
from models.intake import DecodedPhoto, IntakeLimits, decode_photo
from models.pipelines import ANALYSES_BY_KIND, ModelResult, installed_pipeline
from models.quality import QualityThresholds, assess_quality
from models.results import AnalysisNotPerformed, AnalysisReport, ModelInfo, PhotoKind, QualityVerdict
from models.video import DecodedVideo
from plugin.settings import Settings
from workers.progress import FrameCallback

RequestedKind = Literal["auto", "skin", "conjunctiva"]

# Short side JPEGs are decoded down to (DCT scaling, Pillow draft). The quality gate works at long
# side 512, today's networks take ≤ 128 px and heat maps are drawn at long side 512, so 720 is
# ample; it lets a 12 MP photo decode at 1/4 scale (1008×756), ~2x faster than at 1/2. Measured:
# gate verdicts unchanged on the examples and a 12 MP blur series; sharpness within 8 %.
WORKING_MIN_SIDE = 720


@dataclass(frozen=True, eq=False)
class Footage:
    """What a video or a photo series was, beside its accumulated report (``workers.footage``)."""

    source: Literal["video", "series"]
    representative: int  # the most representative frame (or photo), whose heat maps are drawn
    drawn_on: str  # that frame in words: "the frame at 3.2 s", "photo 2 of the series"
    video: DecodedVideo | None = None
    members: tuple[DecodedPhoto, ...] = ()  # a series' photos, in order (for their file Media)


@dataclass(frozen=True)
class AnalysedPhoto:
    """One photo's analysis — or one video's or series', then ``decoded`` is its representative frame."""

    decoded: DecodedPhoto
    kind: PhotoKind
    report: AnalysisReport
    # Grad-CAM overlays (PNG), one per model result that drew one; for build_result_bundle(heatmaps=…).
    heatmaps: tuple[HeatMap, ...] = ()
    footage: Footage | None = None


@dataclass(frozen=True)
class PhotoRequest:
    """One photo to analyse and what is known about it before decoding."""

    data: bytes
    requested: RequestedKind = "auto"
    kind_hint: PhotoKind | None = None
    declared_content_type: str | None = None
    # Skip reduced-scale decoding, for when the pixels are also stored.
    full_resolution: bool = False
    # A video's progress, frame by frame (``workers.progress``); photos ignore it.
    on_frames: FrameCallback | None = field(default=None, compare=False)


@dataclass
class GatedPhoto:
    """A decoded photo (or frame) after the quality gate, collecting what the pipelines give it."""

    decoded: DecodedPhoto
    kind: PhotoKind
    verdict: QualityVerdict
    results: list[tuple[ModelInfo, ModelResult]] = field(default_factory=list)
    heatmaps: list[HeatMap] = field(default_factory=list)
    not_performed: list[AnalysisNotPerformed] = field(default_factory=list)


def analyse_photo(
    data: bytes,
    settings: Settings,
    *,
    requested: RequestedKind = "auto",
    kind_hint: PhotoKind | None = None,
    declared_content_type: str | None = None,
    full_resolution: bool = False,
) -> AnalysedPhoto:
    """One photo; raises the intake error that refused it."""
    request = PhotoRequest(data, requested, kind_hint, declared_content_type, full_resolution)
    (outcome,) = analyse_photos([request], settings)
    if isinstance(outcome, PhotomarkerError):
        raise outcome
    return outcome


def analyse_photos(
    requests: Sequence[PhotoRequest], settings: Settings
) -> list[AnalysedPhoto | PhotomarkerError]:
    """Several photos, in order; a photo that cannot be decoded gets its error, the others go on.

    Errors from the models themselves (a weights hash mismatch, a missing device) are faults of
    the deployment, not of a photo, and are raised.
    """
    limits = IntakeLimits.from_settings(settings)
    thresholds = QualityThresholds.from_settings(settings)
    outcomes: list[GatedPhoto | PhotomarkerError] = []
    for request in requests:
        try:
            outcomes.append(_decode_and_gate(request, limits, thresholds))
        except PhotomarkerError as error:
            outcomes.append(error)
    run_pipelines([o for o in outcomes if isinstance(o, GatedPhoto)], EngineOptions.from_settings(settings))
    return [outcome if isinstance(outcome, PhotomarkerError) else _report(outcome) for outcome in outcomes]


def _decode_and_gate(
    request: PhotoRequest, limits: IntakeLimits, thresholds: QualityThresholds
) -> GatedPhoto:
    decoded = decode_photo(
        request.data,
        limits=limits,
        declared_content_type=request.declared_content_type,
        min_side=None if request.full_resolution else WORKING_MIN_SIDE,
    )
    expected = request.requested if request.requested != "auto" else request.kind_hint
    return gate(decoded, expected, thresholds)


def gate(decoded: DecodedPhoto, expected: PhotoKind | None, thresholds: QualityThresholds) -> GatedPhoto:
    """The quality gate, and which kind of photo this is (the expected one, else what it shows).

    A cut-out on black is judged, and analysed, as the cut-out on transparency it is; asked
    "auto", it is a lesion cut-out: the eyelid network, trained on whole eyelid photos, took the
    red lesion of 7 of the 36 PAD-UFES-20 test cut-outs for a conjunctiva. A strip cut out on
    black is analysed as one when the sender says so (``--kind conjunctiva``, or the Media's
    body site).
    """
    photo = as_cut_out(decoded)
    on_black = photo is not decoded
    verdict = assess_quality(photo, thresholds, expected=expected)
    if (
        expected is None
        and verdict.content_found == "conjunctiva"
        and (on_black or not _shows_an_eyelid(photo))
    ):
        # Colour alone takes a red rash for mucosa; the conjunctiva network looked and found none.
        verdict = assess_quality(photo, thresholds, expected="skin")
    kind: PhotoKind = expected or verdict.content_found or "skin"
    return GatedPhoto(photo, kind, verdict)


def _shows_an_eyelid(photo: DecodedPhoto) -> bool:
    """``--kind auto``: does a photo whose colours say "conjunctiva" really show one?

    A pre-cropped strip (transparent background) is conjunctiva by construction. Otherwise the
    installed conjunctiva segmentation network decides; without one, the colour rule stands.
    """
    if photo.alpha is not None:
        return True
    # Imported here: a worker that is never asked "auto" never loads the Hb localiser.
    from models.hb.localise import localise_conjunctiva

    where = localise_conjunctiva(photo)
    return where.found or where.method != "network"


def run_pipelines(photos: Sequence[GatedPhoto], options: EngineOptions) -> None:
    """Every installed analysis of their kind over the photos that passed the gate, batched."""
    _check_conjunctiva_found(photos, options)
    # A photo too poor to score gets its quality result (and a retake), nothing else.
    acceptable = [photo for photo in photos if photo.verdict.acceptable]
    for kind, analyses in ANALYSES_BY_KIND.items():
        group = [photo for photo in acceptable if photo.kind == kind]
        if not group:
            continue
        for analysis in analyses:
            pipeline = installed_pipeline(analysis, options)
            if pipeline is None:
                for photo in group:
                    photo.not_performed.append(
                        AnalysisNotPerformed(
                            analysis=analysis,
                            reason=f"No {kind} model is installed for this analysis; no score was produced.",
                        )
                    )
                continue
            outcomes = pipeline.run([photo.decoded for photo in group])
            for photo, outcome in zip(group, outcomes, strict=True):
                if isinstance(outcome.result, AnalysisNotPerformed):
                    photo.not_performed.append(outcome.result)
                    continue
                photo.results.append((pipeline.model, outcome.result))
                if outcome.explanation is not None:
                    png = render_overlay(photo.decoded.pixels, outcome.explanation)
                    photo.heatmaps.append(HeatMap(analysis, pipeline.model, png))


def _check_conjunctiva_found(photos: Sequence[GatedPhoto], options: EngineOptions) -> None:
    """Conjunctiva photos that pass the gate also need their conjunctiva found, or they are retaken.

    A photo in which the localiser finds no palpebral conjunctiva is a photo to take again,
    which the quality result says (with advice) — not an Hb analysis that failed.
    """
    to_check = [p for p in photos if p.kind == "conjunctiva" and p.verdict.acceptable]
    if not to_check:
        return
    # Imported here: skin-only workers never load the Hb localiser or its network.
    from models.hb.localise import conjunctiva_found_check

    for photo in to_check:
        check = conjunctiva_found_check(photo.decoded, options.model_dir)
        # Conjunctiva-coloured pixels are not a conjunctiva: the note must not say one was found.
        found = photo.verdict.content_found if check.passed else None
        photo.verdict = replace(photo.verdict, checks=(*photo.verdict.checks, check), content_found=found)


def _report(photo: GatedPhoto) -> AnalysedPhoto:
    report = AnalysisReport(
        quality=photo.verdict, model_results=tuple(photo.results), not_performed=tuple(photo.not_performed)
    )
    return AnalysedPhoto(photo.decoded, photo.kind, report, tuple(photo.heatmaps))
