"""``photomarker analyze``'s work: files and FHIR JSON in, one transaction Bundle out.

Each path is handled on its own: a refusal names the path and its reason and the other paths
go on. A path may be an image file (JPEG/PNG/HEIC/WebP), a Media or DocumentReference JSON, or
a Bundle of them.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from audit.record import AuditRecord
from fhir_mappings.bundle import build_result_bundle, merge_transactions
from fhir_mappings.context import Requester, ResultContext
from fhir_mappings.inputs import InputContext, load_json, patient_facts, photos_from_json
from fhir_mappings.media import build_file_media
from fhir_mappings.photo import Photo
from models.errors import PhotomarkerError, PhotoTooLarge, UnreadableFile
from models.intake import strip_to_bytes
from models.results import (
    AnalysisReport,
    ConditionProbabilities,
    HbEstimate,
    PatientFacts,
    PhotoKind,
    TisScore,
    TumourAssessment,
)
from plugin.audit_log import analysis_record, cli_actor, refusal_record
from plugin.settings import Settings
from workers.analysis import RequestedKind, analyse_photo
from workers.fetch import photo_bytes
from workers.fhir_client import FhirClient

log = logging.getLogger(__name__)

ModelResult = TisScore | ConditionProbabilities | TumourAssessment | HbEstimate


def software_version() -> str:
    try:
        return version("photomarker")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+source"


@dataclass(frozen=True)
class Refusal:
    """One path (or one photo inside it) that could not be analysed, and why."""

    label: str
    error: PhotomarkerError

    def line(self) -> str:
        return f"{self.label}: {self.error.code}: {self.error.message}"


@dataclass(frozen=True)
class Analysed:
    """One photo that went through: what it was taken for, what it produced, its Bundle."""

    label: str
    kind: PhotoKind
    report: AnalysisReport
    bundle: dict[str, Any]
    file_sha256: str

    def line(self) -> str:
        quality = self.report.quality
        if quality.acceptable:
            parts = [f"{self.kind} photo, quality acceptable"]
        else:
            failed = ", ".join(check.name.value for check in quality.failed)
            parts = [f"{self.kind} photo, retake needed ({failed})"]
        parts += [f"{name}: {_describe(result)}" for name, result in _named_results(self.report)]
        by_reason: dict[str, list[str]] = {}
        for item in self.report.not_performed:
            by_reason.setdefault(item.reason.rstrip("."), []).append(item.analysis)
        parts += [f"not performed: {', '.join(names)} — {reason}" for reason, names in by_reason.items()]
        return f"{self.label}: " + "; ".join(parts)


@dataclass
class LocalRun:
    """What ``analyze`` produced: the photos analysed and the refusals, in input order."""

    analysed: list[Analysed] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)

    @property
    def transaction(self) -> dict[str, Any] | None:
        bundles = [item.bundle for item in self.analysed]
        return merge_transactions(bundles) if bundles else None


@dataclass(frozen=True)
class _Input:
    label: str
    photo: Photo
    patient: Mapping[str, Any] | None = None  # the Patient resource, when the input carried it


def analyse_paths(
    paths: Sequence[Path],
    settings: Settings,
    *,
    record: Callable[[AuditRecord], object],
    requested: RequestedKind = "auto",
    patient: str | None = None,
    client: FhirClient | None = None,
) -> LocalRun:
    """Analyse every path; each refusal and each analysis is handed to ``record`` (the audit)."""
    run = LocalRun()
    issued = datetime.now().astimezone()
    who = cli_actor()
    requester = Requester(display=who)
    ctx = InputContext(
        fhir_base=settings.fhir_base, expected_patient=patient, max_bytes=settings.max_photo_bytes
    )
    for path in paths:
        try:
            inputs = list(_read_inputs(path, ctx, patient, settings.max_photo_bytes))
        except PhotomarkerError as error:
            run.refusals.append(Refusal(str(path), error))
            record(refusal_record(error, who=who, patient=patient))
            continue
        for item in inputs:
            entities = _entities(item.photo)
            try:
                analysed = _analyse(item, settings, requested, client, issued, requester)
            except PhotomarkerError as error:
                run.refusals.append(Refusal(item.label, error))
                record(refusal_record(error, who=who, entities=entities, patient=item.photo.subject))
                continue
            run.analysed.append(analysed)
            if item.photo.source is None or item.photo.source.id is None:
                entities = (f"sha256:{analysed.file_sha256}",)
            record(analysis_record(who=who, entities=entities, patient=item.photo.subject))
    return run


def _entities(photo: Photo) -> tuple[str, ...]:
    reference = photo.source.reference if photo.source else None
    return (reference,) if reference else ()


def _read_inputs(path: Path, ctx: InputContext, patient: str | None, max_bytes: int) -> Iterator[_Input]:
    try:
        size = path.stat().st_size
        if size > max_bytes and not _is_json_name(path):
            raise PhotoTooLarge(f"the file is {size} bytes; the limit is {max_bytes}")
        raw = path.read_bytes()
    except OSError as exc:
        raise UnreadableFile(f"cannot read the file ({exc.strerror or type(exc).__name__})") from None
    if _is_json_name(path) or raw.lstrip()[:1] == b"{":
        batch = photos_from_json(load_json(raw), ctx)
        several = len(batch.photos) > 1
        for photo in batch.photos:
            label = str(path)
            if several and photo.source is not None:
                label += f"#{photo.source.resource_type}/{photo.source.id}"
            yield _Input(label, photo, batch.patients.get(photo.subject or ""))
    else:
        yield _Input(str(path), Photo(source=None, subject=patient, content_type=None, data=raw))


def _analyse(
    item: _Input,
    settings: Settings,
    requested: RequestedKind,
    client: FhirClient | None,
    issued: datetime,
    requester: Requester,
) -> Analysed:
    photo = item.photo
    data = photo_bytes(photo, client, max_bytes=settings.max_photo_bytes)
    # A resource that was never stored (no id) has nothing to point at: its photo is written
    # as a new Media beside the results, exactly like a file's.
    from_file = photo.source is None or photo.source.id is None
    analysed = analyse_photo(
        data,
        settings,
        requested=requested,
        kind_hint=photo.kind_hint,
        declared_content_type=photo.content_type,
        # A file's Media is written from these pixels, so keep them at full resolution.
        full_resolution=from_file,
    )
    facts = _patient_facts(item, analysed.report, client, issued)
    common: dict[str, Any] = {
        "canonical": settings.canonical,
        "issued": issued,
        "software_version": software_version(),
        "requester": requester,
        "patient_facts": facts,
        "hb_add_loinc_718_7": settings.hb_add_loinc_718_7,
    }
    log.debug("analysed one photo: kind=%s quality=%s", analysed.kind, analysed.report.quality.acceptable)
    file_sha256 = hashlib.sha256(data).hexdigest()
    if from_file:
        result_ctx = ResultContext.for_file(photo, file_sha256=file_sha256, **common)
        image, content_type = strip_to_bytes(analysed.decoded)
        media = build_file_media(result_ctx, image=image, content_type=content_type)
        bundle = build_result_bundle(analysed.report, result_ctx, source_media=media)
    else:
        result_ctx = ResultContext.for_fhir_photo(photo, **common)
        bundle = build_result_bundle(analysed.report, result_ctx)
    return Analysed(item.label, analysed.kind, analysed.report, bundle, file_sha256)


def _patient_facts(
    item: _Input, report: AnalysisReport, client: FhirClient | None, issued: datetime
) -> PatientFacts | None:
    """Age/sex for the WHO anaemia cut-offs — only read when there is an Hb estimate to judge."""
    if not any(isinstance(result, HbEstimate) for _, result in report.model_results):
        return None
    patient = item.patient
    if patient is None and client is not None and item.photo.subject:
        try:
            patient = client.read(item.photo.subject)
        except PhotomarkerError:
            log.warning("could not read the photo's Patient; Hb is reported without a cut-off")
    if patient is None:
        return None
    on = (item.photo.taken_at or issued).date()
    return patient_facts(patient, on=on)


def _named_results(report: AnalysisReport) -> list[tuple[str, ModelResult]]:
    return [(f"{model.name} {model.version}", result) for model, result in report.model_results]


def _describe(result: ModelResult) -> str:
    if isinstance(result, TisScore):
        return f"TIS {result.total} ({result.band.value})"
    if isinstance(result, HbEstimate):
        return f"Hb {result.g_dl:.1f} g/dL ({result.low:.1f}–{result.high:.1f})"
    if isinstance(result, TumourAssessment):
        return f"malignancy probability {result.malignancy_probability:.2f}"
    top = result.top
    return f"most likely {top.concept.display} ({top.probability:.2f})"


def _is_json_name(path: Path) -> bool:
    return path.suffix.lower() == ".json"
