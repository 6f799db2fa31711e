"""Results → Observations: TIS, condition probabilities, tumour, Hb estimate, photo quality, "not performed".

Every Observation carries the FHIR.md contract: ``meta.security`` AIAST, ``status``
preliminary, category imaging, subject/encounter from the photo, ``effectiveDateTime`` = when
the photo was taken (its own offset), ``issued``, ``derivedFrom`` the photo, ``device`` the
model (or Photomarker for its own checks) and an idempotency ``identifier``.

Decisions worth knowing:
- The Hb prediction interval is a *component* (``valueRange``), not ``referenceRange``:
  ``referenceRange`` means "the normal range" and EHRs display it as such, so putting the
  model's uncertainty there would make a clinician read "outside 9.8–12.9" as abnormal.
  ``referenceRange`` carries the WHO anaemia cut-off instead, when the patient's facts give one.
- An abstaining model's numbers are kept (the spread is the point), but ``interpretation`` says
  "No conclusion (model abstained)" and a note says not to rely on them; no L/N is given.
- A heat map that explains a result is linked from the Observation with the core
  ``workflow-supportingInfo`` extension (R4 Observation has no element for it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fhir_mappings import codes, idempotency
from fhir_mappings.context import ResultContext, fhir_datetime
from fhir_mappings.device import model_device_full_url, software_device_full_url
from fhir_mappings.validation import Resource, validate_resource
from fhir_mappings.wording import percent
from models.anaemia import anaemia_cutoff, is_anaemic
from models.results import (
    Abstention,
    AnalysisName,
    AnalysisNotPerformed,
    ClassProbability,
    Concept,
    ConditionProbabilities,
    HbEstimate,
    ModelInfo,
    QualityVerdict,
    TisScore,
    TumourAssessment,
)

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


# --- shared parts ------------------------------------------------------------------------------


def _observation(
    ctx: ResultContext, *, code: dict[str, Any], key: str, device_ref: str, status: str = "preliminary"
) -> Resource:
    obs: Resource = {
        "resourceType": "Observation",
        "meta": {"security": [dict(codes.AIAST)]},
        "identifier": [{"system": codes.result_identifier_system(ctx.canonical), "value": key}],
        "status": status,
        "category": [{"coding": [dict(codes.CATEGORY_IMAGING)]}],
        "code": code,
    }
    if ctx.photo.subject:
        obs["subject"] = {"reference": ctx.photo.subject}
    if ctx.photo.encounter:
        obs["encounter"] = {"reference": ctx.photo.encounter}
    if ctx.photo.taken_at is not None:
        obs["effectiveDateTime"] = fhir_datetime(ctx.photo.taken_at)
    obs["issued"] = ctx.issued_instant
    obs["device"] = {"reference": device_ref}
    obs["derivedFrom"] = [{"reference": source} for source in ctx.sources]
    return obs


def _model_parts(obs: Resource, model: ModelInfo, notes: list[str], supporting: Sequence[str]) -> None:
    """What every model result adds: method, reference-model warning, notes, heat-map links."""
    obs["method"] = {"text": f"AI analysis of a photograph by {model.display_name} {model.version}"}
    if model.reference_only:
        notes = [
            f"{codes.REFERENCE_ONLY_TEXT}: produced by {model.display_name} {model.version}, "
            "a reference model (its model card says why: synthetic training data or "
            "performance short of clinical use).",
            *notes,
        ]
    if notes:
        obs["note"] = [{"text": text} for text in notes]
    if supporting:
        obs["extension"] = [
            {
                "url": codes.EXT_SUPPORTING_INFO,
                "valueReference": {"reference": ref, "display": "Heat map explaining this result"},
            }
            for ref in supporting
        ]


def _probability(value: float) -> dict[str, Any]:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"a probability must be within 0–1, got {value}")
    return {"value": round(value, 4), "unit": "1", "system": codes.UCUM, "code": "1"}


def _g_dl(value: float) -> dict[str, Any]:
    return {"value": round(value, 1), "unit": "g/dL", "system": codes.UCUM, "code": "g/dL"}


def _body_site(ctx: ResultContext, own: Concept | None) -> dict[str, Any] | None:
    # The sender's bodySite (with their own words for it) wins over the body-part model's guess:
    # they saw the patient.
    if ctx.photo.body_site:
        return codes.site_codeable(ctx.photo.body_site, ctx.photo.body_site_text, ctx.canonical)
    return codes.concept_codeable(own, ctx.canonical) if own else None


def _abstention(abstention: Abstention, ctx: ResultContext, what: str) -> tuple[dict[str, Any], str]:
    """(interpretation, note) saying plainly that the model declined to conclude."""
    details = [abstention.reason]
    if abstention.spread is not None:
        details.append(f"spread {abstention.spread:.3g}")
    if abstention.ood_score is not None:
        details.append(f"out-of-distribution score {abstention.ood_score:.3g}")
    reason = "; ".join(details)
    interpretation = codes.local_codeable(
        "model-abstained", ctx.canonical, f"No conclusion: the model abstained ({reason})"
    )
    return interpretation, f"The model abstained ({reason}). Do not rely on {what}."


def _class_components(classes: Sequence[ClassProbability], ctx: ResultContext) -> list[dict[str, Any]]:
    ordered = sorted(classes, key=lambda c: c.probability, reverse=True)
    return [
        {
            "code": codes.concept_codeable(c.concept, ctx.canonical),
            "valueQuantity": _probability(c.probability),
        }
        for c in ordered
    ]


def _finish(obs: Resource) -> Resource:
    validate_resource(obs)
    return obs


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
    obs = _observation(
        ctx,
        code=codes.local_codeable("tis", ctx.canonical),
        key=model_result_key(ctx, model, "tis"),
        device_ref=device_ref or model_device_full_url(model),
    )
    obs["valueInteger"] = score.total
    notes: list[str] = []
    if score.abstention is not None:
        # The band would read as a conclusion; an abstained score says it is none.
        interpretation, note = _abstention(score.abstention, ctx, "this score")
        obs["interpretation"] = [interpretation]
        notes.append(note)
    else:
        obs["interpretation"] = [codes.local_codeable(f"tis-{score.band.value}", ctx.canonical)]
    site = _body_site(ctx, score.body_site)
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
    _model_parts(obs, model, notes, supporting)
    return _finish(obs)


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
    obs = _observation(
        ctx,
        code=codes.local_codeable(codes.ANALYSIS_CODES[panel.panel], ctx.canonical),
        key=model_result_key(ctx, model, panel.panel),
        device_ref=device_ref or model_device_full_url(model),
    )
    notes: list[str] = []
    if panel.abstention is not None:
        interpretation, note = _abstention(panel.abstention, ctx, "these probabilities")
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
    site = _body_site(ctx, panel.body_site)
    if site:
        obs["bodySite"] = site
    obs["component"] = _class_components(panel.classes, ctx)
    _model_parts(obs, model, notes, supporting)
    return _finish(obs)


def build_tumour_observation(
    assessment: TumourAssessment,
    model: ModelInfo,
    ctx: ResultContext,
    *,
    device_ref: str | None = None,
    supporting: Sequence[str] = (),
) -> Resource:
    """Probability of malignancy as the value, one probability component per tumour type."""
    obs = _observation(
        ctx,
        code=codes.local_codeable("skin-tumour-malignancy", ctx.canonical),
        key=model_result_key(ctx, model, "skin-tumour"),
        device_ref=device_ref or model_device_full_url(model),
    )
    obs["valueQuantity"] = _probability(assessment.malignancy_probability)
    notes: list[str] = []
    if assessment.abstention is not None:
        interpretation, note = _abstention(assessment.abstention, ctx, "these probabilities")
        obs["interpretation"] = [interpretation]
        notes.append(note)
    elif assessment.types:
        top = max(assessment.types, key=lambda c: c.probability)
        obs["interpretation"] = [
            {"text": f"Most likely type: {top.concept.display} (probability {percent(top.probability)})"}
        ]
    site = _body_site(ctx, assessment.body_site)
    if site:
        obs["bodySite"] = site
    if assessment.types:
        obs["component"] = _class_components(assessment.types, ctx)
    _model_parts(obs, model, notes, supporting)
    return _finish(obs)


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
    obs = _observation(
        ctx,
        code=code,
        key=model_result_key(ctx, model, "hb"),
        device_ref=device_ref or model_device_full_url(model),
    )
    obs["valueQuantity"] = _g_dl(estimate.g_dl)
    notes: list[str] = []
    cutoff = anaemia_cutoff(ctx.patient_facts)
    if estimate.abstention is not None:
        interpretation, note = _abstention(estimate.abstention, ctx, "this estimate")
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
                "low": _g_dl(cutoff),
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
            "valueRange": {"low": _g_dl(estimate.low), "high": _g_dl(estimate.high)},
        }
    ]
    notes.append(
        f"Estimated from a photograph, not a blood test; {level} prediction interval "
        f"{estimate.low:.1f}–{estimate.high:.1f} g/dL."
    )
    _model_parts(obs, model, notes, supporting)
    return _finish(obs)


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
    obs = _observation(
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
    return _finish(obs)


def build_not_performed_observation(
    item: AnalysisNotPerformed, ctx: ResultContext, *, device_ref: str | None = None
) -> Resource:
    """An analysis that was asked for and could not run: cancelled, never a value."""
    obs = _observation(
        ctx,
        code=codes.local_codeable(codes.ANALYSIS_CODES[item.analysis], ctx.canonical),
        key=not_performed_key(ctx, item.analysis),
        device_ref=device_ref or software_device_full_url(ctx.software_version),
        status="cancelled",
    )
    obs["dataAbsentReason"] = {"coding": [dict(codes.NOT_PERFORMED)], "text": "Not performed"}
    obs["note"] = [{"text": item.reason}]
    return _finish(obs)
