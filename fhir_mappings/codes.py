"""Every code system, URL and concept Photomarker writes into FHIR, in one table.

Local concepts live in one code system, ``{canonical}/CodeSystem/photomarker``; a ``Concept``
whose ``system`` is ``None`` belongs to it. ``fhir_mappings.codesystem`` publishes it from
``LOCAL_CONCEPTS``, so a code used here and missing there is a bug the tests catch.
"""

from __future__ import annotations

from typing import Any, Final

from models.results import SNOMED, AnalysisName, Concept

# --- external code systems -------------------------------------------------------------------

UCUM: Final = "http://unitsofmeasure.org"
LOINC: Final = "http://loinc.org"
ICD10: Final = "http://hl7.org/fhir/sid/icd-10"
V3_OBSERVATION_VALUE: Final = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
V3_INTERPRETATION: Final = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
V3_ACT_REASON: Final = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
V3_PARTICIPATION_TYPE: Final = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
V3_DATA_OPERATION: Final = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
OBSERVATION_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/observation-category"
DATA_ABSENT_REASON: Final = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
MEDIA_TYPE: Final = "http://terminology.hl7.org/CodeSystem/media-type"
PROVENANCE_PARTICIPANT_TYPE: Final = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
AUDIT_EVENT_TYPE: Final = "http://terminology.hl7.org/CodeSystem/audit-event-type"
AUDIT_ENTITY_TYPE: Final = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
AUDIT_OBJECT_ROLE: Final = "http://terminology.hl7.org/CodeSystem/object-role"
AUDIT_SOURCE_TYPE: Final = "http://terminology.hl7.org/CodeSystem/security-source-type"
AUDIT_NETWORK_TYPE: Final = "http://hl7.org/fhir/network-type"
RESTFUL_INTERACTION: Final = "http://hl7.org/fhir/restful-interaction"
DICOM: Final = "http://dicom.nema.org/resources/ontology/DCM"
BALP_USER_AGENT_TYPES: Final = "https://profiles.ihe.net/ITI/BALP/CodeSystem/UserAgentTypes"
AI_DEVICE_TYPE: Final = "http://hl7.org/fhir/uv/aitransparency/CodeSystem/AIdeviceTypeCS"

# Core R4 extension: "other resources … provided to help with its interpretation" — how an
# Observation points at the heat map that explains it.
EXT_SUPPORTING_INFO: Final = "http://hl7.org/fhir/StructureDefinition/workflow-supportingInfo"

# --- fixed codings ---------------------------------------------------------------------------

AIAST: Final[dict[str, str]] = {
    "system": V3_OBSERVATION_VALUE,
    "code": "AIAST",
    "display": "Artificial Intelligence asserted",
}
CATEGORY_IMAGING: Final[dict[str, str]] = {
    "system": OBSERVATION_CATEGORY,
    "code": "imaging",
    "display": "Imaging",
}
AI_DEVICE: Final[dict[str, str]] = {
    "system": AI_DEVICE_TYPE,
    "code": "Artificial-Intelligence",
    "display": "Artificial Intelligence",
}
LOINC_HB_BLOOD: Final[dict[str, str]] = {
    "system": LOINC,
    "code": "718-7",
    "display": "Hemoglobin [Mass/volume] in Blood",
}
INTERPRETATION_LOW: Final[dict[str, str]] = {"system": V3_INTERPRETATION, "code": "L", "display": "Low"}
INTERPRETATION_NORMAL: Final[dict[str, str]] = {
    "system": V3_INTERPRETATION,
    "code": "N",
    "display": "Normal",
}
NOT_PERFORMED: Final[dict[str, str]] = {
    "system": DATA_ABSENT_REASON,
    "code": "not-performed",
    "display": "Not Performed",
}

# --- SNOMED CT and the local stand-ins from FHIR.md -------------------------------------------

