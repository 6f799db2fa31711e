"""Golden files for every output builder: ``tests/golden/outputs/<case>.input.json`` → builder →
``<case>.expected.json``, compared exactly; everything emitted must validate (R4B + R4 schema).

Regenerate after an intended change, then review the diff before committing:

    PHOTOMARKER_REGEN_GOLDEN=1 .venv/bin/pytest tests/fhir_mappings/test_output_golden.py

Input format: ``{"builder": <name>, ...}``; the ``context`` object mirrors ``ResultContext``
(``file_sha256`` set → ``ResultContext.for_file``), results mirror ``models.results``.
"""

from __future__ import annotations

import base64
import difflib
import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from audit.record import AuditAction, AuditOutcome, AuditRecord
from fhir_mappings import codes
from fhir_mappings.audit_event import build_audit_event
from fhir_mappings.bundle import build_result_bundle
from fhir_mappings.codesystem import build_code_systems
from fhir_mappings.context import Requester, ResultContext
from fhir_mappings.device import build_model_device, build_software_device
from fhir_mappings.media import HeatMap, build_file_media, build_heatmap_media
from fhir_mappings.observations import (
    ModelResult,
    build_not_performed_observation,
    build_quality_observation,
    build_result_observation,
)
from fhir_mappings.photo import Photo, SourceRef
from fhir_mappings.provenance import build_provenance
from models.results import (
    Abstention,
    AnalysisNotPerformed,
    AnalysisReport,
    ClassProbability,
    Concept,
    ConditionProbabilities,
    HbEstimate,
    ModelInfo,
    PatientFacts,
    QualityCheck,
    QualityCheckName,
    QualityVerdict,
    RecordWeighing,
    TisScore,
    TumourAssessment,
)
from tests.fhir_validation import assert_valid_fhir, codings_in, resources_in

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "outputs"
CASES = sorted(p.name.removesuffix(".input.json") for p in GOLDEN.glob("*.input.json"))
REGENERATE = os.environ.get("PHOTOMARKER_REGEN_GOLDEN") == "1"
Json = dict[str, Any]


# --- input JSON → the dataclasses the builders take --------------------------------------------


def concept(data: Json) -> Concept:
    return Concept(code=data["code"], display=data["display"], system=data.get("system"))


def abstention(data: Json | None) -> Abstention | None:
    return None if data is None else Abstention(**data)


def classes(items: list[Json]) -> tuple[ClassProbability, ...]:
    return tuple(ClassProbability(concept(item["concept"]), item["probability"]) for item in items)


def optional_concept(data: Json | None) -> Concept | None:
    return None if data is None else concept(data)


def model_info(data: Json) -> ModelInfo:
    return ModelInfo(**data)


def result(data: Json) -> ModelResult:
    kind = data["type"]
    if kind == "tis":
        return TisScore(
            erythema=data["erythema"],
            oedema_papulation=data["oedema_papulation"],
            excoriation=data["excoriation"],
            body_site=optional_concept(data.get("body_site")),
            lesion_count=data.get("lesion_count", 1),
        )
    if kind == "skin-condition":
        return ConditionProbabilities(
            classes=classes(data["classes"]),
            abstention=abstention(data.get("abstention")),
            body_site=optional_concept(data.get("body_site")),
        )
    if kind == "skin-tumour":
        record = data.get("record")
        return TumourAssessment(
            malignancy_probability=data["malignancy_probability"],
            types=classes(data["types"]),
            abstention=abstention(data.get("abstention")),
            body_site=optional_concept(data.get("body_site")),
            record=None
            if record is None
            else RecordWeighing(
                used=tuple(record["used"]),
                not_used=tuple(record["not_used"]),
                photo_only_malignancy=record["photo_only_malignancy"],
                photo_only_types=classes(record["photo_only_types"]),
            ),
        )
    if kind == "hb":
        return HbEstimate(
            g_dl=data["g_dl"],
            low=data["low"],
            high=data["high"],
            interval_level=data.get("interval_level", 0.95),
            abstention=abstention(data.get("abstention")),
        )
    raise AssertionError(f"unknown result type {kind}")


def quality(data: Json) -> QualityVerdict:
    checks = tuple(
        QualityCheck(
            name=QualityCheckName(item["name"]),
            passed=item["passed"],
            value=item["value"],
            threshold=item["threshold"],
            unit=item.get("unit", "1"),
            advice=item.get("advice"),
        )
        for item in data["checks"]
    )
    return QualityVerdict(checks=checks, content_found=data.get("content_found"))


def photo(data: Json) -> Photo:
    source = data.get("source")
    taken_at = data.get("taken_at")
    return Photo(
        source=SourceRef(**source) if source else None,
        subject=data.get("subject"),
        content_type=data.get("content_type"),
        encounter=data.get("encounter"),
        taken_at=datetime.fromisoformat(taken_at) if taken_at else None,
        body_site=tuple(concept(item) for item in data.get("body_site", [])),
        self_submitted=data.get("self_submitted", False),
    )


def context(data: Json) -> ResultContext:
    common: Json = {
        "canonical": data["canonical"],
        "issued": datetime.fromisoformat(data["issued"]),
        "software_version": data["software_version"],
        "requester": Requester(**data["requester"]),
        "patient_facts": PatientFacts(**data.get("patient_facts", {})),
        "hb_add_loinc_718_7": data.get("hb_add_loinc_718_7", False),
    }
    if data.get("file_sha256"):
        return ResultContext.for_file(photo(data["photo"]), file_sha256=data["file_sha256"], **common)
    return ResultContext.for_fhir_photo(photo(data["photo"]), **common)


