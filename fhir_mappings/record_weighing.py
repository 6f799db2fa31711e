"""The tumour Observation's account of the patient's record: which facts were weighed in, and the
photo's own figures beside the weighed ones (``models.tumour.record_weighing``)."""

from __future__ import annotations

from typing import Any, Final

from fhir_mappings import codes
from fhir_mappings.context import ResultContext
from fhir_mappings.observation_parts import probability
from fhir_mappings.wording import percent
from models.results import RecordWeighing

PHOTO_ONLY_CODE: Final = "skin-tumour-malignancy-photo-only"
# How the note begins when the record was weighed in (the clinician page keys on it).
WEIGHED_WITH: Final = "Weighed with the patient's record"


def record_note(record: RecordWeighing) -> str:
    """One note: what was weighed in, the photo-alone result, and what was not used (and why)."""
    top = max(record.photo_only_types, key=lambda c: c.probability, default=None)
    alone = f"probability of malignancy {percent(record.photo_only_malignancy)}"
    if top is not None:
        alone += f", most likely type {top.concept.display} ({percent(top.probability)})"
    missing = f" Not used: {'; '.join(record.not_used)}." if record.not_used else ""
    if not record.used:
        return f"From the photo alone: the record gave nothing the model can weigh in.{missing}"
    text = (
        f"{WEIGHED_WITH} ({'; '.join(record.used)}): by how common each type was at this age and site "
        f"in the training data (see the model card). From the photo alone: {alone}.{missing}"
    )
    if any(fact.startswith("body site") for fact in record.used):
        text += (
            " With the body site weighed in, melanoma is named less often than from the photo alone "
            "(cross-validation): a weighed result does not rule melanoma out."
        )
    return text


def photo_only_component(record: RecordWeighing, ctx: ResultContext) -> dict[str, Any]:
    """The photo's own malignancy probability, beside the weighed value (only when they differ)."""
    return {
        "code": codes.local_codeable(PHOTO_ONLY_CODE, ctx.canonical),
        "valueQuantity": probability(record.photo_only_malignancy),
    }
