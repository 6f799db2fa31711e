"""Exports an auditor would hand on: BALP AuditEvents as a FHIR Bundle or NDJSON, and CSV."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle

from audit.events import AuditFilter
from audit.export import CSV_COLUMNS, ExportFormat, chain_extension_url, fhir_builder
from audit.record import AuditOutcome
from audit.store import AuditStore
from tests.audit.tampering import MakeRecord
from tests.fhir_validation import schema_errors

CANONICAL = "https://photomarker.example.org/fhir"


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    # Exports read through the same search the store tests run on both backends; the formats
    # themselves do not depend on the database, so one backend keeps the suite quick.
    return sqlite_url


@pytest.fixture
def filled(store: AuditStore, make_record: MakeRecord) -> AuditStore:
    store.append_many(make_record(n) for n in range(9))
    formula = '=HYPERLINK("http://evil")'
    store.append(make_record(9, outcome_reason=formula, outcome=AuditOutcome.MINOR_FAILURE))
    return store


def _export(store: AuditStore, fmt: ExportFormat, **options: object) -> str:
    out = io.StringIO()
    builder = None if fmt is ExportFormat.CSV else fhir_builder(CANONICAL, software_version="1.2.3")
    store.export(out, fmt, builder=builder, **options)  # type: ignore[arg-type]
    return out.getvalue()


@pytest.mark.parametrize("bundle_type", ["collection", "searchset"])
def test_fhir_bundle_validates_and_carries_the_chain(filled: AuditStore, bundle_type: str) -> None:
    text = _export(
        filled,
        ExportFormat.FHIR,
        filter=AuditFilter(patient="Patient/1"),
        bundle_type=bundle_type,
        chain_extension_url=chain_extension_url(CANONICAL),
        timestamp=datetime(2025, 3, 2, tzinfo=UTC),
    )
    bundle = json.loads(text)
    Bundle.model_validate_json(text)
    assert schema_errors(bundle) == []
    assert bundle["type"] == bundle_type
    assert bundle["timestamp"] == "2025-03-02T00:00:00.000000Z"
    entries = bundle["entry"]
    assert len(entries) == 2  # events 2 and 7 (numbers 1 and 6) are about Patient/1
    for entry, seq in zip(entries, (2, 7), strict=True):
        resource = entry["resource"]
        AuditEvent.model_validate(resource)
        assert entry["fullUrl"] == f"urn:uuid:{resource['id']}"
        assert {"reference": "Patient/1"} in [e.get("what") for e in resource["entity"]]
        link = resource["extension"][-1]
        assert link["url"] == chain_extension_url(CANONICAL)
        stored = filled.get(seq)
        assert stored is not None
        assert link["extension"] == [
            {"url": "seq", "valueInteger": seq},
            {"url": "prev", "valueString": stored.prev_hash},
            {"url": "hash", "valueString": stored.hash},
        ]
        assert ("search" in entry) == (bundle_type == "searchset")
    # The same event exports with the same id every time.
    again = json.loads(_export(filled, ExportFormat.FHIR, filter=AuditFilter(patient="Patient/1")))
    assert [e["resource"]["id"] for e in again["entry"]] == [e["resource"]["id"] for e in entries]


def test_an_empty_fhir_export_is_still_a_valid_bundle(filled: AuditStore) -> None:
    text = _export(filled, ExportFormat.FHIR, filter=AuditFilter(patient="Patient/nobody"))
    assert "entry" not in json.loads(text)
    Bundle.model_validate_json(text)


def test_ndjson_lines_are_audit_events(filled: AuditStore) -> None:
    lines = _export(filled, ExportFormat.NDJSON).splitlines()
    assert len(lines) == 10
    for line in lines:
        resource = json.loads(line)
        AuditEvent.model_validate(resource)
        assert schema_errors(resource) == []
    failures = [json.loads(line) for line in lines if json.loads(line)["outcome"] != "0"]
    assert failures and all(event.get("outcomeDesc") for event in failures)


def test_csv_has_a_header_and_round_trips(filled: AuditStore) -> None:
    rows = list(csv.DictReader(io.StringIO(_export(filled, ExportFormat.CSV))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [int(row["seq"]) for row in rows] == list(range(1, 11))
    first = filled.get(1)
    assert first is not None
    assert rows[0]["recorded"] == "2025-03-01T08:00:00.000000Z"
    assert rows[0]["patient"] == first.record.patient
    assert rows[0]["entities"] == " ".join(first.record.entities)
    assert (rows[0]["prev_hash"], rows[0]["hash"]) == (first.prev_hash, first.hash)
    # A cell a spreadsheet would run as a formula is defused.
    assert rows[9]["outcome_reason"] == '\'=HYPERLINK("http://evil")'


def test_fhir_formats_need_a_builder(filled: AuditStore) -> None:
    with pytest.raises(ValueError, match="builder"):
        filled.export(io.StringIO(), "ndjson")
