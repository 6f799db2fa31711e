"""What an Observation of a video or a photo series adds: frames analysed / rejected, agreement.

A result accumulated over many frames is one Observation like a photo's, plus components saying
how many frames it rests on, how many the quality gate dropped, what share of frames agreed with
the verdict and how far the main value ranged over them — and a note saying so in words. The
photo-quality Observation of a video gets the frame counts too. Pure functions, like every
builder; the caller validates the finished Observation.
"""

from __future__ import annotations

from typing import Any

from fhir_mappings import codes
from fhir_mappings.context import ResultContext
from fhir_mappings.validation import Resource
from models.results import FrameCounts, Steadiness


def add_frame_counts(obs: Resource, frames: FrameCounts, ctx: ResultContext) -> None:
    """Frames analysed and rejected, as components, and a note naming the source."""
    obs.setdefault("component", []).extend(
        [
            {"code": codes.local_codeable("frames-analysed", ctx.canonical), "valueInteger": frames.analysed},
            {"code": codes.local_codeable("frames-rejected", ctx.canonical), "valueInteger": frames.rejected},
        ]
    )
    _note(obs, _source_text(frames))


def add_steadiness(
    obs: Resource,
    frames: FrameCounts,
    steadiness: Steadiness,
    ctx: ResultContext,
    *,
    before_record: bool = False,
) -> None:
    """Frame counts, agreement, range (and spread) of one accumulated result. ``before_record``:
    the result was then weighed with the patient's record, so the frames' figures are the photos'."""
    add_frame_counts(obs, frames, ctx)
    unit = "frames" if frames.source == "video" else "photos"
    components: list[dict[str, Any]] = [
        {
            "code": codes.local_codeable(
                "frame-agreement",
                ctx.canonical,
                f"{steadiness.agreement:.0%} of {steadiness.frames_used} {unit} agree with the verdict",
            ),
            "valueQuantity": _ratio(steadiness.agreement),
        },
        {
            "code": codes.local_codeable(
                "frame-range", ctx.canonical, f"{steadiness.measure} over the {unit}"
            ),
            "valueRange": {"low": _number(steadiness.low), "high": _number(steadiness.high)},
        },
    ]
    if steadiness.spread is not None:
        components.append(
            {
                "code": codes.local_codeable(
                    "frame-spread", ctx.canonical, f"interquartile range of the {steadiness.measure}"
                ),
                "valueQuantity": _number(steadiness.spread),
            }
        )
    obs["component"].extend(components)
    text = (
        f"Accumulated over {steadiness.frames_used} {unit}: {steadiness.agreement:.0%} agree with the "
        f"verdict; the {steadiness.measure} ranged {steadiness.low:.2f}–{steadiness.high:.2f}."
    )
    if before_record:
        text += (
            f" These {unit}' figures are from the images alone, before the patient's record was weighed in."
        )
    _note(obs, text)


def _source_text(frames: FrameCounts) -> str:
    if frames.source == "video":
        length = f" of a {frames.duration_s:.1f} s video" if frames.duration_s is not None else " of a video"
        return (
            f"From {frames.analysed + frames.rejected} frames{length}: {frames.analysed} analysed, "
            f"{frames.rejected} dropped by the quality gate."
        )
    return (
        f"From a series of {frames.analysed + frames.rejected} photos of one lesion: {frames.analysed} "
        f"analysed, {frames.rejected} dropped by the quality gate."
    )


def _note(obs: Resource, text: str) -> None:
    notes = obs.setdefault("note", [])
    if {"text": text} not in notes:
        notes.append({"text": text})


def _ratio(value: float) -> dict[str, Any]:
    return {"value": round(value, 4), "unit": "1", "system": codes.UCUM, "code": "1"}


def _number(value: float) -> dict[str, Any]:
    # Dimensionless on purpose: the measure (probability, TIS points, g/dL) is named in the text.
    return {"value": round(value, 4)}
