"""``photomarker analyze``'s work: files and FHIR JSON in, one transaction Bundle out.

Each path is handled on its own: a refusal names the path and its reason and the other paths
go on. A path may be an image file (JPEG/PNG/HEIC/WebP), a video file (MP4/MOV/WebM, analysed
frame by frame into one verdict), a Media or DocumentReference JSON, or a Bundle of them. With
``series=True`` all the photos given are one series of one lesion, analysed as one.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from audit.record import AuditRecord
from fhir_mappings.bundle import merge_transactions
from fhir_mappings.context import Requester
from fhir_mappings.inputs import InputContext, load_json, photos_from_json
from fhir_mappings.observations import analysis_of
from fhir_mappings.photo import Photo
from models.errors import PhotomarkerError, PhotoTooLarge, UnreadableFile, VideoTooLarge
from models.results import (
    AnalysisReport,
    ConditionProbabilities,
    HbEstimate,
    PhotoKind,
    TisScore,
    TumourAssessment,
)
from plugin.audit_log import analysis_record, cli_actor, refusal_record
from plugin.settings import Settings
from workers.analysis import AnalysedPhoto, PhotoRequest, RequestedKind
from workers.fetch import photo_bytes
from workers.fhir_client import FhirClient
from workers.footage import SeriesRequest, analyse_requests
from workers.writeback import (
    interpret,
    result_bundle,
    series_bundle,
    series_patient,
    series_sites,
    stored_as_file,
)

log = logging.getLogger(__name__)

ModelResult = TisScore | ConditionProbabilities | TumourAssessment | HbEstimate
# Video files by name: the declared type that lets a mislabelled or broken clip be named as such.
VIDEO_SUFFIXES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm"}


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
        frames = self.report.frames
        what = f"{self.kind} photo"
        if frames is not None:
            unit = "frames" if frames.source == "video" else "photos"
            what = (
                f"{self.kind} {frames.source} ({frames.analysed} {unit} analysed, {frames.rejected} rejected)"
            )
        if quality.acceptable:
            parts = [f"{what}, quality acceptable"]
        else:
            failed = ", ".join(check.name.value for check in quality.failed)
            parts = [f"{what}, retake needed ({failed})"]
        for name, result in _named_results(self.report):
            steadiness = self.report.steadiness_of(analysis_of(result))
            steady = f" [{steadiness.agreement:.0%} of frames agree]" if steadiness is not None else ""
            parts.append(f"{name}: {_describe(result)}{steady}")
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
    series: bool = False,
) -> LocalRun:
    """Analyse every path; each refusal and each analysis is handed to ``record`` (the audit)."""
    run = LocalRun()
    issued = datetime.now().astimezone()
    who = cli_actor()
    requester = Requester(display=who)
    ctx = InputContext(
        fhir_base=settings.fhir_base,
        expected_patient=patient,
        max_bytes=settings.max_photo_bytes,
        max_video_bytes=settings.video_max_bytes,
    )
    every: list[_Input] = []
    for path in paths:
        try:
            inputs = list(_read_inputs(path, ctx, patient, settings))
        except PhotomarkerError as error:
            run.refusals.append(Refusal(str(path), error))
            record(refusal_record(error, who=who, patient=patient))
            continue
        every += inputs
    if series:
        _analyse_series(every, run, settings, ctx, requested, client, issued, requester, record)
        return run
    for item in every:
        entities = _entities(item.photo)
        try:
            analysed = _analyse(item, settings, ctx, requested, client, issued, requester)
        except PhotomarkerError as error:
            run.refusals.append(Refusal(item.label, error))
            record(refusal_record(error, who=who, entities=entities, patient=item.photo.subject))
            continue
        run.analysed.append(analysed)
        if item.photo.source is None or item.photo.source.id is None:
            entities = (f"sha256:{analysed.file_sha256}",)
        record(analysis_record(who=who, entities=entities, patient=item.photo.subject))
    return run


def _analyse_series(
    items: Sequence[_Input],
    run: LocalRun,
    settings: Settings,
    ctx: InputContext,
    requested: RequestedKind,
    client: FhirClient | None,
    issued: datetime,
    requester: Requester,
    record: Callable[[AuditRecord], object],
) -> None:
    """All the photos given, as one series of one lesion: one Analysed, or one refusal."""
    who = requester.display or cli_actor()
    label = " + ".join(item.label for item in items) or "series"
    photos = [item.photo for item in items]
    entities = tuple(entity for photo in photos for entity in _entities(photo))
    subject = photos[0].subject if photos else None
    try:
        subject = series_patient(photos)
        datas = [photo_bytes(p, client, max_bytes=ctx.byte_limit(p.content_type) or 0) for p in photos]
        request = SeriesRequest(
            tuple(
                PhotoRequest(
                    data,
                    requested=requested,
                    kind_hint=photo.kind_hint,
                    declared_content_type=photo.content_type,
                    full_resolution=stored_as_file(photo),
                )
                for photo, data in zip(photos, datas, strict=True)
            )
        )
        analysed, facts = interpret(
            photos[0],
            _only(analyse_requests([request], settings)),
            settings,
            client=client,
            issued=issued,
            patient=items[0].patient,
            sites=series_sites(photos),
        )
        bundle = series_bundle(
            photos, datas, analysed, settings, issued=issued, requester=requester, facts=facts
        )
    except PhotomarkerError as error:
        run.refusals.append(Refusal(label, error))
        record(refusal_record(error, who=who, entities=entities, patient=subject))
        return
    digest = hashlib.sha256(b"".join(hashlib.sha256(d).digest() for d in datas)).hexdigest()
    run.analysed.append(Analysed(label, analysed.kind, analysed.report, bundle, digest))
    if not entities:
        entities = tuple(f"sha256:{hashlib.sha256(data).hexdigest()}" for data in datas)
    record(analysis_record(who=who, entities=entities, patient=subject))


def _only(outcomes: list[AnalysedPhoto | PhotomarkerError]) -> AnalysedPhoto:
    (outcome,) = outcomes
    if isinstance(outcome, PhotomarkerError):
        raise outcome
    return outcome


def _entities(photo: Photo) -> tuple[str, ...]:
    reference = photo.source.reference if photo.source else None
    return (reference,) if reference else ()


def _read_inputs(path: Path, ctx: InputContext, patient: str | None, settings: Settings) -> Iterator[_Input]:
    declared = VIDEO_SUFFIXES.get(path.suffix.lower())
    max_bytes = (
        settings.video_max_bytes if declared else max(settings.max_photo_bytes, settings.video_max_bytes)
    )
    try:
        size = path.stat().st_size
        if size > max_bytes and not _is_json_name(path):
            error = VideoTooLarge if declared else PhotoTooLarge
            raise error(f"the file is {size} bytes; the limit is {max_bytes}")
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
        yield _Input(str(path), Photo(source=None, subject=patient, content_type=declared, data=raw))


def _analyse(
    item: _Input,
    settings: Settings,
    ctx: InputContext,
    requested: RequestedKind,
    client: FhirClient | None,
    issued: datetime,
    requester: Requester,
) -> Analysed:
    photo = item.photo
    data = photo_bytes(photo, client, max_bytes=ctx.byte_limit(photo.content_type) or 0)
    request = PhotoRequest(
        data,
        requested=requested,
        kind_hint=photo.kind_hint,
        declared_content_type=photo.content_type,
        # A file's Media is written from these pixels, so keep them at full resolution.
        full_resolution=stored_as_file(photo),
    )
    analysed, facts = interpret(
        photo,
        _only(analyse_requests([request], settings)),
        settings,
        client=client,
        issued=issued,
        patient=item.patient,
    )
    bundle = result_bundle(photo, data, analysed, settings, issued=issued, requester=requester, facts=facts)
    file_sha256 = hashlib.sha256(data).hexdigest()
    return Analysed(item.label, analysed.kind, analysed.report, bundle, file_sha256)


def _named_results(report: AnalysisReport) -> list[tuple[str, ModelResult]]:
    names = []
    for model, result in report.model_results:
        name = f"{model.name} {model.version}"
        if model.reference_only:
            name += " [reference — not for clinical use]"
        names.append((name, result))
    return names


def _describe(result: ModelResult) -> str:
    if isinstance(result, TisScore):
        text = (
            f"TIS {result.total} ({result.band.value}: erythema {result.erythema}, "
            f"oedema/papulation {result.oedema_papulation}, excoriation {result.excoriation})"
        )
        if result.body_site is not None:
            text += f" on {result.body_site.display.lower()}"
    elif isinstance(result, HbEstimate):
        text = f"Hb {result.g_dl:.1f} g/dL ({result.low:.1f}–{result.high:.1f})"
    elif isinstance(result, TumourAssessment):
        text = f"malignancy probability {result.malignancy_probability:.2f}"
        if result.record is not None and result.record.used:
            # The facts by name only: the age itself is the patient's, not the terminal's.
            facts = " and ".join(
                "age" if fact.startswith("age") else "body site" for fact in result.record.used
            )
            alone = result.record.photo_only_malignancy
            text += f" (weighed with the patient's {facts}; photo alone {alone:.2f})"
    elif result.panel == "skin-diagnosis":
        text = "top 3: " + ", ".join(f"{c.concept.display} ({c.probability:.2f})" for c in result.top_k(3))
    else:
        top = result.top
        text = f"most likely {top.concept.display} ({top.probability:.2f})"
    abstention = result.abstention
    if abstention is not None:
        # The numbers stay in the record, but the summary leads with the refusal to commit.
        return f"abstained ({abstention.reason}); {text}"
    return text


def _is_json_name(path: Path) -> bool:
    return path.suffix.lower() == ".json"
