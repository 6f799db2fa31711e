"""Check an emitted resource twice: ``fhir.resources`` R4B models and the official FHIR R4 JSON schema.

The schema is vendored in ``tests/data/fhir.schema.json`` (see ``tests/data/README.md``). Each
resource is validated against its own definition, and a Bundle's entries one by one as well,
so an error names the resource that is wrong instead of a 150-way ``oneOf`` failure.
Also the sample inputs the output tests share.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft6Validator

from fhir_mappings.context import Requester, ResultContext
from fhir_mappings.photo import Photo, SourceRef
from fhir_mappings.validation import validate_resource
from models.results import ModelInfo, QualityCheck, QualityCheckName, QualityVerdict

SCHEMA_PATH = Path(__file__).resolve().parent / "data" / "fhir.schema.json"


@lru_cache(maxsize=1)
def fhir_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema


@cache
def _validator(resource_type: str) -> Draft6Validator:
    schema = fhir_schema()
    if resource_type not in schema["definitions"]:
        raise AssertionError(f"{resource_type} is not an R4 resource type")
    # The schema declares draft-06; resolve the one definition against the whole document.
    return Draft6Validator({"$ref": f"#/definitions/{resource_type}", "definitions": schema["definitions"]})


def schema_errors(resource: dict[str, Any]) -> list[str]:
    """Every way ``resource`` breaks the R4 JSON schema, as 'path: message' lines."""
    validator = _validator(str(resource.get("resourceType")))
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in sorted(validator.iter_errors(resource), key=lambda e: list(map(str, e.absolute_path)))
    ]


def resources_in(resource: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The resource itself and, for a Bundle, each entry's resource."""
    yield resource
    for entry in resource.get("entry", []):
        if "resource" in entry:
            yield from resources_in(entry["resource"])


def assert_valid_fhir(resource: dict[str, Any]) -> None:
    """Fail with every problem unless ``resource`` (and any Bundle entry) passes both validators."""
    for item in resources_in(resource):
        validate_resource(item)
        problems = schema_errors(item)
        assert not problems, f"{item['resourceType']} breaks the FHIR R4 JSON schema:\n" + "\n".join(problems)


def codings_in(value: Any) -> Iterator[dict[str, Any]]:
    """Every Coding-shaped dict (``system`` + ``code``) anywhere in ``value``."""
    if isinstance(value, dict):
        if isinstance(value.get("system"), str) and isinstance(value.get("code"), str):
            yield value
        for item in value.values():
            yield from codings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from codings_in(item)


# --- sample inputs the output tests share ------------------------------------------------------

CANONICAL = "https://photomarker.example.org/fhir"
# Photo taken in Tokyo; tests run in other zones so a lost or converted offset shows.
TAKEN_AT = datetime(2026, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=9)))
ISSUED = datetime(2026, 3, 1, 10, 2, 3, tzinfo=timezone(timedelta(hours=9)))


def sample_model(**overrides: Any) -> ModelInfo:
    fields: dict[str, Any] = {
        "name": "tis-heads",
        "version": "1.2.0",
        "display_name": "Atopiyo TIS heads",
        "manufacturer": "Photomarker project",
        "weights_sha256": "a" * 64,
        "reference_only": False,
        "card_url": "https://photomarker.example.org/models/tis-heads/1.2.0",
    }
    return ModelInfo(**(fields | overrides))


def sample_photo(**overrides: Any) -> Photo:
    fields: dict[str, Any] = {
        "source": SourceRef("Media", "photo-17", "3"),
        "subject": "Patient/p-1001",
        "content_type": "image/jpeg",
        "encounter": "Encounter/e-55",
        "taken_at": TAKEN_AT,
    }
    return Photo(**(fields | overrides))


def sample_context(photo: Photo | None = None, **overrides: Any) -> ResultContext:
    fields: dict[str, Any] = {
        "canonical": CANONICAL,
        "issued": ISSUED,
        "software_version": "0.1.0",
        "requester": Requester(reference="Practitioner/dr-sato"),
    }
    return ResultContext.for_fhir_photo(photo or sample_photo(), **(fields | overrides))


def sample_quality(acceptable: bool = True) -> QualityVerdict:
    return QualityVerdict(
        checks=(
            QualityCheck(
                QualityCheckName.BLUR,
                acceptable,
                150.0 if acceptable else 10.0,
                60.0,
                advice=None if acceptable else "Hold the phone still.",
            ),
            QualityCheck(QualityCheckName.CONTENT, True, 0.4, 0.05),
        ),
        content_found="skin",
    )
