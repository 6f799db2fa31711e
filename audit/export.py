"""Write stored audit events as IHE BALP AuditEvents (FHIR Bundle or NDJSON) or as CSV.

The AuditEvent itself is built by ``fhir_mappings.audit_event.build_audit_event``, the one place
that builds that resource (``fhir_builder`` binds it to a deployment). This module only wraps it:
a deterministic ``id`` derived from the event's chain hash, optionally an extension carrying
``seq``/``prev``/``hash`` so a receiver can re-check the chain, and the container (Bundle, NDJSON
lines). Everything is streamed, so an export of millions of events needs little memory.

CSV is for people with a spreadsheet: one row per event, the chain columns included, and cells
that a spreadsheet would run as a formula (starting ``= + - @``, tab or CR) prefixed with ``'``.
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from importlib import metadata
from typing import Any, TextIO

from audit.chain import utc_timestamp
from audit.events import StoredEvent
from audit.record import AuditRecord
from models.errors import AuditError

# AuditRecord → a FHIR AuditEvent as a JSON-ready dict.
AuditEventBuilder = Callable[[AuditRecord], dict[str, Any]]

BUNDLE_TYPES = ("collection", "searchset")

CSV_COLUMNS = (
    "seq",
    "recorded",
    "event",
    "action",
    "subtype",
    "outcome",
    "outcome_reason",
    "agent_who",
    "agent_client_id",
    "agent_token_jti",
    "source_ip",
    "patient",
    "entities",
    "purpose_of_use",
    "query",
    "prev_hash",
    "hash",
)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class ExportFormat(StrEnum):
    FHIR = "fhir"  # one Bundle (collection or searchset) of AuditEvents
    NDJSON = "ndjson"  # one AuditEvent per line, as FHIR Bulk Data writes them
    CSV = "csv"


def fhir_builder(
    canonical: str, *, software_version: str | None = None, site: str | None = None
) -> AuditEventBuilder:
    """The project's BALP AuditEvent builder bound to a deployment's canonical base.

    Imported here, not at module level, so the store and CSV export work without FHIR models.
    """
    try:
        from fhir_mappings.audit_event import build_audit_event
    except ImportError as exc:
        raise AuditError(f"FHIR export needs fhir_mappings.audit_event: {exc}") from exc
    return partial(
        build_audit_event, canonical=canonical, software_version=software_version or _own_version(), site=site
    )


def chain_extension_url(canonical: str) -> str:
    """URL of the extension carrying an exported event's ``seq``/``prev``/``hash``."""
    return f"{canonical}/StructureDefinition/audit-chain-link"


def _own_version() -> str:
    try:
        return metadata.version("photomarker")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def resource_id(event: StoredEvent) -> str:
    """A stable id for the exported AuditEvent: the same event exports with the same id."""
    return str(uuid.UUID(hex=event.hash[:32]))


def audit_event_resource(
    event: StoredEvent, builder: AuditEventBuilder, chain_extension_url: str | None = None
) -> dict[str, Any]:
    resource = dict(builder(event.record))
    resource["id"] = resource_id(event)
    if chain_extension_url:
        link = {
            "url": chain_extension_url,
            "extension": [
                {"url": "seq", "valueInteger": event.seq},
                {"url": "prev", "valueString": event.prev_hash},
                {"url": "hash", "valueString": event.hash},
            ],
        }
        resource["extension"] = [*resource.get("extension", []), link]
    return resource


def write_fhir_bundle(
    events: Iterable[StoredEvent],
    out: TextIO,
    builder: AuditEventBuilder,
    *,
    bundle_type: str = "collection",
    chain_extension_url: str | None = None,
    timestamp: datetime | None = None,
) -> int:
    """A Bundle of AuditEvents; a ``searchset`` marks every entry as a search match."""
    if bundle_type not in BUNDLE_TYPES:
        raise ValueError(f"bundle type must be one of {', '.join(BUNDLE_TYPES)}")
    stamp = utc_timestamp(timestamp or datetime.now(UTC))
    out.write(f'{{"resourceType":"Bundle","type":"{bundle_type}","timestamp":"{stamp}"')
    count = 0
    for event in events:
        resource = audit_event_resource(event, builder, chain_extension_url)
        entry: dict[str, Any] = {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource}
        if bundle_type == "searchset":
            entry["search"] = {"mode": "match"}
        # FHIR JSON forbids an empty array, so "entry" opens only with the first event.
        out.write(',"entry":[' if count == 0 else ",")
        out.write(_json(entry))
        count += 1
    out.write("]}\n" if count else "}\n")
    return count


def write_ndjson(
    events: Iterable[StoredEvent],
    out: TextIO,
    builder: AuditEventBuilder,
    *,
    chain_extension_url: str | None = None,
) -> int:
    count = 0
    for event in events:
        out.write(_json(audit_event_resource(event, builder, chain_extension_url)) + "\n")
        count += 1
    return count


def write_csv(events: Iterable[StoredEvent], out: TextIO) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    count = 0
    for event in events:
        writer.writerow([_cell(value) for value in csv_row(event)])
        count += 1
    return count


def csv_row(event: StoredEvent) -> list[str]:
    """The CSV cells of one event, before spreadsheet-formula neutralising."""
    record = event.record
    fields = (
        record.event,
        str(record.action),
        record.subtype,
        str(record.outcome),
        record.outcome_reason,
        record.agent_who,
        record.agent_client_id,
        record.agent_token_jti,
        record.source_ip,
        record.patient,
        " ".join(record.entities),  # references never contain spaces
        record.purpose_of_use,
        record.query,
    )
    return [
        str(event.seq),
        utc_timestamp(record.recorded),
        *(value or "" for value in fields),
        event.prev_hash,
        event.hash,
    ]


def export_events(
    events: Iterable[StoredEvent],
    out: TextIO,
    fmt: ExportFormat,
    *,
    bundle_type: str = "collection",
    builder: AuditEventBuilder | None = None,
    chain_extension_url: str | None = None,
    timestamp: datetime | None = None,
) -> int:
    """Write ``events`` in ``fmt``; returns how many were written."""
    if fmt is ExportFormat.CSV:
        return write_csv(events, out)
    if builder is None:
        raise ValueError("FHIR and NDJSON exports need a builder, e.g. fhir_builder(canonical)")
    if fmt is ExportFormat.NDJSON:
        return write_ndjson(events, out, builder, chain_extension_url=chain_extension_url)
    return write_fhir_bundle(
        events,
        out,
        builder,
        bundle_type=bundle_type,
        chain_extension_url=chain_extension_url,
        timestamp=timestamp,
    )


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_STARTS) else value
