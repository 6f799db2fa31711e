"""Results → Observations: TIS, condition probabilities, tumour, Hb estimate, photo quality, "not performed".

One builder per kind of result, plus the identifier key each result is filed under (the Bundle
indexes and links results by them). The parts every Observation shares — the FHIR.md contract
(AIAST, preliminary, imaging, subject/encounter, effective/issued, derivedFrom, device,
identifier), model provenance, heat-map links, abstention wording and value helpers — live in
``fhir_mappings.observation_parts``.

Decisions worth knowing:
- The Hb prediction interval is a *component* (``valueRange``), not ``referenceRange``:
  ``referenceRange`` means "the normal range" and EHRs display it as such, so putting the
  model's uncertainty there would make a clinician read "outside 9.8–12.9" as abnormal.
  ``referenceRange`` carries the WHO anaemia cut-off instead, when the patient's facts give one.
- An abstaining model's numbers are kept (the spread is the point), but ``interpretation`` says
  "No conclusion (model abstained)" and a note says not to rely on them; no L/N is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from fhir_mappings import codes, idempotency
from fhir_mappings.context import ResultContext
from fhir_mappings.device import model_device_full_url, software_device_full_url
from fhir_mappings.observation_parts import (
    abstained,
    add_model_parts,
    body_site,
    class_components,
    finish,
    g_dl,
    observation,
    probability,
)
from fhir_mappings.record_weighing import photo_only_component, record_note
from fhir_mappings.validation import Resource
from fhir_mappings.wording import percent
from models.anaemia import anaemia_cutoff, is_anaemic
from models.results import (
    AnalysisName,
    AnalysisNotPerformed,
    ClassProbability,
    ConditionProbabilities,
    HbEstimate,
    ModelInfo,
    QualityVerdict,
    TisScore,
    TumourAssessment,
    suggested_class,
    weighs_classes,
)

# How a tumour Observation names the type its model's balanced rule chose (the clinician page
# keeps this line as it is rather than naming the most likely type itself).
SUGGESTED_TYPE: Final = "Suggested type:"
ModelResult = TisScore | ConditionProbabilities | TumourAssessment | HbEstimate


def analysis_of(result: ModelResult | QualityVerdict) -> AnalysisName:
    """Which analysis produced ``result`` (the name idempotency keys and codes use)."""
    if isinstance(result, TisScore):
        return "tis"
    if isinstance(result, ConditionProbabilities):
        return result.panel
    if isinstance(result, TumourAssessment):
        return "skin-tumour"
    if isinstance(result, HbEstimate):
        return "hb"
    return "photo-quality"


def model_result_key(ctx: ResultContext, model: ModelInfo, analysis: AnalysisName) -> str:
    """Identifier value of a model's result on this photo."""
    return idempotency.result_key(ctx.photo_key, idempotency.model_key(model), analysis)


def quality_key(ctx: ResultContext) -> str:
    return idempotency.result_key(
        ctx.photo_key, idempotency.software_key(ctx.software_version), "photo-quality"
    )


def not_performed_key(ctx: ResultContext, analysis: AnalysisName) -> str:
    return idempotency.result_key(
        ctx.photo_key, idempotency.software_key(ctx.software_version), f"{analysis}:not-performed"
    )


def full_url(key: str) -> str:
    """The ``urn:uuid:`` a result has inside a Bundle: its identifier value."""
    return f"urn:uuid:{key}"


# --- the result builders -----------------------------------------------------------------------


def build_tis_observation(
    score: TisScore,
    model: ModelInfo,
    ctx: ResultContext,
    *,
    device_ref: str | None = None,
    supporting: Sequence[str] = (),
) -> Resource:
    """Three Item Severity: total 0–9, one component per item, band as interpretation."""
    obs = observation(
        ctx,
        code=codes.local_codeable("tis", ctx.canonical),
        key=model_result_key(ctx, model, "tis"),
        device_ref=device_ref or model_device_full_url(model),
    )
    obs["valueInteger"] = score.total
    notes: list[str] = []
    if score.abstention is not None:
        # The band would read as a conclusion; an abstained score says it is none.
        interpretation, note = abstained(score.abstention, ctx, "this score")
        obs["interpretation"] = [interpretation]
        notes.append(note)
    else:
        obs["interpretation"] = [codes.local_codeable(f"tis-{score.band.value}", ctx.canonical)]
    site = body_site(ctx, score.body_site)
    if site:
        obs["bodySite"] = site
    obs["component"] = [
        {"code": codes.local_codeable(code, ctx.canonical), "valueInteger": value}
        for code, value in (
            ("tis-erythema", score.erythema),
            ("tis-oedema-papulation", score.oedema_papulation),
            ("tis-excoriation", score.excoriation),
        )
    ]
    if score.lesion_count > 1:
        notes.append(f"Lesions assessed: {score.lesion_count}.")
    add_model_parts(obs, model, notes, supporting)
    return finish(obs)


