"""One analysed photo → its transaction Bundle; shared by the CLI and the Celery workers.

Whoever asked (a CLI user, an API client, the inbox), the same photo and models give the same
Bundle: a photo read from FHIR is pointed at by version, a file (or a resource never stored) is
written as a metadata-free Media beside its results, and Grad-CAM overlays go in as derived Media.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fhir_mappings import idempotency
from fhir_mappings.bundle import build_result_bundle
from fhir_mappings.context import Requester, ResultContext, file_media_full_url
from fhir_mappings.inputs import patient_facts
from fhir_mappings.media import build_file_media, build_file_video_media
from fhir_mappings.photo import Photo
from fhir_mappings.validation import Resource
from models.errors import FhirServerUnavailable, InvalidSeries, PhotomarkerError
from models.intake import strip_to_bytes
from models.results import AnalysisReport, Concept, HbEstimate, PatientFacts
from models.tumour.record_weighing import weigh_report, weighs_with_record
from models.video_copy import picture_only_copy
from plugin.settings import Settings
from workers.analysis import AnalysedPhoto
from workers.fhir_client import FhirClient

log = logging.getLogger(__name__)


def software_version() -> str:
    try:
        return version("photomarker")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+source"


def stored_as_file(photo: Photo) -> bool:
    """True when the photo has no stored resource to point at (a file, or a resource without id)."""
    return photo.source is None or photo.source.id is None


def result_bundle(
    photo: Photo,
    data: bytes,
    analysed: AnalysedPhoto,
    settings: Settings,
    *,
    issued: datetime,
    requester: Requester,
    facts: PatientFacts | None,
) -> dict[str, Any]:
    common: dict[str, Any] = {
        "canonical": settings.canonical,
        "issued": issued,
        "software_version": software_version(),
        "requester": requester,
        "patient_facts": facts,
        "hb_add_loinc_718_7": settings.hb_add_loinc_718_7,
    }
    if stored_as_file(photo):
        ctx = ResultContext.for_file(photo, file_sha256=hashlib.sha256(data).hexdigest(), **common)
        video = analysed.footage.video if analysed.footage is not None else None
        if video is not None:
            media = build_file_video_media(
                ctx,
                video=picture_only_copy(data, video.content_type, video.rotation),
                content_type=video.content_type,
                size=video.size,
                frames=video.frames_in_stream,
                duration_s=video.duration_s,
            )
        else:
            image, content_type = strip_to_bytes(analysed.decoded)
            media = build_file_media(ctx, image=image, content_type=content_type)
        return build_result_bundle(analysed.report, ctx, source_media=media, heatmaps=analysed.heatmaps)
    ctx = ResultContext.for_fhir_photo(photo, **common)
    return build_result_bundle(analysed.report, ctx, heatmaps=analysed.heatmaps)


def series_patient(photos: Sequence[Photo]) -> str | None:
    """The one patient a series belongs to; photos of different patients are no series."""
    subjects = {photo.subject for photo in photos}
    if len(subjects) > 1:
        raise InvalidSeries("The photos of a series must all belong to the same patient.")
    return next(iter(subjects), None)


def check_one_body_site(photos: Sequence[Photo]) -> None:
    """Photos of one lesion show one body site: two that state different sites are no series.

    Sites are compared by code where both photos are coded, else by the sender's words; a photo
    that states no site takes the others'.
    """
    stated = [photo for photo in photos if photo.body_site or photo.body_site_text]
    for photo in stated[1:]:
        first = stated[0]
        codes = ({(c.system, c.code) for c in first.body_site}, {(c.system, c.code) for c in photo.body_site})
        words = ((first.body_site_text or "").strip().lower(), (photo.body_site_text or "").strip().lower())
        if (all(codes) and not codes[0] & codes[1]) or (all(words) and words[0] != words[1]):
            raise InvalidSeries(
                f"The photos of a series must show one lesion on one body site; they state "
                f"{_site_words(first)} and {_site_words(photo)}."
            )


def series_sites(photos: Sequence[Photo]) -> tuple[Concept, ...]:
    """The coded body site of a series: the first photo's that states one (they agree, see above)."""
    return next((photo.body_site for photo in photos if photo.body_site), ())


def _site_words(photo: Photo) -> str:
    if photo.body_site_text:
        return f'"{photo.body_site_text.strip()}"'
    return f'"{photo.body_site[0].display or photo.body_site[0].code}"'