ATOPIC_DERMATITIS: Final = Concept("24079001", "Atopic dermatitis", SNOMED)
IMPETIGO: Final = Concept("48277006", "Impetigo", SNOMED)
HERPES_SIMPLEX: Final = Concept("88594005", "Herpes simplex", SNOMED)
# No SNOMED CT code found: local code, with ICD-10 B00.0 added beside it (EXTRA_CODINGS).
ECZEMA_HERPETICUM: Final = Concept("eczema-herpeticum", "Eczema herpeticum (Kaposi varicelliform eruption)")
MYCOSIS_FUNGOIDES: Final = Concept("118618005", "Mycosis fungoides", SNOMED)
BASAL_CELL_CARCINOMA: Final = Concept("254701007", "Basal cell carcinoma of skin", SNOMED)
MELANOCYTIC_NAEVUS: Final = Concept("400096001", "Melanocytic naevus", SNOMED)
MALIGNANT_MELANOMA: Final = Concept("372244006", "Malignant melanoma", SNOMED)
# Not verified in SNOMED CT yet: local until a terminology server confirms a code.
SEBORRHOEIC_KERATOSIS: Final = Concept("seborrhoeic-keratosis", "Seborrhoeic keratosis")
SKIN_STRUCTURE: Final = Concept("39937001", "Skin structure", SNOMED)
CONJUNCTIVAL_STRUCTURE: Final = Concept("29445007", "Conjunctival structure", SNOMED)

BODY_SITES: Final[dict[str, Concept]] = {
    "face": Concept("89545001", "Face structure", SNOMED),
    "neck": Concept("45048000", "Neck structure", SNOMED),
    "trunk": Concept("22943007", "Trunk structure", SNOMED),
    "upper-limb": Concept("53120007", "Upper limb structure", SNOMED),
    "hand": Concept("85562004", "Hand structure", SNOMED),
    "lower-limb": Concept("61685007", "Lower limb structure", SNOMED),
    "foot": Concept("56459004", "Foot structure", SNOMED),
}

# FHIR.md's confidence in each SNOMED code; anything but "confirmed" must be checked against a
# terminology server before a release (tests list them so they stay visible).
SNOMED_STATUS: Final[dict[str, str]] = {
    "24079001": "confirmed",
    "48277006": "likely",
    "88594005": "verify",
    "118618005": "verify",
    "254701007": "confirmed",
    "400096001": "confirmed",
    "372244006": "verify",
    "39937001": "likely",
    "29445007": "confirmed",
    **{site.code: "verify" for site in BODY_SITES.values()},
}

# Codings from other systems written next to a concept's own coding.
EXTRA_CODINGS: Final[dict[str, tuple[dict[str, str], ...]]] = {
    ECZEMA_HERPETICUM.code: ({"system": ICD10, "code": "B00.0", "display": "Eczema herpeticum"},),
}

# --- Photomarker's own code system ---------------------------------------------------------------

