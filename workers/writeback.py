"""One analysed photo → its transaction Bundle; shared by the CLI and the Celery workers.

Whoever asked (a CLI user, an API client, the inbox), the same photo and models give the same
Bundle: a photo read from FHIR is pointed at by version, a file (or a resource never stored) is
written as a metadata-free Media beside its results, and Grad-CAM overlays go in as derived Media.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fhir_mappings.bundle import build_result_bundle
from fhir_mappings.context import Requester, ResultContext
from fhir_mappings.inputs import patient_facts
from fhir_mappings.media import build_file_media
from fhir_mappings.photo import Photo
from models.errors import FhirServerUnavailable, PhotomarkerError
from models.intake import strip_to_bytes
from models.results import AnalysisReport, HbEstimate, PatientFacts
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
        image, content_type = strip_to_bytes(analysed.decoded)
        media = build_file_media(ctx, image=image, content_type=content_type)
        return build_result_bundle(analysed.report, ctx, source_media=media, heatmaps=analysed.heatmaps)
    ctx = ResultContext.for_fhir_photo(photo, **common)
    return build_result_bundle(analysed.report, ctx, heatmaps=analysed.heatmaps)


def facts_for_interpretation(
    photo: Photo,
    report: AnalysisReport,
    *,
    client: FhirClient | None,
    issued: datetime,
    patient: Mapping[str, Any] | None = None,
) -> PatientFacts | None:
    """Age/sex for the WHO anaemia cut-offs — the Patient is read only when there is an Hb to judge.

    ``patient`` is the Patient resource when the input already carried it (a Bundle with
    ``_include``); otherwise it is read from the server. A server that is down is worth waiting
    for (the cut-off is part of the result); any other failure leaves the Hb without a cut-off.
    """
    if not any(isinstance(result, HbEstimate) for _, result in report.model_results):
        return None
    if patient is None and client is not None and photo.subject:
        try:
            patient = client.read(photo.subject)
        except FhirServerUnavailable:
            raise
        except PhotomarkerError:
            log.warning("could not read the photo's Patient; Hb is reported without a cut-off")
    if patient is None:
        return None
    return patient_facts(patient, on=(photo.taken_at or issued).date())
