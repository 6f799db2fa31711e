"""What a clinician or an EHR sees in the Observations Photomarker writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from fhir_mappings import codes
from fhir_mappings.bundle import build_result_bundle
from fhir_mappings.media import HeatMap
from fhir_mappings.observations import (
    build_condition_observation,
    build_hb_observation,
    build_not_performed_observation,
    build_quality_observation,
    build_tis_observation,
    build_tumour_observation,
)
from models.results import (
    Abstention,
    AnalysisNotPerformed,
    AnalysisReport,
    ClassProbability,
    Concept,
    ConditionProbabilities,
    HbEstimate,
    PatientFacts,
    TisScore,
    TumourAssessment,
)
from tests.fhir_validation import (
    CANONICAL,
    assert_valid_fhir,
    sample_context,
    sample_model,
    sample_photo,
    sample_quality,
)

SNOMED = "http://snomed.info/sct"
AD = Concept("24079001", "Atopic dermatitis", SNOMED)
IMPETIGO = Concept("48277006", "Impetigo", SNOMED)
HB = HbEstimate(g_dl=11.6, low=10.2, high=13.0)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def codes_of(concept: dict[str, Any]) -> set[str]:
    return {coding["code"] for coding in concept.get("coding", [])}


def note_text(obs: dict[str, Any]) -> str:
    return " ".join(note["text"] for note in obs.get("note", []))


@pytest.mark.parametrize(
    ("items", "total", "band"),
    [((0, 1, 1), 2, "tis-mild"), ((1, 1, 1), 3, "tis-moderate"), ((2, 2, 1), 5, "tis-moderate"),
     ((3, 3, 0), 6, "tis-severe"), ((3, 3, 3), 9, "tis-severe")],
)  # fmt: skip
def test_tis_total_items_and_band(items: tuple[int, int, int], total: int, band: str) -> None:
    score = TisScore(*items)
    obs = build_tis_observation(score, sample_model(), sample_context())
    assert obs["valueInteger"] == total
    assert [c["valueInteger"] for c in obs["component"]] == list(items)
    assert [codes_of(c["code"]) for c in obs["component"]] == [
        {"tis-erythema"},
        {"tis-oedema-papulation"},
        {"tis-excoriation"},
    ]
    assert codes_of(obs["interpretation"][0]) == {band}
    assert obs["interpretation"][0]["text"]  # the band in words, not only a code


def test_every_result_carries_the_contract_elements() -> None:
    ctx = sample_context()
    model = sample_model()
    built = [
        build_tis_observation(TisScore(1, 1, 1), model, ctx),
        build_condition_observation(ConditionProbabilities((ClassProbability(AD, 0.9),)), model, ctx),
        build_tumour_observation(TumourAssessment(0.2, ()), model, ctx),
        build_hb_observation(HB, model, ctx),
        build_quality_observation(sample_quality(), ctx),
        build_not_performed_observation(AnalysisNotPerformed("hb", "No Hb model is installed."), ctx),
    ]
    for obs in built:
        assert_valid_fhir(obs)
        assert obs["meta"]["security"] == [codes.AIAST]
        assert obs["category"][0]["coding"][0]["code"] == "imaging"
        assert obs["subject"] == {"reference": "Patient/p-1001"}
        assert obs["encounter"] == {"reference": "Encounter/e-55"}
        assert obs["derivedFrom"] == [{"reference": "Media/photo-17/_history/3"}]
        assert obs["effectiveDateTime"] == "2026-03-01T09:30:00+09:00"
        assert obs["issued"] == "2026-03-01T10:02:03+09:00"
        assert obs["identifier"][0]["system"] == f"{CANONICAL}/identifier/result"
        assert obs["device"]["reference"].startswith("urn:uuid:")
    assert {obs["status"] for obs in built[:-1]} == {"preliminary"}


def test_photo_time_keeps_its_own_offset_and_a_naive_time_keeps_only_its_date() -> None:
    western = datetime(2026, 2, 28, 23, 45, tzinfo=timezone(timedelta(hours=-5)))
    obs = build_tis_observation(
        TisScore(0, 0, 0), sample_model(), sample_context(sample_photo(taken_at=western))
    )
    assert obs["effectiveDateTime"] == "2026-02-28T23:45:00-05:00"
    naive = datetime(2026, 3, 1, 23, 50)  # EXIF without OffsetTime: the zone is unknown
    obs = build_tis_observation(
        TisScore(0, 0, 0), sample_model(), sample_context(sample_photo(taken_at=naive))
    )
    assert obs["effectiveDateTime"] == "2026-03-01"
    obs = build_tis_observation(
        TisScore(0, 0, 0), sample_model(), sample_context(sample_photo(taken_at=None))
    )
    assert "effectiveDateTime" not in obs


def test_issued_must_have_a_zone() -> None:
    with pytest.raises(ValueError, match="time zone"):
        sample_context(issued=datetime(2026, 3, 1, 10, 0))
    utc = sample_context(issued=datetime(2026, 3, 1, 1, 0, 0, 500000, tzinfo=UTC))
    assert utc.issued_instant == "2026-03-01T01:00:00.500+00:00"


def test_probabilities_are_ucum_1_highest_first_with_the_top_class_said() -> None:
    panel = ConditionProbabilities((ClassProbability(IMPETIGO, 0.15), ClassProbability(AD, 0.85)))
    obs = build_condition_observation(panel, sample_model(), sample_context())
    assert "valueQuantity" not in obs and "valueInteger" not in obs  # a panel has no single value
    assert [codes_of(c["code"]) for c in obs["component"]] == [{"24079001"}, {"48277006"}]
    for component in obs["component"]:
        quantity = component["valueQuantity"]
        assert (quantity["system"], quantity["code"]) == ("http://unitsofmeasure.org", "1")
    assert obs["component"][0]["valueQuantity"]["value"] == 0.85
    assert "Atopic dermatitis" in obs["interpretation"][0]["text"]


def test_local_conditions_carry_the_local_code_and_icd10() -> None:
    panel = ConditionProbabilities((ClassProbability(codes.ECZEMA_HERPETICUM, 1.0),))
    obs = build_condition_observation(panel, sample_model(), sample_context())
    codings = obs["component"][0]["code"]["coding"]
    assert codings[0] == {
        "system": f"{CANONICAL}/CodeSystem/photomarker",
        "code": "eczema-herpeticum",
        "display": codes.ECZEMA_HERPETICUM.display,
    }
    assert codings[1]["system"] == "http://hl7.org/fhir/sid/icd-10" and codings[1]["code"] == "B00.0"


def test_abstention_is_said_plainly_and_replaces_any_conclusion() -> None:
    abstained = Abstention("ensemble disagreement", spread=0.4)
    panel = ConditionProbabilities((ClassProbability(AD, 0.6), ClassProbability(IMPETIGO, 0.4)), abstained)
    tumour = TumourAssessment(0.5, (ClassProbability(AD, 1.0),), abstained)
    hb = HbEstimate(g_dl=9.0, low=6.0, high=13.0, abstention=abstained)
    facts = PatientFacts(age_months=400, sex="male")
    ctx = sample_context(patient_facts=facts)
    for obs in (
        build_condition_observation(panel, sample_model(), ctx),
        build_tumour_observation(tumour, sample_model(), ctx),
        build_hb_observation(hb, sample_model(), ctx),
    ):
        assert [codes_of(i) for i in obs["interpretation"]] == [{"model-abstained"}]
        assert "abstained" in obs["interpretation"][0]["text"]
        assert "ensemble disagreement" in note_text(obs)
        assert "Most likely" not in str(obs["interpretation"])
    # 9.0 g/dL would be "Low" for an adult man, but an abstaining model gets no L/N flag.


@pytest.mark.parametrize(
    ("facts", "g_dl", "flag"),
    [
        (PatientFacts(age_months=400, sex="male"), 12.5, "L"),  # men: < 13.0
        (PatientFacts(age_months=400, sex="female"), 12.5, "N"),  # women: < 12.0
        (PatientFacts(age_months=400, sex="female", pregnant=True), 10.9, "L"),  # pregnancy: < 11.0
        (PatientFacts(age_months=36), 11.0, "N"),  # 24–59 months: < 11.0
        (PatientFacts(age_months=36), 10.9, "L"),
    ],
)
def test_hb_interpretation_follows_who_cutoffs(facts: PatientFacts, g_dl: float, flag: str) -> None:
    obs = build_hb_observation(
        HbEstimate(g_dl, g_dl - 1, g_dl + 1), sample_model(), sample_context(patient_facts=facts)
    )
    assert codes_of(obs["interpretation"][0]) == {flag}
    assert obs["referenceRange"][0]["low"]["code"] == "g/dL"
    assert "WHO" in obs["referenceRange"][0]["text"]


def test_hb_without_patient_facts_has_no_flag_and_says_why() -> None:
    obs = build_hb_observation(HB, sample_model(), sample_context())
    assert "interpretation" not in obs and "referenceRange" not in obs
    assert "No WHO anaemia cut-off applies" in note_text(obs)


def test_hb_value_interval_and_coding() -> None:
    obs = build_hb_observation(HB, sample_model(), sample_context())
    assert obs["valueQuantity"] == {
        "value": 11.6,
        "unit": "g/dL",
        "system": "http://unitsofmeasure.org",
        "code": "g/dL",
    }
    interval = obs["component"][0]
    assert codes_of(interval["code"]) == {"prediction-interval"}
    assert interval["code"]["text"] == "95 % prediction interval"
    assert (interval["valueRange"]["low"]["value"], interval["valueRange"]["high"]["value"]) == (10.2, 13.0)
    # The interval is uncertainty, not a normal range: it must not land in referenceRange.
    assert all(r.get("low", {}).get("value") != 10.2 for r in obs.get("referenceRange", []))
    assert codes_of(obs["code"]) == {"hb-estimate-conjunctiva-photo"}  # no LOINC 718-7 by default
    assert codes_of(obs["bodySite"]) == {"29445007"}


def test_loinc_718_7_only_when_the_site_asks() -> None:
    obs = build_hb_observation(HB, sample_model(), sample_context(hb_add_loinc_718_7=True))
    assert codes_of(obs["code"]) == {"hb-estimate-conjunctiva-photo", "718-7"}


def test_reference_models_are_flagged_on_every_result_they_produce() -> None:
    reference = sample_model(reference_only=True)
    clinical = sample_model(reference_only=False, weights_sha256="b" * 64)
    ctx = sample_context()
    for model, flagged in ((reference, True), (clinical, False)):
        for obs in (
            build_tis_observation(TisScore(1, 0, 0), model, ctx),
            build_hb_observation(HB, model, ctx),
            build_tumour_observation(TumourAssessment(0.1, ()), model, ctx),
        ):
            assert ("not for clinical use" in note_text(obs)) is flagged


def test_not_performed_is_cancelled_with_a_reason_and_never_a_value() -> None:
    reason = "No skin model is installed; no score was produced."
    obs = build_not_performed_observation(AnalysisNotPerformed("tis", reason), sample_context())
    assert obs["status"] == "cancelled"
    assert obs["dataAbsentReason"]["coding"][0]["code"] == "not-performed"
    assert note_text(obs) == reason
    assert codes_of(obs["code"]) == {"tis"}
    assert not [key for key in obs if key.startswith("value") or key in ("component", "interpretation")]


def test_quality_retake_names_the_failed_check_and_the_advice() -> None:
    obs = build_quality_observation(sample_quality(acceptable=False), sample_context())
    assert codes_of(obs["valueCodeableConcept"]) == {"photo-quality-retake"}
    blur = next(c for c in obs["component"] if codes_of(c["code"]) == {"photo-quality-blur"})
    assert codes_of(blur["interpretation"][0]) == {"check-failed"}
    assert "Hold the phone still." in note_text(obs)
    good = build_quality_observation(sample_quality(acceptable=True), sample_context())
    assert codes_of(good["valueCodeableConcept"]) == {"photo-quality-acceptable"}


def test_invalid_numbers_are_refused_not_written() -> None:
    with pytest.raises(ValueError, match="0–1"):
        build_tumour_observation(TumourAssessment(1.2, ()), sample_model(), sample_context())
    with pytest.raises(ValueError, match="low"):
        build_hb_observation(HbEstimate(11.0, 12.0, 10.0), sample_model(), sample_context())
    with pytest.raises(ValueError, match="not a JSON number"):
        build_hb_observation(HbEstimate(float("nan"), 10.0, 12.0), sample_model(), sample_context())


def test_heat_map_is_linked_from_its_result_and_derived_via_provenance() -> None:
    model = sample_model()
    report = AnalysisReport(quality=sample_quality(), model_results=((model, TisScore(1, 1, 1)),))
    bundle = build_result_bundle(report, sample_context(), heatmaps=[HeatMap("tis", model, PNG)])
    assert_valid_fhir(bundle)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for entry in bundle["entry"]:
        by_type.setdefault(entry["resource"]["resourceType"], []).append(entry)
    (heat,) = by_type["Media"]
    tis = next(e for e in by_type["Observation"] if codes_of(e["resource"]["code"]) == {"tis"})
    assert tis["resource"]["extension"][0]["valueReference"]["reference"] == heat["fullUrl"]
    assert heat["resource"]["content"]["contentType"] == "image/png"
    assert heat["resource"]["meta"]["security"] == [codes.AIAST]
    (provenance,) = by_type["Provenance"]
    assert {"reference": heat["fullUrl"]} in provenance["resource"]["target"]
    assert provenance["resource"]["entity"] == [
        {"role": "source", "what": {"reference": "Media/photo-17/_history/3"}}
    ]


def test_a_heat_map_without_its_result_is_refused() -> None:
    report = AnalysisReport(quality=sample_quality())
    with pytest.raises(ValueError, match="heat maps"):
        build_result_bundle(report, sample_context(), heatmaps=[HeatMap("tis", sample_model(), PNG)])


def test_the_senders_body_site_text_wins_over_the_code_display_and_the_models_guess() -> None:
    forearm = Concept("14975008", "Forearm structure", SNOMED)
    photo = sample_photo(body_site=(forearm,), body_site_text="Left forearm")
    guessed = Concept("upper-limb", "Upper limb")
    obs = build_tis_observation(TisScore(1, 2, 1, body_site=guessed), sample_model(), sample_context(photo))
    assert codes_of(obs["bodySite"]) == {"14975008"} and obs["bodySite"]["text"] == "Left forearm"
    assert_valid_fhir(obs)
    # With no site from the sender, the body-part model's guess is written, in its own words.
    obs = build_tis_observation(TisScore(1, 2, 1, body_site=guessed), sample_model(), sample_context())
    assert obs["bodySite"]["text"] == "Upper limb"
