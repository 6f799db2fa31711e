"""Write strictly: broken resources are refused by both validators, and the schema is the real one."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_mappings import codes
from fhir_mappings.codesystem import build_code_system, build_code_systems
from fhir_mappings.device import build_model_device, build_software_device
from fhir_mappings.validation import InvalidFhirOutput, validate_resource
from models.results import Concept
from tests.fhir_validation import (
    CANONICAL,
    SCHEMA_PATH,
    assert_valid_fhir,
    fhir_schema,
    sample_model,
    schema_errors,
)


def observation(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "preliminary", "code": {"text": "x"}} | extra


def test_the_vendored_schema_is_fhir_r4_and_small_enough() -> None:
    assert SCHEMA_PATH.stat().st_size < 8 * 1024 * 1024
    schema = fhir_schema()
    assert schema["$schema"] == "http://json-schema.org/draft-06/schema#"
    assert schema["id"] == "http://hl7.org/fhir/json-schema/4.0"
    assert {"Observation", "Media", "Device", "Provenance", "AuditEvent", "CodeSystem", "Bundle"} <= set(
        schema["definitions"]
    )


def test_a_valid_resource_passes_both() -> None:
    assert_valid_fhir(observation())


def test_unknown_elements_are_refused_with_their_name() -> None:
    with pytest.raises(InvalidFhirOutput, match="valueProbability"):
        validate_resource(observation(valueProbability=0.5))
    assert any("valueProbability" in problem for problem in schema_errors(observation(valueProbability=0.5)))


def test_the_schema_catches_bad_codes_and_times() -> None:
    assert schema_errors(observation(status="guessed"))
    assert schema_errors(observation(issued="2026-03-01T09:30:00"))  # an instant needs a zone
    with pytest.raises(InvalidFhirOutput, match="issued"):
        validate_resource(observation(issued="2026-03-01T09:30:00"))


def test_nan_and_unknown_types_are_refused() -> None:
    with pytest.raises(InvalidFhirOutput, match="not a JSON number"):
        validate_resource(observation(valueQuantity={"value": float("inf")}))
    with pytest.raises(InvalidFhirOutput, match="not a FHIR"):
        validate_resource({"resourceType": "Photograph"})


def test_devices_say_when_a_model_is_reference_only() -> None:
    reference = build_model_device(sample_model(reference_only=True, weights_sha256="A" * 64), CANONICAL)
    assert_valid_fhir(reference)
    assert reference["safety"] == [{"text": "Reference model — not for clinical use"}]
    assert reference["identifier"][0] == {
        "system": f"{CANONICAL}/identifier/model-weights-sha256",
        "value": "a" * 64,  # lowercase hex whatever the card wrote
        "type": {"text": "SHA-256 of the model weights"},
    }
    assert reference["type"]["coding"][0]["code"] == "Artificial-Intelligence"
    assert any(sample_model().card_url in note["text"] for note in reference["note"])
    clinical = build_model_device(sample_model(reference_only=False), CANONICAL)
    assert "safety" not in clinical
    assert "not for clinical use" not in str(clinical)
    assert_valid_fhir(build_software_device(CANONICAL, "0.1.0"))


def test_a_model_without_a_real_sha256_is_refused() -> None:
    with pytest.raises(ValueError, match="SHA-256"):
        build_model_device(sample_model(weights_sha256="not-a-hash"), CANONICAL)


def test_the_code_systems_publish_every_local_code() -> None:
    systems = build_code_systems(CANONICAL, "0.1.0")
    for system in systems:
        assert_valid_fhir(system)
    local = systems[0]
    assert local["url"] == f"{CANONICAL}/CodeSystem/photomarker"
    assert {c["code"] for c in local["concept"]} == set(codes.LOCAL_CONCEPTS)
    assert local["count"] == len(local["concept"])
    errors = next(s for s in systems if s["url"].endswith("photomarker-error"))
    assert "hash-mismatch" in {c["code"] for c in errors["concept"]}


def test_label_sets_can_add_local_codes_but_not_redefine_them() -> None:
    extra = [
        Concept("prurigo-nodularis", "Prurigo nodularis"),
        Concept("24079001", "Atopic dermatitis", "http://snomed.info/sct"),
    ]
    published = {c["code"] for c in build_code_system(CANONICAL, "0.1.0", extra=extra)["concept"]}
    assert "prurigo-nodularis" in published and "24079001" not in published
    with pytest.raises(ValueError, match="two displays"):
        build_code_system(CANONICAL, "0.1.0", extra=[Concept("tis", "Something else")])


def test_snomed_codes_still_to_verify_are_listed() -> None:
    # FHIR.md marks these "verify": a release needs them checked against a terminology server.
    pending = sorted(code for code, status in codes.SNOMED_STATUS.items() if status == "verify")
    assert "372244006" in pending and "24079001" not in pending