# code → (display, definition). Published as the CodeSystem resource; keep displays stable.
LOCAL_CONCEPTS: Final[dict[str, tuple[str, str]]] = {
    "tis": (
        "Three Item Severity score (AI)",
        "Sum of erythema, oedema/papulation and excoriation (0–3 each, total 0–9) scored by an "
        "AI model from a photograph.",
    ),
    "tis-erythema": ("Erythema (TIS item)", "Three Item Severity item: erythema, 0–3."),
    "tis-oedema-papulation": (
        "Oedema/papulation (TIS item)",
        "Three Item Severity item: oedema/papulation, 0–3.",
    ),
    "tis-excoriation": ("Excoriation (TIS item)", "Three Item Severity item: excoriation, 0–3."),
    "tis-mild": ("Mild (TIS 0–2)", "Three Item Severity total of 0 to 2."),
    "tis-moderate": ("Moderate (TIS 3–5)", "Three Item Severity total of 3 to 5."),
    "tis-severe": ("Severe (TIS 6–9)", "Three Item Severity total of 6 to 9."),
    "skin-condition-probabilities": (
        "Skin condition probabilities (AI)",
        "Panel of per-condition probabilities (0–1) from an AI skin classifier.",
    ),
    "skin-diagnosis-probabilities": (
        "Skin disease diagnosis probabilities (AI)",
        "Panel of per-diagnosis probabilities (0–1) from an AI N-class skin-disease classifier; "
        "the interpretation lists the top 3.",
    ),
    "psoriasis": ("Psoriasis", "Psoriasis; local code until a SNOMED CT code is verified."),
    "tinea-corporis": ("Tinea corporis", "Tinea corporis; local code until a SNOMED CT code is verified."),
    "urticaria": ("Urticaria", "Urticaria; local code until a SNOMED CT code is verified."),
    "vitiligo": ("Vitiligo", "Vitiligo; local code until a SNOMED CT code is verified."),
    "trunk-back": ("Back of trunk", "The back of the trunk, as the body-part model reports it."),
    "skin-tumour-malignancy": (
        "Probability of skin tumour malignancy (AI)",
        "Probability (0–1) that a photographed skin tumour is malignant, with per-type "
        "probabilities, from an AI classifier.",
    ),
    "skin-tumour-malignancy-photo-only": (
        "Probability of malignancy from the photo alone (AI)",
        "The skin-tumour classifier's probability of malignancy from the photograph alone, given "
        "beside a value weighed with the patient's age and the body site from the record.",
    ),
    "hb-estimate-conjunctiva-photo": (
        "Haemoglobin estimated from conjunctival photograph (AI)",
        "Haemoglobin concentration (g/dL) estimated by an AI model from a photograph of the "
        "palpebral conjunctiva. Not a blood test.",
    ),
    "prediction-interval": (
        "Prediction interval",
        "Range expected to contain the true value at the stated probability (the level is "
        "given in the component's text).",
    ),
    "photo-quality": (
        "Photo quality for analysis (AI)",
        "Whether a photograph is good enough to analyse, with the individual checks.",
    ),
    "photo-quality-acceptable": ("Acceptable", "The photograph passed every quality check."),
    "photo-quality-retake": ("Retake needed", "The photograph failed a quality check."),
    "photo-quality-blur": ("Sharpness", "Sharpness (variance of the Laplacian); low means blurred."),
    "photo-quality-exposure": ("Exposure", "Exposure: clipped pixels and mean brightness."),
    "photo-quality-resolution": ("Resolution", "Resolution: the shorter side in pixels."),
    "photo-quality-content": (
        "Content found",
        "Fraction of the frame that shows skin or conjunctiva.",
    ),
    "photo-quality-conjunctiva-found": (
        "Conjunctiva found",
        "Fraction of the frame localised as palpebral conjunctiva (conjunctiva photos); "
        "zero when it was not found.",
    ),
    "photo-quality-frames": (
        "Frames passing",
        "Video or photo series: frames (photos) that passed the other quality checks; an "
        "accumulated verdict needs at least the threshold.",
    ),
    "frames-analysed": (
        "Frames analysed",
        "Frames of the video (photos of the series) that passed the quality gate and were analysed.",
    ),
    "frames-rejected": (
        "Frames rejected",
        "Frames of the video (photos of the series) that the quality gate dropped.",
    ),
    "frame-agreement": (
        "Frame agreement",
        "Share of the analysed frames whose own verdict is the accumulated one (0–1).",
    ),
    "frame-range": (
        "Range over frames",
        "Lowest and highest value over the analysed frames; the component's text names the measure.",
    ),
    "frame-spread": (
        "Spread over frames",
        "Interquartile range of the value over the analysed frames (TIS total, Hb).",
    ),
    "check-passed": ("Passed", "The quality check passed."),
    "check-failed": ("Failed", "The quality check failed."),
    "model-abstained": (
        "No conclusion (model abstained)",
        "The model declined to commit: its spread was too wide or the photo was unlike its training data.",
    ),
    ECZEMA_HERPETICUM.code: (
        ECZEMA_HERPETICUM.display,
        "Disseminated herpes simplex infection on atopic skin (ICD-10 B00.0).",
    ),
    SEBORRHOEIC_KERATOSIS.code: (
        SEBORRHOEIC_KERATOSIS.display,
        "Seborrhoeic keratosis; local code until a SNOMED CT code is verified.",
    ),
}

