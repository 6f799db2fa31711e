"""Videos and photo series: many frames of one lesion → one accumulated report.

The steps, top to bottom: decode (a video's frames sampled by ``models.video``, a series' photos
by the one photo decoder) → the same quality gate as a photo, frame by frame (dropped frames are
counted) → every installed pipeline over the accepted frames in batches → accumulate per
analysis (``models.accumulate``) → the heat maps of the most representative frame → one
``AnalysedPhoto`` whose report carries the frame counts and steadiness. :func:`analyse_requests`
is the one entry point: it sends photos on to :func:`workers.analysis.analyse_photos` (batched
across requests as before) and videos and series here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Final, Literal

from fhir_mappings.media import HeatMap
from models.accumulate import AccumulationPolicy, FrameResult, accumulate, most_representative, quality_weight
from models.engine.options import EngineOptions
from models.errors import ContentTypeMismatch, InvalidSeries, PhotomarkerError
from models.intake import DecodedPhoto, IntakeLimits, decode_photo
from models.photo_formats import sniff
from models.pipelines import ANALYSES_BY_KIND
from models.quality import QualityThresholds
from models.results import (
    AnalysisName,
    AnalysisNotPerformed,
    AnalysisReport,
    FrameCounts,
    PhotoKind,
    QualityCheck,
    QualityCheckName,
    QualityVerdict,
)
from models.video import decode_video
from models.video_container import VideoLimits, is_video_type, looks_like_video
from plugin.settings import Settings
from workers.analysis import (
    WORKING_MIN_SIDE,
    AnalysedPhoto,
    Footage,
    GatedPhoto,
    PhotoRequest,
    analyse_photos,
    gate,
    run_pipelines,
)
from workers.progress import FrameCallback

ADVICE_FRAMES: Final = (
    "Film the lesion for a few seconds (or take a few photos), holding the phone still in even light."
)


@dataclass(frozen=True)
class SeriesRequest:
    """Several photos of one lesion, analysed as one (a clinician's two or three shots)."""

    photos: tuple[PhotoRequest, ...]
    # Progress photo by photo (``workers.progress``).
    on_frames: FrameCallback | None = field(default=None, compare=False)


AnyRequest = PhotoRequest | SeriesRequest


def analyse_requests(
    requests: Sequence[AnyRequest], settings: Settings
) -> list[AnalysedPhoto | PhotomarkerError]:
    """Photos, videos and series, in order; each refusal is that request's error."""
    outcomes: dict[int, AnalysedPhoto | PhotomarkerError] = {}
    photos: list[tuple[int, PhotoRequest]] = []
    for index, request in enumerate(requests):
        try:
            if isinstance(request, SeriesRequest):
                outcomes[index] = analyse_series(request, settings)
            elif is_video(request):
                outcomes[index] = analyse_video(request, settings)
            else:
                photos.append((index, request))
        except PhotomarkerError as error:
            outcomes[index] = error
    for (index, _), outcome in zip(photos, analyse_photos([r for _, r in photos], settings), strict=True):
        outcomes[index] = outcome
    return [outcomes[index] for index in range(len(requests))]


def is_video(request: PhotoRequest) -> bool:
    """Declared a video, or undeclared bytes that are no photo and open as a video.

    A declared photo whose bytes are a video is refused as mislabelled, not guessed at.
    """
    if is_video_type(request.declared_content_type):
        return True
    try:
        sniff(request.data)
    except PhotomarkerError:
        if not looks_like_video(request.data):
            return False  # the photo decoder gives the precise refusal
        if request.declared_content_type is not None:
            raise ContentTypeMismatch(
                f"The file is declared {request.declared_content_type.split(';')[0].strip()}, "
                "but its bytes are a video."
            ) from None
        return True
    return False


def analyse_video(request: PhotoRequest, settings: Settings) -> AnalysedPhoto:
    video = decode_video(
        request.data,
        limits=VideoLimits.from_settings(settings),
        declared_content_type=request.declared_content_type,
        working_min_side=WORKING_MIN_SIDE,
    )
    frames = [(frame.time_s, frame.photo) for frame in video.frames]
    expected = request.requested if request.requested != "auto" else request.kind_hint
    footage = Footage("video", 0, "", video=video)
    return _accumulated(frames, expected, settings, footage, video.duration_s, request.on_frames)


def analyse_series(request: SeriesRequest, settings: Settings) -> AnalysedPhoto:
    count = len(request.photos)
    if count < 2:
        raise InvalidSeries("A series needs two or more photos of the same lesion.")
    if count > settings.series_max_photos:
        raise InvalidSeries(f"The series holds {count} photos; the limit is {settings.series_max_photos}.")
    limits = IntakeLimits.from_settings(settings)
    members: list[DecodedPhoto] = []
    for place, photo in enumerate(request.photos, start=1):
        try:
            members.append(
                decode_photo(
                    photo.data,
                    limits=limits,
                    declared_content_type=photo.declared_content_type,
                    min_side=None if photo.full_resolution else WORKING_MIN_SIDE,
                )
            )
        except PhotomarkerError as error:
            # The series is refused as a whole, with the photo named: a silent gap would skew it.
            raise type(error)(f"Photo {place} of the series: {error.message}") from None
    first = request.photos[0]
    expected = first.requested if first.requested != "auto" else first.kind_hint
    frames = [(float(place), photo) for place, photo in enumerate(members, start=1)]
    footage = Footage("series", 0, "", members=tuple(members))
    return _accumulated(frames, expected, settings, footage, None, request.on_frames)


# --- the shared path of frames ---------------------------------------------------------------


def _accumulated(
    frames: Sequence[tuple[float, DecodedPhoto]],
    expected: PhotoKind | None,
    settings: Settings,
    footage: Footage,
    duration_s: float | None,
    on_frames: FrameCallback | None,
) -> AnalysedPhoto:
    """Gate, analyse and accumulate the frames (at their times, or places in a series); ``footage``
    says what they came from and gets the representative frame filled in."""
    source = footage.source
    thresholds = QualityThresholds.from_settings(settings)
    gated = _gate_all([photo for _, photo in frames], expected, thresholds)
    kind = gated[0].kind
    # The frames are their own augmentation: TTA per frame is a setting, heat maps wait for one frame.
    options = EngineOptions.from_settings(settings)
    frame_options = replace(options, tta=settings.video_frame_tta, heatmaps=False)
    _run_in_steps(gated, frame_options, settings.inference_batch_size, on_frames)

    accepted = [i for i, photo in enumerate(gated) if photo.verdict.acceptable]
    policy = AccumulationPolicy.from_settings(settings)
    if source == "series":  # two or three shots are a whole series; a video has many more frames
        policy = replace(policy, min_frames=min(policy.min_frames, 2))
    results = [
        FrameResult(frames[i][0], quality_weight(gated[i].verdict), tuple(gated[i].results)) for i in accepted
    ]
    combined = accumulate(results, policy)
    best = accepted[most_representative(combined, len(accepted))] if accepted else 0
    drawn_on = _frame_words(source, frames[best][0])
    heatmaps: tuple[HeatMap, ...] = ()
    if combined and options.heatmaps:
        produced = {item.steadiness.analysis for item in combined}
        heatmaps = _heatmaps_of(gated[best], produced, options, drawn_on)

    report = AnalysisReport(
        quality=_verdict(gated, accepted, best, policy.min_frames),
        model_results=tuple((item.model, item.result) for item in combined),
        not_performed=_not_performed(gated, accepted, kind, {item.steadiness.analysis for item in combined}),
        frames=FrameCounts(source, len(accepted), len(gated) - len(accepted), duration_s),
        steadiness=tuple(item.steadiness for item in combined),
    )
    footage = replace(footage, representative=best, drawn_on=drawn_on)
    return AnalysedPhoto(gated[best].decoded, kind, report, heatmaps, footage)


def _run_in_steps(
    gated: Sequence[GatedPhoto], options: EngineOptions, step: int, on_frames: FrameCallback | None
) -> None:
    """The pipelines over the frames one forward batch at a time, so progress can be counted."""
    total = len(gated)
    if on_frames is not None:
        on_frames(0, total)
    for start in range(0, total, step):
        run_pipelines(gated[start : start + step], options)
        if on_frames is not None:
            on_frames(min(start + step, total), total)


def _gate_all(
    photos: Sequence[DecodedPhoto], expected: PhotoKind | None, thresholds: QualityThresholds
) -> list[GatedPhoto]:
    """Gate every frame; without an expected kind, the frames' majority decides it for all."""
    gated = [gate(photo, expected, thresholds) for photo in photos]
    if expected is not None:
        return gated
    kind: PhotoKind = Counter(photo.kind for photo in gated).most_common(1)[0][0]
    return [photo if photo.kind == kind else gate(photo.decoded, kind, thresholds) for photo in gated]


def _heatmaps_of(
    frame: GatedPhoto, produced: set[AnalysisName], options: EngineOptions, drawn_on: str
) -> tuple[HeatMap, ...]:
    """The representative frame once more, with Grad-CAM on: its overlays explain the verdicts."""
    again = GatedPhoto(frame.decoded, frame.kind, frame.verdict)
    run_pipelines([again], replace(options, heatmaps=True))
    return tuple(
        replace(heatmap, drawn_on=drawn_on) for heatmap in again.heatmaps if heatmap.analysis in produced
    )


def _verdict(
    gated: Sequence[GatedPhoto], accepted: Sequence[int], best: int, required: int
) -> QualityVerdict:
    """The representative frame's checks — or, when too few passed, the commonest failure — plus
    the frames check, which fails (asking for a retake) when fewer than ``required`` passed."""
    if len(accepted) >= required or len(accepted) == len(gated):
        base = gated[best].verdict
    else:
        failures = Counter(
            tuple(check.name for check in photo.verdict.failed)
            for photo in gated
            if not photo.verdict.acceptable
        )
        common = failures.most_common(1)[0][0]
        base = next(photo.verdict for photo in gated if tuple(c.name for c in photo.verdict.failed) == common)
    enough = len(accepted) >= required
    frames = QualityCheck(
        name=QualityCheckName.FRAMES,
        passed=enough,
        value=float(len(accepted)),
        threshold=float(required),
        advice=None if enough else ADVICE_FRAMES,
    )
    return QualityVerdict(checks=(*base.checks, frames), content_found=base.content_found)


def _not_performed(
    gated: Sequence[GatedPhoto], accepted: Sequence[int], kind: PhotoKind, done: set[AnalysisName]
) -> tuple[AnalysisNotPerformed, ...]:
    """Analyses no accepted frame produced, with the reason the frames gave."""
    if not accepted:
        return ()
    missing: list[AnalysisNotPerformed] = []
    for analysis in ANALYSES_BY_KIND[kind]:
        if analysis in done:
            continue
        reasons = [item for i in accepted for item in gated[i].not_performed if item.analysis == analysis]
        if reasons:
            missing.append(Counter(reasons).most_common(1)[0][0])
    return tuple(missing)


def _frame_words(source: Literal["video", "series"], position: float) -> str:
    return f"the frame at {position:.1f} s" if source == "video" else f"photo {int(position)} of the series"
