"""One transaction Bundle per analysed photo: Devices, Observations, heat maps and a Provenance.

Every entry is a conditional create, so posting the same Bundle twice creates nothing new:
Devices on their identifier (weights SHA-256 / software version), Observations and heat maps
on their idempotency identifier, the Provenance on its write-key tag, a file's Media on the
file's SHA-256. Entries refer to each other through deterministic ``urn:uuid:`` fullUrls; when
a conditional create finds an existing resource the server points those references at it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from fhir_mappings import idempotency, observations
from fhir_mappings.context import ResultContext
from fhir_mappings.device import (
    build_model_device,
    build_software_device,
    model_device_full_url,
    model_device_identifier,
    software_device_full_url,
)
from fhir_mappings.footage import add_frame_counts, add_steadiness
from fhir_mappings.media import HeatMap, build_heatmap_media, file_media_identifier, heatmap_key
from fhir_mappings.provenance import build_provenance, provenance_full_url, write_tag
from fhir_mappings.validation import Resource, validate_resource
from models.anaemia import anaemia_cutoff
from models.results import AnalysisReport, HbEstimate, TumourAssessment


def _read_patient(report: AnalysisReport, ctx: ResultContext) -> bool:
    """Whether a result used the Patient's facts (so the Provenance names the Patient)."""
    for _, result in report.model_results:
        if isinstance(result, TumourAssessment) and result.record is not None and result.record.age_used:
            return True
        if isinstance(result, HbEstimate) and anaemia_cutoff(ctx.patient_facts) is not None:
            return True
    return False


def _search(parameter: str, system: str, value: str) -> str:
    # Keep ':' '/' '|' readable (servers accept them in a query); escape anything odd.
    return f"{parameter}={quote(f'{system}|{value}', safe=':/|')}"


def _entry(full_url: str, resource: Resource, if_none_exist: str) -> dict[str, Any]:
    return {
        "fullUrl": full_url,
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"], "ifNoneExist": if_none_exist},
    }


def _identifier_entry(full_url: str, resource: Resource) -> dict[str, Any]:
    identifier = resource["identifier"][0]
    return _entry(full_url, resource, _search("identifier", identifier["system"], identifier["value"]))


def build_result_bundle(
    report: AnalysisReport,
    ctx: ResultContext,
    *,
    source_media: Resource | None = None,
    heatmaps: Sequence[HeatMap] = (),
    series_media: Sequence[Resource] = (),
) -> Resource:
    """The transaction that writes everything one photo (video, series) produced.

    ``source_media`` is the Media from ``build_file_media`` when the photo came from a file
    (``ResultContext.for_file``); a photo read from FHIR already has its Media on the server.
    ``series_media`` are the Media of a series' files, in the order of ``ctx.sources``.
    """
    entries: list[dict[str, Any]] = []
    if series_media:
        if ctx.series_key is None or len(series_media) != len(ctx.sources):
            raise ValueError("series Media need a series context with one source per Media")
        entries += [
            _identifier_entry(source, media) for source, media in zip(ctx.sources, series_media, strict=True)
        ]
    if ctx.file_sha256 is not None:
        if source_media is None:
            raise ValueError("a photo from a file needs its source Media in the Bundle")
        if source_media.get("identifier") != [file_media_identifier(ctx)]:
            raise ValueError("the source Media is not the one built for this file")
        entries.append(_identifier_entry(ctx.derived_from, source_media))
    elif source_media is not None:
        raise ValueError("a photo read from FHIR is already on the server; no source Media")

    software_ref = software_device_full_url(ctx.software_version)
    software = build_software_device(ctx.canonical, ctx.software_version)
    entries.append(_identifier_entry(software_ref, software))

    model_refs: list[str] = []
    for model, _ in report.model_results:
        ref = model_device_full_url(model)
        if ref in model_refs:
            continue
        model_refs.append(ref)
        device = build_model_device(model, ctx.canonical)
        identifier = model_device_identifier(model, ctx.canonical)
        entries.append(_entry(ref, device, _search("identifier", identifier["system"], identifier["value"])))

    heatmap_refs = {
        (idempotency.model_key(h.model), h.analysis): observations.full_url(heatmap_key(ctx, h))
        for h in heatmaps
    }
    produced = {
        (idempotency.model_key(model), observations.analysis_of(result))
        for model, result in report.model_results
    }
    orphans = set(heatmap_refs) - produced
    if orphans:
        raise ValueError(f"heat maps for results not in the report: {sorted(orphans)}")

    results: list[tuple[str, Resource]] = []
    quality = observations.build_quality_observation(report.quality, ctx, device_ref=software_ref)
    if report.frames is not None:
        add_frame_counts(quality, report.frames, ctx)
        validate_resource(quality)
    results.append((observations.quality_key(ctx), quality))
    for model, result in report.model_results:
        analysis = observations.analysis_of(result)
        supporting = [
            ref for key, ref in heatmap_refs.items() if key == (idempotency.model_key(model), analysis)
        ]
        obs = observations.build_result_observation(
            result, model, ctx, device_ref=model_device_full_url(model), supporting=supporting
        )
        steadiness = report.steadiness_of(analysis)
        if report.frames is not None and steadiness is not None:
            weighed = (
                isinstance(result, TumourAssessment)
                and result.record is not None
                and bool(result.record.used)
            )
            add_steadiness(obs, report.frames, steadiness, ctx, before_record=weighed)
            validate_resource(obs)
        results.append((observations.model_result_key(ctx, model, analysis), obs))
    for item in report.not_performed:
        obs = observations.build_not_performed_observation(item, ctx, device_ref=software_ref)
        results.append((observations.not_performed_key(ctx, item.analysis), obs))
    for heatmap in heatmaps:
        media = build_heatmap_media(heatmap, ctx, device_ref=model_device_full_url(heatmap.model))
        results.append((heatmap_key(ctx, heatmap), media))

    seen: set[str] = set()
    for key, resource in results:
        if key in seen:
            raise ValueError(f"two results share the identifier {key}: the report repeats an analysis")
        seen.add(key)
        entries.append(_identifier_entry(observations.full_url(key), resource))

    write_key = idempotency.write_key(seen)
    provenance = build_provenance(
        ctx,
        key=write_key,
        targets=[observations.full_url(key) for key, _ in results],
        model_devices=model_refs,
        software_device=software_ref,
        read_patient=_read_patient(report, ctx),
    )
    tag = write_tag(ctx, write_key)
    entries.append(
        _entry(provenance_full_url(write_key), provenance, _search("_tag", tag["system"], tag["code"]))
    )

    bundle: Resource = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    validate_resource(bundle)
    return bundle


def merge_transactions(bundles: Sequence[Resource]) -> Resource:
    """One transaction from several photos' Bundles (a CLI run lands together or not at all).

    Entries shared between photos — the software and model Devices — have the same
    deterministic fullUrl and appear once.
    """
    if len(bundles) == 1:
        return bundles[0]
    entries: list[dict[str, Any]] = []
    seen: set[str] = set()
    for bundle in bundles:
        for entry in bundle.get("entry", []):
            if entry["fullUrl"] in seen:
                continue
            seen.add(entry["fullUrl"])
            entries.append(entry)
    merged: Resource = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    validate_resource(merged)
    return merged
