"""Media Photomarker writes: a photo given as a file, and a heat-map overlay derived from a photo.

R4 Media has no ``derivedFrom``, and R4 core has no extension for it (``basedOn`` only takes
requests, ``partOf`` means "part of a larger event"). So a heat map's derivation is recorded the
way FHIR records derivation generally: the write's Provenance lists the heat map as a
``target`` with the photo as its ``source`` entity and the model Device as the agent; and the
Observation it explains points at it with ``workflow-supportingInfo`` (see ``observations``).
The heat map's own ``device`` names the model that drew it.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fhir_mappings import codes, idempotency
from fhir_mappings.context import ResultContext, fhir_datetime
from fhir_mappings.device import model_device_full_url
from fhir_mappings.validation import Resource, validate_resource
from models.results import AnalysisName, ModelInfo

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IMAGE_TYPE = {"system": codes.MEDIA_TYPE, "code": "image", "display": "Image"}
_VIDEO_TYPE = {"system": codes.MEDIA_TYPE, "code": "video", "display": "Video"}


@dataclass(frozen=True)
class HeatMap:
    """A rendered overlay (PNG) showing which pixels drove one model result."""

    analysis: AnalysisName
    model: ModelInfo
    png: bytes
    # For a video or series: which frame the overlay is drawn on ("the frame at 3.2 s").
    drawn_on: str | None = None


def _attachment(data: bytes, content_type: str, title: str | None = None) -> dict[str, Any]:
    if not data:
        raise ValueError("a Media needs image bytes")
    attachment: dict[str, Any] = {
        "contentType": content_type,
        "data": base64.b64encode(data).decode("ascii"),
        "size": len(data),
        # content.hash is base64 SHA-1 of exactly these bytes: readers check it (FHIR.md Inputs).
        "hash": base64.b64encode(hashlib.sha1(data, usedforsecurity=False).digest()).decode("ascii"),
    }
    if title:
        attachment["title"] = title
    return attachment


def _patient_context(media: Resource, ctx: ResultContext) -> None:
    if ctx.photo.subject:
        media["subject"] = {"reference": ctx.photo.subject}
    if ctx.photo.encounter:
        media["encounter"] = {"reference": ctx.photo.encounter}


def file_media_identifier(ctx: ResultContext) -> dict[str, str]:
    """The identifier of a file's Media: SHA-256 of the original file, as the CLI read it."""
    if ctx.file_sha256 is None:
        raise ValueError("the context has no file SHA-256: the photo did not come from a file")
    return {"system": codes.photo_sha256_system(ctx.canonical), "value": ctx.file_sha256}


def _file_media_head(ctx: ResultContext, media_type: Mapping[str, str]) -> Resource:
    """What a file's Media says before its content: identifier, type, patient, when and where."""
    media: Resource = {
        "resourceType": "Media",
        "identifier": [file_media_identifier(ctx)],
        "status": "completed",
        "type": {"coding": [dict(media_type)]},
    }
    _patient_context(media, ctx)
    if ctx.photo.taken_at is not None:
        media["createdDateTime"] = fhir_datetime(ctx.photo.taken_at)
    site = codes.site_codeable(ctx.photo.body_site, ctx.photo.body_site_text, ctx.canonical)
    if site is not None:
        media["bodySite"] = site
    return media


def build_file_media(ctx: ResultContext, *, image: bytes, content_type: str) -> Resource:
    """The Media for a photo given to the CLI as a file.

    ``image`` is the cleaned image (metadata dropped) that is stored; the identifier still
    names the original file so running the same file again finds the same Media.
    """
    media = _file_media_head(ctx, _IMAGE_TYPE)
    media["content"] = _attachment(image, content_type)
    validate_resource(media)
    return media


def build_file_video_media(
    ctx: ResultContext,
    *,
    video: bytes,
    content_type: str,
    size: tuple[int, int],
    frames: int,
    duration_s: float,
) -> Resource:
    """The Media for a video given to the CLI as a file.

    ``video`` is the copy that is stored: the picture stream only, its container metadata (place,
    device, names) and any sound dropped; the identifier names the original file, as for a photo.
    """
    media = _file_media_head(ctx, _VIDEO_TYPE)
    media["width"], media["height"] = size
    media["frames"] = frames
    media["duration"] = round(duration_s, 3)
    media["content"] = _attachment(video, content_type)
    validate_resource(media)
    return media


def heatmap_key(ctx: ResultContext, heatmap: HeatMap) -> str:
    """Identifier value of a heat map: same photo, model and analysis → same heat map."""
    return idempotency.result_key(
        ctx.photo_key, idempotency.model_key(heatmap.model), f"heatmap:{heatmap.analysis}"
    )


def build_heatmap_media(heatmap: HeatMap, ctx: ResultContext, *, device_ref: str | None = None) -> Resource:
    """A PNG overlay derived from the photo by a model (AI-asserted, like the result it explains)."""
    if not heatmap.png.startswith(_PNG_SIGNATURE):
        raise ValueError("a heat map must be a PNG")
    model = heatmap.model
    result_display = codes.LOCAL_CONCEPTS[codes.ANALYSIS_CODES[heatmap.analysis]][0]
    media: Resource = {
        "resourceType": "Media",
        "meta": {"security": [dict(codes.AIAST)]},
        "identifier": [
            {"system": codes.result_identifier_system(ctx.canonical), "value": heatmap_key(ctx, heatmap)}
        ],
        "status": "completed",
        "type": {"coding": [dict(_IMAGE_TYPE)]},
    }
    _patient_context(media, ctx)
    media["createdDateTime"] = ctx.issued_instant
    media["issued"] = ctx.issued_instant
    site = codes.site_codeable(ctx.photo.body_site, ctx.photo.body_site_text, ctx.canonical)
    if site is not None:
        media["bodySite"] = site
    media["device"] = {"reference": device_ref or model_device_full_url(model)}
    over = f"{heatmap.drawn_on}, the most representative one" if heatmap.drawn_on else "the source photo"
    notes = [
        f"Heat map over {over}: brighter areas weighed more in "
        f"{model.display_name} {model.version}'s result. It explains the model, not the disease."
    ]
    if model.reference_only:
        notes.append(f"{codes.REFERENCE_ONLY_TEXT}: {model.display_name} is a reference model.")
    media["note"] = [{"text": text} for text in notes]
    media["content"] = _attachment(heatmap.png, "image/png", f"Heat map: {result_display}")
    validate_resource(media)
    return media