def build_condition_observation(
    panel: ConditionProbabilities,
    model: ModelInfo,
    ctx: ResultContext,
    *,
    device_ref: str | None = None,
    supporting: Sequence[str] = (),
) -> Resource:
    """A classifier panel: no value, one probability component per class (highest first)."""
    if not panel.classes:
        raise ValueError("a condition panel needs at least one class")
    obs = observation(
        ctx,
        code=codes.local_codeable(codes.ANALYSIS_CODES[panel.panel], ctx.canonical),
        key=model_result_key(ctx, model, panel.panel),
        device_ref=device_ref or model_device_full_url(model),
    )
    notes: list[str] = []
    if panel.abstention is not None:
        interpretation, note = abstained(panel.abstention, ctx, "these probabilities")
        obs["interpretation"] = [interpretation]
        notes.append(note)
    elif panel.panel == "skin-diagnosis":
        ranked = "; ".join(
            f"{rank}. {item.concept.display} ({percent(item.probability)})"
            for rank, item in enumerate(panel.top_k(3), start=1)
        )
        obs["interpretation"] = [{"text": f"Top 3: {ranked}"}]
    else:
        top = panel.top
        obs["interpretation"] = [
            {"text": f"Most likely: {top.concept.display} (probability {percent(top.probability)})"}
        ]
    if panel.lesion_count > 1:
        notes.append(f"Lesions assessed: {panel.lesion_count} (probabilities weighted by lesion area).")
    site = body_site(ctx, panel.body_site)
    if site:
        obs["bodySite"] = site
    obs["component"] = class_components(panel.classes, ctx)
    add_model_parts(obs, model, notes, supporting)
    return finish(obs)


def build_tumour_observation(
    assessment: TumourAssessment,
    model: ModelInfo,
    ctx: ResultContext,
    *,
    device_ref: str | None = None,
    supporting: Sequence[str] = (),
) -> Resource:
    """Probability of malignancy as the value, one probability component per tumour type."""
    obs = observation(
        ctx,
        code=codes.local_codeable("skin-tumour-malignancy", ctx.canonical),
        key=model_result_key(ctx, model, "skin-tumour"),
        device_ref=device_ref or model_device_full_url(model),
    )
    obs["valueQuantity"] = probability(assessment.malignancy_probability)
    notes: list[str] = []
    if assessment.abstention is not None:
        interpretation, note = abstained(assessment.abstention, ctx, "these probabilities")
        obs["interpretation"] = [interpretation]
        notes.append(note)
    elif assessment.types:
        obs["interpretation"] = [{"text": _type_named(assessment.types)}]
    record = assessment.record
    if record is not None:
        notes.append(record_note(record))
    site = body_site(ctx, assessment.body_site)
    if site:
        obs["bodySite"] = site
    if assessment.types:
        obs["component"] = class_components(assessment.types, ctx)
    if record is not None and record.used:
        obs.setdefault("component", []).append(photo_only_component(record, ctx))
    add_model_parts(obs, model, notes, supporting)
    return finish(obs)


def _type_named(types: Sequence[ClassProbability]) -> str:
    """The tumour type the interpretation names, and by which rule (the card's six-class figures
    are those of the same rule)."""
    top = max(types, key=lambda c: c.probability)
    named = suggested_class(types) or top
    if not weighs_classes(types):
        return f"Most likely type: {top.concept.display} (probability {percent(top.probability)})"
    text = f"{SUGGESTED_TYPE} {named.concept.display} (probability {percent(named.probability)}"
    if named is not top:
        text += (
            f"; the most likely is {top.concept.display}, {percent(top.probability)}: rarer types are "
            "weighed up against how common they were in training, see the model card"
        )
    return text + ")"