# Observation.code of each analysis.
ANALYSIS_CODES: Final[dict[AnalysisName, str]] = {
    "tis": "tis",
    "skin-condition": "skin-condition-probabilities",
    "skin-diagnosis": "skin-diagnosis-probabilities",
    "skin-tumour": "skin-tumour-malignancy",
    "hb": "hb-estimate-conjunctiva-photo",
    "photo-quality": "photo-quality",
}

REFERENCE_ONLY_TEXT: Final = "Reference model — not for clinical use"


# --- URLs under the canonical base -----------------------------------------------------------


def local_system(canonical: str) -> str:
    """The local code system's URL."""
    return f"{canonical}/CodeSystem/photomarker"


def audit_event_system(canonical: str) -> str:
    """Photomarker's own audit event names (``AuditRecord.event``), an open-ended list."""
    return f"{canonical}/CodeSystem/photomarker-audit-event"


def write_key_system(canonical: str) -> str:
    """``meta.tag`` system carrying a Provenance's idempotency key (Provenance has no identifier)."""
    return f"{canonical}/CodeSystem/photomarker-write-key"


def result_identifier_system(canonical: str) -> str:
    """Identifier system of results (Observations, heat-map Media): the idempotency key."""
    return f"{canonical}/identifier/result"


def model_weights_system(canonical: str) -> str:
    """Identifier system of model Devices: the SHA-256 of the weights file, lowercase hex."""
    return f"{canonical}/identifier/model-weights-sha256"


def software_system(canonical: str) -> str:
    """Identifier system of the Photomarker software Device: ``photomarker-<version>``."""
    return f"{canonical}/identifier/software"


def photo_sha256_system(canonical: str) -> str:
    """Identifier system of Media made from a file: SHA-256 of the original file, lowercase hex."""
    return f"{canonical}/identifier/photo-sha256"


def agent_system(canonical: str) -> str:
    """Identifier system for audit agents that are not FHIR resources (``service:inbox``)."""
    return f"{canonical}/identifier/agent"


def oauth_client_system(canonical: str) -> str:
    """Identifier system of OAuth client ids in audit events."""
    return f"{canonical}/identifier/oauth-client"


# --- small JSON helpers ----------------------------------------------------------------------


def local_coding(code: str, canonical: str) -> dict[str, str]:
    """A coding in the local code system; unknown codes are a bug, so they raise."""
    if code not in LOCAL_CONCEPTS:
        raise KeyError(f"local code {code!r} is not in fhir_mappings.codes.LOCAL_CONCEPTS")
    return {"system": local_system(canonical), "code": code, "display": LOCAL_CONCEPTS[code][0]}


def concept_coding(concept: Concept, canonical: str) -> dict[str, str]:
    """A ``Concept`` as a coding; ``system=None`` means the local code system."""
    system = concept.system or local_system(canonical)
    return {"system": system, "code": concept.code, "display": concept.display}


def concept_codeable(concept: Concept, canonical: str) -> dict[str, Any]:
    """A ``Concept`` as a CodeableConcept, with any cross-walk codings and its display as text."""
    codings = [concept_coding(concept, canonical)]
    if concept.system is None:
        codings.extend(dict(extra) for extra in EXTRA_CODINGS.get(concept.code, ()))
    return {"coding": codings, "text": concept.display}


def site_codeable(sites: tuple[Concept, ...], text: str | None, canonical: str) -> dict[str, Any] | None:
    """A photo's body site as a CodeableConcept: its first coding, and the sender's text when given."""
    if not sites:
        return None
    codeable = concept_codeable(sites[0], canonical)
    if text:
        codeable["text"] = text
    return codeable


def local_codeable(code: str, canonical: str, text: str | None = None) -> dict[str, Any]:
    """A CodeableConcept of one local code; ``text`` defaults to the display."""
    coding = local_coding(code, canonical)
    return {"coding": [coding], "text": text or coding["display"]}
