"""Lenient readers for raw FHIR JSON: one field at a time, ``None`` or empty for anything odd.

Incoming resources are read as plain JSON rather than through a strict model (an R5
DocumentReference would fail an R4 model, and real servers send odd but legal data), so every
field is fetched through these helpers, which never raise: a missing or ill-typed element reads
as absent, and deciding whether that absence is a refusal is left to the caller
(``fhir_mappings.inputs``). Meant to be used qualified (``readers.get``): the names are short.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from models.results import Concept

# A literal reference, relative or absolute, optionally pinned to a version: Type/id[/_history/v].
_REFERENCE = re.compile(
    r"^(?:.*/)?([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$"
)


def get(value: Any, *keys: str) -> Any:
    """``value[k1][k2]…``, or None as soon as a step is not an object."""
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def as_list(value: Any) -> list[Any]:
    """A repeating element as a list: senders (and R4 vs R5) disagree on 0..1 vs 0..*."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def first(value: Any) -> Any:
    items = as_list(value)
    return items[0] if items else None


def bundle_resources(bundle: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """The resources of a Bundle's entries (entries without one are skipped)."""
    for entry in as_list(bundle.get("entry")):
        if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
            yield entry["resource"]


def reference(value: Any) -> str | None:
    """A Reference's ``reference`` as ``Type/id`` (absolute URLs and _history trimmed)."""
    if not isinstance(value, dict):
        return None
    ref = value.get("reference")
    if not isinstance(ref, str):
        return None
    match = _REFERENCE.match(ref.strip())
    return f"{match.group(1)}/{match.group(2)}" if match else None


def is_patient(reference: str | None) -> bool:
    return bool(reference and reference.startswith("Patient/"))


def concepts(value: Any) -> tuple[Concept, ...]:
    """The codings of a CodeableConcept that have a code, displayed by their own or its text."""
    if not isinstance(value, dict):
        return ()
    found = []
    for coding in as_list(value.get("coding")):
        if isinstance(coding, dict) and isinstance(coding.get("code"), str):
            found.append(
                Concept(
                    code=coding["code"],
                    display=str(coding.get("display") or value.get("text") or coding["code"]),
                    system=coding.get("system") if isinstance(coding.get("system"), str) else None,
                )
            )
    return tuple(found)


def text_of(codeable: Any) -> str | None:
    """A CodeableConcept's text, trimmed and capped (it is free text from the sender)."""
    text = codeable.get("text") if isinstance(codeable, dict) else None
    return (text.strip()[:200] or None) if isinstance(text, str) else None


def as_datetime(value: Any) -> datetime | None:
    """A FHIR dateTime with a time part; partial dates ("2026-03") give None, not a guess."""
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
