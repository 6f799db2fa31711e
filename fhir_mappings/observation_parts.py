"""The parts every Observation is assembled from: its skeleton, model provenance, values.

Split out of ``fhir_mappings.observations`` (which keeps one builder per kind of result and the
identifier keys) so the FHIR.md contract shared by all of them is written once. ``observation``
gives every Observation ``meta.security`` AIAST, ``status`` preliminary, category imaging,
subject/encounter from the photo, ``effectiveDateTime`` = when the photo was taken (its own
offset), ``issued``, ``derivedFrom`` the photo, ``device`` the model (or Photomarker for its own
checks) and an idempotency ``identifier``; ``finish`` validates the result before it leaves.

Decisions worth knowing:
- A heat map that explains a result is linked from the Observation with the core
  ``workflow-supportingInfo`` extension (R4 Observation has no element for it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fhir_mappings import codes
from fhir_mappings.context import ResultContext, fhir_datetime
from fhir_mappings.validation import Resource, validate_resource
from models.results import Abstention, ClassProbability, Concept, ModelInfo


def observation(
    ctx: ResultContext, *, code: dict[str, Any], key: str, device_ref: str, status: str = "preliminary"
) -> Resource:
    """The skeleton every Observation shares (see the module docstring); the builder adds the value."""
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


def add_model_parts(obs: Resource, model: ModelInfo, notes: list[str], supporting: Sequence[str]) -> None:
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


def probability(value: float) -> dict[str, Any]:
    """A 0–1 probability as a UCUM "1" Quantity; anything outside 0–1 is a bug, not data."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"a probability must be within 0–1, got {value}")
    return {"value": round(value, 4), "unit": "1", "system": codes.UCUM, "code": "1"}


def g_dl(value: float) -> dict[str, Any]:
    """A haemoglobin concentration as a UCUM g/dL Quantity, to the 0.1 g/dL labs report."""
    return {"value": round(value, 1), "unit": "g/dL", "system": codes.UCUM, "code": "g/dL"}


def body_site(ctx: ResultContext, own: Concept | None) -> dict[str, Any] | None:
    """The Observation's bodySite: the sender's, else the model's own finding, else none."""
    # The sender's bodySite (with their own words for it) wins over the body-part model's guess:
    # they saw the patient.
    if ctx.photo.body_site:
        return codes.site_codeable(ctx.photo.body_site, ctx.photo.body_site_text, ctx.canonical)
    return codes.concept_codeable(own, ctx.canonical) if own else None


def abstained(abstention: Abstention, ctx: ResultContext, what: str) -> tuple[dict[str, Any], str]:
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


def class_components(classes: Sequence[ClassProbability], ctx: ResultContext) -> list[dict[str, Any]]:
    """One probability component per class, most likely first."""
    ordered = sorted(classes, key=lambda c: c.probability, reverse=True)
    return [
        {
            "code": codes.concept_codeable(c.concept, ctx.canonical),
            "valueQuantity": probability(c.probability),
        }
        for c in ordered
    ]


def finish(obs: Resource) -> Resource:
    """Validate the finished Observation, so nothing invalid is ever written back."""
    validate_resource(obs)
    return obs