def heatmap(data: Json) -> HeatMap:
    return HeatMap(
        analysis=data["analysis"], model=model_info(data["model"]), png=base64.b64decode(data["png_b64"])
    )


def report(data: Json) -> AnalysisReport:
    return AnalysisReport(
        quality=quality(data["quality"]),
        model_results=tuple(
            (model_info(item["model"]), result(item["result"])) for item in data["model_results"]
        ),
        not_performed=tuple(AnalysisNotPerformed(**item) for item in data.get("not_performed", [])),
    )


def audit_record(data: Json) -> AuditRecord:
    fields = dict(data)
    fields["action"] = AuditAction(fields["action"])
    fields["outcome"] = AuditOutcome(fields.get("outcome", "0"))
    fields["recorded"] = datetime.fromisoformat(fields["recorded"])
    fields["entities"] = tuple(fields.get("entities", ()))
    return AuditRecord(**fields)


# --- the builders, by the name an input file gives ---------------------------------------------


def _observation(case: Json) -> Any:
    return build_result_observation(
        result(case["result"]),
        model_info(case["model"]),
        context(case["context"]),
        supporting=case.get("supporting", ()),
    )


def _file_media(case: Json) -> Any:
    return build_file_media(
        context(case["context"]),
        image=base64.b64decode(case["image_b64"]),
        content_type=case["content_type"],
    )


def _bundle(case: Json) -> Any:
    ctx = context(case["context"])
    source_media = None
    if "source_image_b64" in case:
        source_media = build_file_media(
            ctx, image=base64.b64decode(case["source_image_b64"]), content_type=case["source_content_type"]
        )
    return build_result_bundle(
        report(case["report"]),
        ctx,
        source_media=source_media,
        heatmaps=[heatmap(item) for item in case.get("heatmaps", [])],
    )


BUILDERS: dict[str, Callable[[Json], Any]] = {
    "observation": _observation,
    "quality": lambda case: build_quality_observation(quality(case["quality"]), context(case["context"])),
    "not-performed": lambda case: build_not_performed_observation(
        AnalysisNotPerformed(**case["not_performed"]), context(case["context"])
    ),
    "model-device": lambda case: build_model_device(model_info(case["model"]), case["canonical"]),
    "software-device": lambda case: build_software_device(case["canonical"], case["software_version"]),
    "file-media": _file_media,
    "heatmap-media": lambda case: build_heatmap_media(heatmap(case["heatmap"]), context(case["context"])),
    "provenance": lambda case: build_provenance(
        context(case["context"]),
        key=case["key"],
        targets=case["targets"],
        model_devices=case["model_devices"],
    ),
    "audit-event": lambda case: build_audit_event(
        audit_record(case["record"]),
        canonical=case["canonical"],
        software_version=case["software_version"],
        site=case.get("site"),
    ),
    "code-systems": lambda case: {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": cs} for cs in build_code_systems(case["canonical"], case["version"])],
    },
    "bundle": _bundle,
}


@pytest.fixture(autouse=True)
def _far_time_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Neither UTC nor the photos' +09:00: a builder that converts to local time shows up as a diff.
    monkeypatch.setenv("TZ", "America/St_Johns")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def test_there_is_a_golden_case_for_every_builder() -> None:
    used = {
        json.loads((GOLDEN / f"{case}.input.json").read_text(encoding="utf-8"))["builder"] for case in CASES
    }
    assert used == set(BUILDERS)


@pytest.mark.parametrize("case", CASES)
def test_builder_output_matches_golden(case: str) -> None:
    data = json.loads((GOLDEN / f"{case}.input.json").read_text(encoding="utf-8"))
    produced = BUILDERS[data["builder"]](data)
    assert_valid_fhir(produced)

    expected_path = GOLDEN / f"{case}.expected.json"
    if REGENERATE:
        expected_path.write_text(_dump(produced), encoding="utf-8")
        return
    assert expected_path.exists(), f"no {expected_path.name}: run with PHOTOMARKER_REGEN_GOLDEN=1"
    expected = json.loads(expected_path.read_text(encoding="utf-8"))
    if produced != expected:
        diff = difflib.unified_diff(
            _dump(expected).splitlines(), _dump(produced).splitlines(), "expected", "produced", lineterm=""
        )
        pytest.fail(f"{case} differs from its golden file:\n" + "\n".join(diff))


@pytest.mark.parametrize("case", CASES)
def test_every_local_code_in_the_goldens_is_published(case: str) -> None:
    canonical = "https://photomarker.example.org/fhir"
    published = {
        (cs["url"], concept["code"])
        for cs in build_code_systems(canonical, "0.1.0")
        for concept in cs.get("concept", [])
    }
    open_systems = {codes.audit_event_system(canonical), codes.write_key_system(canonical)}
    expected_path = GOLDEN / f"{case}.expected.json"
    if not expected_path.exists():
        pytest.skip("golden not generated yet")
    produced = json.loads(expected_path.read_text(encoding="utf-8"))
    for resource in resources_in(produced):
        for coding in codings_in(resource):
            if (
                coding["system"].startswith(canonical + "/CodeSystem/")
                and coding["system"] not in open_systems
            ):
                assert (coding["system"], coding["code"]) in published, coding
