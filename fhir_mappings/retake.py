"""Retake requests: a photo that failed the quality gate → a Communication (or Task) for the patient.

The patient app shows it: it is addressed to (or owned by) the patient, points at the photo
and at the photo-quality Observation that failed, and says in plain words what to fix — the
advice the quality gate wrote on that Observation, repeated, so the two never disagree. Each
request carries an identifier derived from the photo version alone, and is written by a
conditional create on it: asking twice for the same photo creates one request.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

from fhir_mappings import codes, idempotency
from fhir_mappings.context import fhir_instant
from fhir_mappings.validation import Resource, validate_resource

RetakeResource = Literal["Communication", "Task"]

COMMUNICATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/communication-category"
RETAKE_CODE = "photo-quality-retake"
HEADLINE = "Your photo could not be used for a measurement. Please take it again."
VIDEO_HEADLINE = "Your video could not be used for a measurement. Please film it again."


def retake_identifier_system(canonical: str) -> str:
    """Identifier system of retake requests: the idempotency key of the photo version."""
    return f"{canonical}/identifier/retake-request"


def retake_key(photo_reference: str) -> str:
    return idempotency.stable_uuid("retake-request", photo_reference)


def needs_retake(quality: Mapping[str, Any], canonical: str) -> bool:
    """Is ``quality`` a photo-quality Observation whose verdict is "retake"?"""
    value = quality.get("valueCodeableConcept")
    codings = value.get("coding") if isinstance(value, dict) else None
    return any(
        isinstance(c, dict)
        and c.get("system") == codes.local_system(canonical)
        and c.get("code") == RETAKE_CODE
        for c in codings or []
    )


def is_quality_observation(resource: Mapping[str, Any], canonical: str) -> bool:
    code = resource.get("code")
    codings = code.get("coding") if isinstance(code, dict) else None
    return resource.get("resourceType") == "Observation" and any(
        isinstance(c, dict)
        and c.get("system") == codes.local_system(canonical)
        and c.get("code") == "photo-quality"
        for c in codings or []
    )


def retake_advice(quality: Mapping[str, Any]) -> list[str]:
    """What to fix, one sentence per failed check, as the quality Observation words it.

    The builder of that Observation writes each failed check's interpretation text as
    ``Failed (threshold …): <advice>``; the advice is the part after the first ``): ``.
    """
    advice: list[str] = []
    for component in _list(quality.get("component")):
        for interpretation in _list(component.get("interpretation") if isinstance(component, dict) else None):
            if not isinstance(interpretation, dict):
                continue
            failed = any(
                isinstance(c, dict) and c.get("code") == "check-failed"
                for c in _list(interpretation.get("coding"))
            )
            text = interpretation.get("text")
            if failed and isinstance(text, str):
                _, found, tail = text.partition("): ")
                if found and tail.strip() and tail.strip() not in advice:
                    advice.append(tail.strip())
    return advice


def build_retake_request(
    kind: RetakeResource,
    *,
    quality: Mapping[str, Any],
    photo_reference: str,
    canonical: str,
    issued: datetime,
) -> Resource:
    """The Communication or Task asking the photo's patient for a new photo.

    ``quality`` is the photo-quality Observation as stored on the server (it has an ``id``, a
    ``subject`` and, as the requester, the ``device`` that judged the photo).
    """
    patient = _reference(quality.get("subject"))
    if patient is None or not patient.startswith("Patient/"):
        raise ValueError("the quality Observation names no Patient to ask")
    observation_id = quality.get("id")
    if not isinstance(observation_id, str):
        raise ValueError("the quality Observation has no id")
    observation = f"Observation/{observation_id}"
    device = _reference(quality.get("device"))
    advice = retake_advice(quality)
    headline = VIDEO_HEADLINE if _of_a_video(quality) else HEADLINE
    reason = codes.local_codeable(RETAKE_CODE, canonical)
    identifier = [{"system": retake_identifier_system(canonical), "value": retake_key(photo_reference)}]
    when = fhir_instant(issued)
    resource: Resource
    if kind == "Communication":
        resource = {
            "resourceType": "Communication",
            "identifier": identifier,
            "status": "completed",
            "category": [
                {
                    "coding": [
                        {"system": COMMUNICATION_CATEGORY, "code": "instruction", "display": "Instruction"}
                    ]
                }
            ],
            "priority": "routine",
            "subject": {"reference": patient},
            "topic": reason,
            "about": [{"reference": photo_reference}, {"reference": observation}],
            "sent": when,
            "recipient": [{"reference": patient}],
            "reasonCode": [reason],
            "reasonReference": [{"reference": observation}],
            "payload": [{"contentString": text} for text in (headline, *advice)],
        }
        if device is not None:
            resource["sender"] = {"reference": device}
    else:
        resource = {
            "resourceType": "Task",
            "identifier": identifier,
            "status": "requested",
            "intent": "order",
            "priority": "routine",
            "code": reason,
            "description": " ".join((headline, *advice)),
            "focus": {"reference": photo_reference},
            "for": {"reference": patient},
            "authoredOn": when,
            "lastModified": when,
            "owner": {"reference": patient},
            "reasonCode": reason,
            "reasonReference": {"reference": observation},
        }
        if device is not None:
            resource["requester"] = {"reference": device}
        if advice:
            resource["note"] = [{"text": text} for text in advice]
    validate_resource(resource)
    return resource


def _of_a_video(quality: Mapping[str, Any]) -> bool:
    """A video's quality Observation counts its frames (``fhir_mappings.footage``); a series' says
    "photos", and a photo's has no frame count at all."""
    notes = " ".join(str(n.get("text", "")) for n in _list(quality.get("note")) if isinstance(n, dict))
    return "frames of a" in notes and "video" in notes


def retake_transaction(request: Resource) -> Resource:
    """A transaction that creates ``request`` unless one with its identifier exists already."""
    identifier = request["identifier"][0]
    condition = "identifier=" + quote(f"{identifier['system']}|{identifier['value']}", safe=":/|")
    bundle: Resource = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{identifier['value']}",
                "resource": request,
                "request": {"method": "POST", "url": request["resourceType"], "ifNoneExist": condition},
            }
        ],
    }
    validate_resource(bundle)
    return bundle


def _reference(value: Any) -> str | None:
    reference = value.get("reference") if isinstance(value, dict) else None
    return reference if isinstance(reference, str) and reference else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
