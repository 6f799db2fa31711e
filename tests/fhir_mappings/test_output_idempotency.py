"""Running the same job twice writes the same Bundle; anything different gets new identifiers."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any

import pytest

from fhir_mappings.bundle import build_result_bundle
from fhir_mappings.context import Requester, ResultContext
from fhir_mappings.media import HeatMap, build_file_media
from fhir_mappings.photo import SourceRef
from models.results import AnalysisNotPerformed, AnalysisReport, HbEstimate, ModelInfo, TisScore
from tests.fhir_validation import (
    CANONICAL,
    ISSUED,
    sample_context,
    sample_model,
    sample_photo,
    sample_quality,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x01" * 16


def report(model: ModelInfo | None = None, score: TisScore | None = None) -> AnalysisReport:
    return AnalysisReport(
        quality=sample_quality(),
        model_results=((model or sample_model(), score or TisScore(2, 1, 1)),),
        not_performed=(AnalysisNotPerformed("hb", "No Hb model is installed."),),
    )


def result_identifiers(bundle: dict[str, Any]) -> dict[str, str]:
    """Observation code → identifier value."""
    return {
        entry["resource"]["code"]["coding"][0]["code"]
        + ("/cancelled" if entry["resource"]["status"] == "cancelled" else ""): entry["resource"][
            "identifier"
        ][0]["value"]
        for entry in bundle["entry"]
        if entry["resource"]["resourceType"] == "Observation"
    }


def provenance_tag(bundle: dict[str, Any]) -> str:
    (entry,) = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Provenance"]
    return str(entry["resource"]["meta"]["tag"][0]["code"])


def test_same_inputs_give_an_identical_bundle() -> None:
    first = build_result_bundle(report(), sample_context(), heatmaps=[HeatMap("tis", sample_model(), PNG)])
    second = build_result_bundle(report(), sample_context(), heatmaps=[HeatMap("tis", sample_model(), PNG)])
    assert json.dumps(first) == json.dumps(second)


def test_every_entry_is_a_conditional_create_and_fullurls_are_unique() -> None:
    bundle = build_result_bundle(report(), sample_context())
    assert bundle["type"] == "transaction"
    for entry in bundle["entry"]:
        assert entry["request"]["method"] == "POST"
        assert entry["request"]["ifNoneExist"]
        assert entry["fullUrl"].startswith("urn:uuid:")
    assert len({e["fullUrl"] for e in bundle["entry"]}) == len(bundle["entry"])
    provenance = bundle["entry"][-1]
    assert provenance["request"]["ifNoneExist"] == (
        f"_tag={CANONICAL}/CodeSystem/photomarker-write-key|{provenance_tag(bundle)}"
    )


def test_a_rerun_later_by_someone_else_keeps_the_identifiers() -> None:
    # Who asked and when are recorded, but they do not make a different result.
    later = sample_context(issued=ISSUED.replace(hour=15), requester=Requester(display="Photomarker inbox"))
    assert result_identifiers(build_result_bundle(report(), later)) == result_identifiers(
        build_result_bundle(report(), sample_context())
    )


@pytest.mark.parametrize(
    "change",
    [
        {"version": "1.2.1"},
        {"weights_sha256": "f" * 64},
        {"name": "tis-heads-v2"},
    ],
)
def test_a_changed_model_gives_new_result_identifiers(change: dict[str, str]) -> None:
    before = result_identifiers(build_result_bundle(report(), sample_context()))
    after = result_identifiers(build_result_bundle(report(model=sample_model(**change)), sample_context()))
    assert after["tis"] != before["tis"]
    # Photomarker's own results do not depend on the model.
    assert after["photo-quality"] == before["photo-quality"]
    assert (
        after["hb-estimate-conjunctiva-photo/cancelled"] == before["hb-estimate-conjunctiva-photo/cancelled"]
    )


def test_a_new_photo_version_gives_new_identifiers_for_everything() -> None:
    before = result_identifiers(build_result_bundle(report(), sample_context()))
    photo_v4 = sample_photo(source=SourceRef("Media", "photo-17", "4"))
    after = result_identifiers(build_result_bundle(report(), sample_context(photo_v4)))
    assert set(before.values()).isdisjoint(after.values())


def test_different_analyses_of_one_photo_never_share_an_identifier() -> None:
    model = sample_model()
    both = AnalysisReport(
        quality=sample_quality(),
        model_results=((model, TisScore(1, 1, 1)), (model, HbEstimate(12.0, 11.0, 13.0))),
    )
    identifiers = result_identifiers(build_result_bundle(both, sample_context()))
    assert len(set(identifiers.values())) == len(identifiers) == 3


def test_the_same_analysis_twice_in_one_report_is_refused() -> None:
    twice = AnalysisReport(
        quality=sample_quality(),
        model_results=((sample_model(), TisScore(1, 1, 1)), (sample_model(), TisScore(2, 2, 2))),
    )
    with pytest.raises(ValueError, match="repeats an analysis"):
        build_result_bundle(twice, sample_context())


def test_the_provenance_key_follows_the_set_of_results() -> None:
    base = provenance_tag(build_result_bundle(report(), sample_context()))
    assert provenance_tag(build_result_bundle(report(), sample_context())) == base
    newer_model = provenance_tag(
        build_result_bundle(report(model=sample_model(version="2.0.0")), sample_context())
    )
    assert newer_model != base


def test_a_file_is_keyed_on_its_bytes() -> None:
    def file_bundle(original: bytes) -> dict[str, Any]:
        sha = hashlib.sha256(original).hexdigest()
        ctx = ResultContext.for_file(
            replace(sample_photo(), source=None),
            file_sha256=sha,
            canonical=CANONICAL,
            issued=ISSUED,
            software_version="0.1.0",
            requester=Requester(display="cli:alice"),
        )
        media = build_file_media(ctx, image=PNG, content_type="image/png")
        return build_result_bundle(report(), ctx, source_media=media)

    one, again, other = file_bundle(b"photo one"), file_bundle(b"photo one"), file_bundle(b"photo two")
    assert json.dumps(one) == json.dumps(again)
    assert set(result_identifiers(one).values()).isdisjoint(result_identifiers(other).values())
    media = one["entry"][0]
    assert media["resource"]["identifier"][0]["value"] == hashlib.sha256(b"photo one").hexdigest()
    # Every result points at the Media written in the same transaction.
    for entry in one["entry"]:
        if entry["resource"]["resourceType"] == "Observation":
            assert entry["resource"]["derivedFrom"] == [{"reference": media["fullUrl"]}]


def test_a_file_context_without_its_media_is_refused() -> None:
    ctx = ResultContext.for_file(
        replace(sample_photo(), source=None),
        file_sha256="0" * 64,
        canonical=CANONICAL,
        issued=ISSUED,
        software_version="0.1.0",
        requester=Requester(display="cli:alice"),
    )
    with pytest.raises(ValueError, match="source Media"):
        build_result_bundle(report(), ctx)
