"""The CodeSystem resources that publish Photomarker's own codes under the canonical base.

``{canonical}/CodeSystem/photomarker`` lists every local concept (``codes.LOCAL_CONCEPTS`` plus
any local label a model's label set brings in ``extra``). The audit event names and write keys
are open-ended, so their code systems are published with ``content`` = ``not-present``; the
error codes of ``models.errors`` are complete.
"""

from __future__ import annotations

from collections.abc import Iterable

from fhir_mappings import codes
from fhir_mappings.outcome import error_code_system
from fhir_mappings.validation import Resource, validate_resource
from models.errors import ALL_ERRORS
from models.results import Concept

_PUBLISHER = "Photomarker"


def _code_system(
    url: str, version: str, name: str, title: str, description: str, concepts: list[dict[str, str]] | None
) -> Resource:
    resource: Resource = {
        "resourceType": "CodeSystem",
        "url": url,
        "version": version,
        "name": name,
        "title": title,
        "status": "active",
        "experimental": False,
        "publisher": _PUBLISHER,
        "description": description,
        "caseSensitive": True,
    }
    if concepts is None:
        resource["content"] = "not-present"
    else:
        resource["content"] = "complete"
        resource["count"] = len(concepts)
        resource["concept"] = concepts
    validate_resource(resource)
    return resource


def build_code_system(canonical: str, version: str, *, extra: Iterable[Concept] = ()) -> Resource:
    """The local code system; ``extra`` adds local labels (``Concept.system is None``) of label sets."""
    concepts = {code: (display, definition) for code, (display, definition) in codes.LOCAL_CONCEPTS.items()}
    for concept in extra:
        if concept.system is not None:
            continue  # SNOMED and other external codes are published by their owners
        known = concepts.get(concept.code)
        if known is not None and known[0] != concept.display:
            raise ValueError(
                f"local code {concept.code!r} has two displays: {known[0]!r} and {concept.display!r}"
            )
        concepts.setdefault(concept.code, (concept.display, concept.display))
    return _code_system(
        codes.local_system(canonical),
        version,
        "Photomarker",
        "Photomarker local concepts",
        "Concepts for AI results Photomarker derives from clinical photographs, where no "
        "standard code exists.",
        [
            {"code": code, "display": display, "definition": definition}
            for code, (display, definition) in concepts.items()
        ],
    )


def build_code_systems(canonical: str, version: str, *, extra: Iterable[Concept] = ()) -> list[Resource]:
    """Every code system Photomarker's resources use under the canonical base."""
    errors = [
        {
            "code": error.code,
            "display": error.code.replace("-", " ").capitalize(),
            "definition": (error.__doc__ or error.code).strip().splitlines()[0],
        }
        for error in ALL_ERRORS
    ]
    return [
        build_code_system(canonical, version, extra=extra),
        _code_system(
            codes.audit_event_system(canonical),
            version,
            "PhotomarkerAuditEvent",
            "Photomarker audit event names",
            "What happened, in Photomarker's own words (photo.read, analysis.finished …).",
            None,
        ),
        _code_system(
            codes.write_key_system(canonical),
            version,
            "PhotomarkerWriteKey",
            "Photomarker write keys",
            "Idempotency keys of write-backs, carried as Provenance meta.tag.",
            None,
        ),
        _code_system(
            error_code_system(canonical),
            version,
            "PhotomarkerError",
            "Photomarker error codes",
            "Stable codes of the refusals Photomarker makes.",
            errors,
        ),
    ]