def series_bundle(
    photos: Sequence[Photo],
    datas: Sequence[bytes],
    analysed: AnalysedPhoto,
    settings: Settings,
    *,
    issued: datetime,
    requester: Requester,
    facts: PatientFacts | None,
) -> dict[str, Any]:
    """One series' Bundle: one Observation per analysis derived from every photo; files' photos
    are written as their own metadata-free Media first."""
    members = analysed.footage.members if analysed.footage is not None else ()
    if len(members) != len(photos) or len(datas) != len(photos):
        raise ValueError("a series Bundle needs every photo's bytes and decoded pixels")
    from_files = [stored_as_file(photo) for photo in photos]
    if any(from_files) and not all(from_files):
        raise InvalidSeries("A series is either all files or all FHIR resources, not a mix.")
    common: dict[str, Any] = {
        "canonical": settings.canonical,
        "issued": issued,
        "software_version": software_version(),
        "requester": requester,
        "patient_facts": facts,
        "hb_add_loinc_718_7": settings.hb_add_loinc_718_7,
    }
    media: list[Resource] = []
    if all(from_files):
        hashes = [hashlib.sha256(data).hexdigest() for data in datas]
        for photo, sha256, decoded in zip(photos, hashes, members, strict=True):
            image, content_type = strip_to_bytes(decoded)
            member_ctx = ResultContext.for_file(photo, file_sha256=sha256, **common)
            media.append(build_file_media(member_ctx, image=image, content_type=content_type))
        sources = tuple(file_media_full_url(sha256) for sha256 in hashes)
        keys = tuple(idempotency.file_photo_key(sha256) for sha256 in hashes)
    else:
        sources = tuple(ResultContext.for_fhir_photo(photo, **common).derived_from for photo in photos)
        keys = sources
    if len(set(keys)) != len(keys):
        raise InvalidSeries("The series names the same photo twice.")
    ctx = ResultContext.for_series(tuple(photos), sources=sources, member_keys=keys, **common)
    return build_result_bundle(analysed.report, ctx, heatmaps=analysed.heatmaps, series_media=media)


def interpret(
    photo: Photo,
    analysed: AnalysedPhoto,
    settings: Settings,
    *,
    client: FhirClient | None,
    issued: datetime,
    patient: Mapping[str, Any] | None = None,
    sites: Sequence[Concept] | None = None,
) -> tuple[AnalysedPhoto, PatientFacts | None]:
    """What the Patient adds to an analysis: its facts (for the WHO anaemia cut-offs) and, for a
    tumour result, the weighing with the patient's age and the photo's body site (``sites``:
    the series' site; default the photo's own)."""
    weigh = settings.tumour_record_weighing and weighs_with_record(analysed.report, settings.model_dir)
    facts = facts_for_interpretation(
        photo, analysed.report, client=client, issued=issued, patient=patient, for_tumour=weigh
    )
    if not weigh:
        return analysed, facts
    report = weigh_report(
        analysed.report,
        age_months=facts.age_months if facts is not None else None,
        sites=photo.body_site if sites is None else sites,
        model_dir=settings.model_dir,
    )
    return replace(analysed, report=report), facts


def facts_for_interpretation(
    photo: Photo,
    report: AnalysisReport,
    *,
    client: FhirClient | None,
    issued: datetime,
    patient: Mapping[str, Any] | None = None,
    for_tumour: bool = False,
) -> PatientFacts | None:
    """Age/sex for the WHO anaemia cut-offs and the tumour weighing — the Patient is read only when
    there is an Hb to judge or (``for_tumour``) a tumour result to weigh.

    ``patient`` is the Patient resource when the input already carried it (a Bundle with
    ``_include``); otherwise it is read from the server. A server that is down is worth waiting
    for (the cut-off and the weighing are part of the result); any other failure leaves the Hb
    without a cut-off and the tumour result the photo's alone.
    """
    if not for_tumour and not any(isinstance(result, HbEstimate) for _, result in report.model_results):
        return None
    if patient is None and client is not None and photo.subject:
        try:
            patient = client.read(photo.subject)
        except FhirServerUnavailable:
            raise
        except PhotomarkerError:
            log.warning("could not read the photo's Patient; results are reported without its facts")
    if patient is None:
        return None
    return patient_facts(patient, on=(photo.taken_at or issued).date())
