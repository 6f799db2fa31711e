"""Provenance of one write: what was created, from which photo, by which model, for whom.

R4 Provenance has no ``identifier``, so the write's idempotency key travels as a ``meta.tag``
(system ``{canonical}/CodeSystem/photomarker-write-key``); the Bundle creates it with
``ifNoneExist=_tag=<system>|<key>``, so running the same job twice records one Provenance.
"""

from __future__ import annotations

from collections.abc import Sequence

from fhir_mappings import codes
from fhir_mappings.context import ResultContext
from fhir_mappings.device import software_device_full_url
from fhir_mappings.validation import Resource, validate_resource


def provenance_full_url(key: str) -> str:
    return f"urn:uuid:{key}"


def write_tag(ctx: ResultContext, key: str) -> dict[str, str]:
    return {"system": codes.write_key_system(ctx.canonical), "code": key, "display": "Photomarker write"}


def _participant(code: str, display: str) -> dict[str, object]:
    return {"coding": [{"system": codes.PROVENANCE_PARTICIPANT_TYPE, "code": code, "display": display}]}


def build_provenance(
    ctx: ResultContext,
    *,
    key: str,
    targets: Sequence[str],
    model_devices: Sequence[str],
    software_device: str | None = None,
    read_patient: bool = False,
) -> Resource:
    """The Provenance of one write.

    ``key`` is ``idempotency.write_key`` over the results written; ``targets`` are references
    to what the write created (Observations, heat maps); ``model_devices`` reference the model
    Devices that produced them. ``read_patient``: a result used the Patient's facts (the WHO
    anaemia cut-off, the age weighed into a tumour result), so the Patient is a source too.
    """
    if not targets:
        raise ValueError("a Provenance needs at least one target")
    agents: list[dict[str, object]] = [
        {"type": {"coding": [dict(codes.AI_DEVICE)]}, "who": {"reference": ref}}
        for ref in dict.fromkeys(model_devices)  # one agent per Device, order kept
    ]
    agents.append(
        {
            "type": _participant("assembler", "Assembler"),
            "who": {"reference": software_device or software_device_full_url(ctx.software_version)},
        }
    )
    # The person (fhirUser) or service that asked for the analysis.
    agents.append({"type": _participant("enterer", "Enterer"), "who": ctx.requester.as_reference()})
    provenance: Resource = {
        "resourceType": "Provenance",
        "meta": {"tag": [write_tag(ctx, key)]},
        "target": [{"reference": ref} for ref in targets],
        "recorded": ctx.issued_instant,
        "activity": {"coding": [{"system": codes.V3_DATA_OPERATION, "code": "CREATE", "display": "create"}]},
        "agent": agents,
        "entity": [{"role": "source", "what": {"reference": source}} for source in ctx.sources],
    }
    if read_patient and ctx.photo.subject:
        provenance["entity"].append({"role": "source", "what": {"reference": ctx.photo.subject}})
    validate_resource(provenance)
    return provenance
