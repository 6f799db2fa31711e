"""Write strictly: every resource Photomarker emits is parsed by the ``fhir.resources`` R4B models.

Builders call ``validate_resource`` on what they return, so an invalid resource is a bug that
fails loudly where it is made, not a 400 from the EHR later. R4B's models are
shape-compatible with R4 for every resource Photomarker writes (Observation, Device, Media,
Provenance, AuditEvent, CodeSystem, Bundle); the tests also check the official R4 JSON schema.
"""

from __future__ import annotations

import json
import math
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

Resource = dict[str, Any]


class InvalidFhirOutput(ValueError):
    """A resource Photomarker built breaks the FHIR rules — a bug in a builder, never user input."""

    def __init__(self, resource_type: str, problems: list[str]) -> None:
        self.resource_type = resource_type
        self.problems = problems
        super().__init__(f"{resource_type} is not valid FHIR: " + "; ".join(problems))


def _problems(error: ValidationError) -> list[str]:
    out = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(resource)"
        out.append(f"{where}: {item['msg']}")
    return out


def _check_numbers(value: Any, path: str, problems: list[str]) -> None:
    # JSON has no NaN/Infinity; a model that produced one must not reach a FHIR server.
    if isinstance(value, float) and not math.isfinite(value):
        problems.append(f"{path}: {value} is not a JSON number")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_numbers(item, f"{path}.{key}" if path else key, problems)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_numbers(item, f"{path}[{index}]", problems)


def validate_resource(resource: Resource) -> None:
    """Raise ``InvalidFhirOutput`` naming every problem unless ``resource`` is valid FHIR."""
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        raise InvalidFhirOutput("(unknown)", ["resourceType is missing"])
    try:
        model = get_fhir_model_class(resource_type)
    except (KeyError, ValueError):
        raise InvalidFhirOutput(resource_type, ["not a FHIR R4B resource type"]) from None
    problems: list[str] = []
    _check_numbers(resource, "", problems)
    if problems:
        raise InvalidFhirOutput(resource_type, problems)
    try:
        # Round-trip through JSON so what is checked is exactly what would be sent.
        model.model_validate_json(json.dumps(resource))
    except ValidationError as exc:
        raise InvalidFhirOutput(resource_type, _problems(exc)) from None
