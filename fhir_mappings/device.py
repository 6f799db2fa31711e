"""Device resources: one per model version (HL7 AI Transparency "AI-Device" shape) and Photomarker itself.

A model Device is identified by the SHA-256 of its weights, so the same weights under any
deployment map to one Device (conditional create). The model card is referenced in
``note.text``, which is how the AI Transparency IG's own examples carry it. The profile is not
claimed in ``meta.profile`` so servers without that IG loaded do not reject the write.
"""

from __future__ import annotations

from fhir_mappings import codes, idempotency
from fhir_mappings.validation import Resource, validate_resource
from models.results import ModelInfo

SOFTWARE_NAME = "Photomarker"
# Every Device of a reference or research-only model says so in its name, wherever an EHR lists it.
REFERENCE_NAME_SUFFIX = "(reference — not for clinical use)"


def device_name(model: ModelInfo) -> str:
    """The model's display name, with the reference suffix when it is a reference model."""
    name = model.display_name
    if model.reference_only and "not for clinical use" not in name.lower():
        return f"{name} {REFERENCE_NAME_SUFFIX}"
    return name


def model_device_full_url(model: ModelInfo) -> str:
    return "urn:uuid:" + idempotency.stable_uuid("device", idempotency.model_key(model))


def software_device_full_url(software_version: str) -> str:
    return "urn:uuid:" + idempotency.stable_uuid("device", idempotency.software_key(software_version))


def model_device_identifier(model: ModelInfo, canonical: str) -> dict[str, str]:
    return {
        "system": codes.model_weights_system(canonical),
        "value": idempotency.sha256_hex(model.weights_sha256, f"weights SHA-256 of {model.name}"),
    }


def software_device_identifier(canonical: str, software_version: str) -> dict[str, str]:
    return {"system": codes.software_system(canonical), "value": f"photomarker-{software_version}"}


def build_model_device(model: ModelInfo, canonical: str) -> Resource:
    """The Device for one model version; says plainly when it is a reference model."""
    notes = []
    if model.reference_only:
        notes.append(
            {
                "text": f"{codes.REFERENCE_ONLY_TEXT}: for demonstration and testing only; "
                "the model card says why (synthetic training data or performance short of clinical use)."
            }
        )
    if model.card_url:
        notes.append({"text": f"Model card: {model.card_url}"})
    if model.task:
        notes.append({"text": f"Task: {model.task}"})
    device: Resource = {
        "resourceType": "Device",
        "identifier": [
            {
                **model_device_identifier(model, canonical),
                "type": {"text": "SHA-256 of the model weights"},
            }
        ],
        "status": "active",
        "manufacturer": model.manufacturer,
        "deviceName": [
            {"name": device_name(model), "type": "user-friendly-name"},
            {"name": model.name, "type": "model-name"},
        ],
        "modelNumber": model.name,
        "type": {"coding": [dict(codes.AI_DEVICE)], "text": "AI model"},
        "version": [{"value": model.version}],
    }
    if model.reference_only:
        device["safety"] = [{"text": codes.REFERENCE_ONLY_TEXT}]
    if notes:
        device["note"] = notes
    validate_resource(device)
    return device


def build_software_device(canonical: str, software_version: str) -> Resource:
    """The Device for Photomarker itself: the quality gate, the assembler of every write."""
    device: Resource = {
        "resourceType": "Device",
        "identifier": [software_device_identifier(canonical, software_version)],
        "status": "active",
        "deviceName": [{"name": SOFTWARE_NAME, "type": "user-friendly-name"}],
        "type": {"text": "Software application"},
        "version": [{"value": software_version}],
    }
    validate_resource(device)
    return device
