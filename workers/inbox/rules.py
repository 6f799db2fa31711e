"""Site rules: which photos count as patient-submitted, and which analyses run on them.

Read from a few settings so a site can say it without code:
- patient-submitted: ``Media.operator`` / ``DocumentReference.author`` is a Patient
  (``PHOTOMARKER_INBOX_OPERATOR_PATIENT``), or a ``meta.tag`` or a type coding from the lists
  ``PHOTOMARKER_INBOX_SUBMITTED_TAGS`` / ``PHOTOMARKER_INBOX_SUBMITTED_TYPES``;
- which kind of analysis: ``PHOTOMARKER_INBOX_KIND_RULES`` maps a body-site, type or modality
  coding to ``skin``, ``conjunctiva``, ``auto`` or ``skip``; ``*`` is the default.
Codings are written ``system|code``, or a bare ``code`` that matches in any system.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from fhir_mappings.photo import Photo
from plugin.settings import Settings

InboxKind = Literal["auto", "skin", "conjunctiva"]


@dataclass(frozen=True)
class Decision:
    """Score the photo as ``kind``, or skip it for ``reason`` (a sentence, no patient data)."""

    kind: InboxKind | None
    reason: str

    @property
    def accepted(self) -> bool:
        return self.kind is not None


@dataclass(frozen=True)
class InboxRules:
    operator_patient: bool
    submitted_tags: frozenset[str]
    submitted_types: frozenset[str]
    kind_rules: Mapping[str, str]

    @classmethod
    def from_settings(cls, settings: Settings) -> InboxRules:
        return cls(
            operator_patient=settings.inbox_operator_patient,
            submitted_tags=frozenset(settings.inbox_submitted_tags),
            submitted_types=frozenset(settings.inbox_submitted_types),
            kind_rules=dict(settings.inbox_kind_rules),
        )

    def decide(self, resource: Mapping[str, Any], photo: Photo) -> Decision:
        """What the inbox does with this photo (``photo`` is ``resource`` as the input reader saw it)."""
        if not self._patient_submitted(resource, photo):
            return Decision(None, "not patient-submitted under this site's rules")
        for key in _keys(_codings_of(resource, "bodySite", "type", "modality", "category")):
            chosen = self.kind_rules.get(key)
            if chosen is not None:
                return _decision(chosen, f"rule {key}")
        return _decision(self.kind_rules.get("*", "auto"), "default rule")

    def _patient_submitted(self, resource: Mapping[str, Any], photo: Photo) -> bool:
        if self.operator_patient and photo.self_submitted:
            return True
        meta = resource.get("meta")
        tags = meta.get("tag") if isinstance(meta, dict) else None
        if self.submitted_tags and self.submitted_tags & set(_keys(_codings(tags))):
            return True
        types = _codings_of(resource, "type", "category", "modality")
        return bool(self.submitted_types and self.submitted_types & set(_keys(types)))


def _decision(value: str, why: str) -> Decision:
    if value == "skip":
        return Decision(None, f"skipped by {why}")
    kind: InboxKind = "skin" if value == "skin" else "conjunctiva" if value == "conjunctiva" else "auto"
    return Decision(kind, f"{kind} by {why}")


def _codings_of(resource: Mapping[str, Any], *fields: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for name in fields:
        value = resource.get(name)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict):
                # R5 bodySite is a CodeableReference: the codings sit under "concept".
                concept = item.get("concept", item)
                found += _codings(concept.get("coding") if isinstance(concept, dict) else None)
    return found


def _codings(value: Any) -> list[dict[str, Any]]:
    return [c for c in value if isinstance(c, dict)] if isinstance(value, list) else []


def _keys(codings: list[dict[str, Any]]) -> Iterator[str]:
    """``system|code`` then the bare ``code`` of every coding, in order."""
    for coding in codings:
        code = coding.get("code")
        if not isinstance(code, str):
            continue
        system = coding.get("system")
        if isinstance(system, str):
            yield f"{system}|{code}"
        yield code