def build_hb_observation(
    estimate: HbEstimate,
    model: ModelInfo,
    ctx: ResultContext,
    *,
    device_ref: str | None = None,
    supporting: Sequence[str] = (),
) -> Resource:
    """Haemoglobin in g/dL; interval as a component; L/N only when WHO cut-offs apply."""
    if not estimate.low <= estimate.high:
        raise ValueError(f"prediction interval low {estimate.low} is above high {estimate.high}")
    if not 0.0 < estimate.interval_level < 1.0:
        raise ValueError(f"interval level must be within (0, 1), got {estimate.interval_level}")
    code = codes.local_codeable("hb-estimate-conjunctiva-photo", ctx.canonical)
    if ctx.hb_add_loinc_718_7:
        # A site setting: LOINC 718-7 is a blood test, so it is never added by default.
        code["coding"].append(dict(codes.LOINC_HB_BLOOD))
    obs = observation(
        ctx,
        code=code,
        key=model_result_key(ctx, model, "hb"),
        device_ref=device_ref or model_device_full_url(model),
    )
    obs["valueQuantity"] = g_dl(estimate.g_dl)
    notes: list[str] = []
    cutoff = anaemia_cutoff(ctx.patient_facts)
    if estimate.abstention is not None:
        interpretation, note = abstained(estimate.abstention, ctx, "this estimate")
        obs["interpretation"] = [interpretation]
        notes.append(note)
    else:
        anaemic = is_anaemic(estimate.g_dl, ctx.patient_facts)
        if anaemic is not None:
            flag = codes.INTERPRETATION_LOW if anaemic else codes.INTERPRETATION_NORMAL
            text = "Below the WHO anaemia cut-off" if anaemic else "At or above the WHO anaemia cut-off"
            obs["interpretation"] = [{"coding": [dict(flag)], "text": text}]
        else:
            notes.append("No WHO anaemia cut-off applies: age, sex or pregnancy is not known.")
    if cutoff is not None:
        obs["referenceRange"] = [
            {
                "low": g_dl(cutoff),
                "text": f"WHO: haemoglobin below {cutoff:g} g/dL is anaemia for this patient",
            }
        ]
    obs["bodySite"] = codes.concept_codeable(codes.CONJUNCTIVAL_STRUCTURE, ctx.canonical)
    level = f"{estimate.interval_level * 100:g} %"
    obs["component"] = [
        {
            "code": codes.local_codeable(
                "prediction-interval", ctx.canonical, f"{level} prediction interval"
            ),
            "valueRange": {"low": g_dl(estimate.low), "high": g_dl(estimate.high)},
        }
    ]
    notes.append(
        f"Estimated from a photograph, not a blood test; {level} prediction interval "
        f"{estimate.low:.1f}–{estimate.high:.1f} g/dL."
    )
    add_model_parts(obs, model, notes, supporting)
    return finish(obs)


def build_result_observation(
    result: ModelResult,
    model: ModelInfo,
    ctx: ResultContext,
    *,
    device_ref: str | None = None,
    supporting: Sequence[str] = (),
) -> Resource:
    """Dispatch one model result to its builder."""
    if isinstance(result, TisScore):
        return build_tis_observation(result, model, ctx, device_ref=device_ref, supporting=supporting)
    if isinstance(result, ConditionProbabilities):
        return build_condition_observation(result, model, ctx, device_ref=device_ref, supporting=supporting)
    if isinstance(result, TumourAssessment):
        return build_tumour_observation(result, model, ctx, device_ref=device_ref, supporting=supporting)
    return build_hb_observation(result, model, ctx, device_ref=device_ref, supporting=supporting)


# --- what Photomarker decides itself -----------------------------------------------------------


def build_quality_observation(
    verdict: QualityVerdict, ctx: ResultContext, *, device_ref: str | None = None
) -> Resource:
    """Acceptable / retake, one component per check with its value, threshold and advice."""
    obs = observation(
        ctx,
        code=codes.local_codeable("photo-quality", ctx.canonical),
        key=quality_key(ctx),
        device_ref=device_ref or software_device_full_url(ctx.software_version),
    )
    verdict_code = "photo-quality-acceptable" if verdict.acceptable else "photo-quality-retake"
    obs["valueCodeableConcept"] = codes.local_codeable(verdict_code, ctx.canonical)
    components = []
    for check in verdict.checks:
        quantity: dict[str, Any] = {"value": round(check.value, 4), "unit": check.unit}
        if check.unit == "1":
            quantity |= {"system": codes.UCUM, "code": "1"}
        outcome = "Passed" if check.passed else "Failed"
        text = f"{outcome} (threshold {check.threshold:g})"
        if check.advice and not check.passed:
            text += f": {check.advice}"
        components.append(
            {
                "code": codes.local_codeable(f"photo-quality-{check.name.value}", ctx.canonical),
                "valueQuantity": quantity,
                "interpretation": [
                    codes.local_codeable(
                        "check-passed" if check.passed else "check-failed", ctx.canonical, text
                    )
                ],
            }
        )
    if components:
        obs["component"] = components
    notes = []
    if verdict.content_found:
        notes.append(f"Found in the photo: {verdict.content_found}.")
    advice = [check.advice for check in verdict.failed if check.advice]
    if not verdict.acceptable:
        notes.append("Please retake the photo" + (": " + " ".join(advice) if advice else "."))
    if notes:
        obs["note"] = [{"text": text} for text in notes]
    return finish(obs)


def build_not_performed_observation(
    item: AnalysisNotPerformed, ctx: ResultContext, *, device_ref: str | None = None
) -> Resource:
    """An analysis that was asked for and could not run: cancelled, never a value."""
    obs = observation(
        ctx,
        code=codes.local_codeable(codes.ANALYSIS_CODES[item.analysis], ctx.canonical),
        key=not_performed_key(ctx, item.analysis),
        device_ref=device_ref or software_device_full_url(ctx.software_version),
        status="cancelled",
    )
    obs["dataAbsentReason"] = {"coding": [dict(codes.NOT_PERFORMED)], "text": "Not performed"}
    obs["note"] = [{"text": item.reason}]
    return finish(obs)
