"""Pure parts of the inbox: retake requests, notification Bundles, site rules, scope coverage."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from fhir_mappings.inputs import InputContext, photo_from_resource
from fhir_mappings.observations import build_quality_observation
from fhir_mappings.retake import (
    RetakeResource,
    build_retake_request,
    is_quality_observation,
    needs_retake,
    retake_advice,
    retake_transaction,
)
from models.errors import InvalidRequest, PhotomarkerError, UrlNotAllowed
from models.quality import ADVICE_BLUR, ADVICE_DARK
from models.results import QualityCheck, QualityCheckName, QualityVerdict
from plugin.settings import load_settings
from tests.fhir_validation import CANONICAL, ISSUED, assert_valid_fhir, sample_context, sample_quality
from workers.inbox.backend_auth import missing_scopes, scope_covers
from workers.inbox.notification import focus_on_server, parse_notification
from workers.inbox.rules import InboxRules

BASE = "http://fhir.example.org/fhir"


def stored_quality(verdict: QualityVerdict) -> dict[str, Any]:
    """The photo-quality Observation as the server returns it after the write-back."""
    observation = build_quality_observation(verdict, sample_context())
    return observation | {"id": "obs-9", "device": {"reference": "Device/sw-1"}}


def failing_verdict() -> QualityVerdict:
    return QualityVerdict(
        checks=(
            QualityCheck(QualityCheckName.BLUR, False, 12.0, 60.0, advice=ADVICE_BLUR),
            QualityCheck(QualityCheckName.EXPOSURE, False, 20.0, 40.0, advice=ADVICE_DARK),
            QualityCheck(QualityCheckName.CONTENT, True, 0.4, 0.05),
        ),
        content_found="skin",
    )


# --- retake requests --------------------------------------------------------------------------


def test_a_failed_photo_gets_a_communication_saying_what_to_fix() -> None:
    quality = stored_quality(failing_verdict())
    assert is_quality_observation(quality, CANONICAL) and needs_retake(quality, CANONICAL)
    assert retake_advice(quality) == [ADVICE_BLUR, ADVICE_DARK]
    request = build_retake_request(
        "Communication",
        quality=quality,
        photo_reference="Media/photo-17/_history/3",
        canonical=CANONICAL,
        issued=ISSUED,
    )
    assert_valid_fhir(request)
    assert request["recipient"] == [{"reference": "Patient/p-1001"}]
    assert request["subject"] == {"reference": "Patient/p-1001"}
    assert {"reference": "Media/photo-17/_history/3"} in request["about"]
    assert request["reasonReference"] == [{"reference": "Observation/obs-9"}]
    assert request["sender"] == {"reference": "Device/sw-1"}
    texts = [payload["contentString"] for payload in request["payload"]]
    assert ADVICE_BLUR in texts and ADVICE_DARK in texts
    assert request["sent"] == "2026-03-01T10:02:03+09:00"  # the caller's offset, kept


def test_a_task_can_be_chosen_instead_and_the_write_is_a_conditional_create() -> None:
    quality = stored_quality(failing_verdict())
    task = build_retake_request(
        "Task",
        quality=quality,
        photo_reference="Media/photo-17/_history/3",
        canonical=CANONICAL,
        issued=ISSUED,
    )
    assert_valid_fhir(task)
    assert task["owner"] == {"reference": "Patient/p-1001"}
    assert task["focus"] == {"reference": "Media/photo-17/_history/3"}
    assert ADVICE_BLUR in task["description"]
    bundle = retake_transaction(task)
    assert_valid_fhir(bundle)
    entry = bundle["entry"][0]
    identifier = task["identifier"][0]
    assert entry["request"]["ifNoneExist"] == f"identifier={identifier['system']}|{identifier['value']}"
    # Same photo version → same identifier, whichever resource type and whenever it is built.
    again = build_retake_request(
        "Communication",
        quality=quality,
        photo_reference="Media/photo-17/_history/3",
        canonical=CANONICAL,
        issued=ISSUED,
    )
    assert again["identifier"] == task["identifier"]


def test_an_acceptable_photo_needs_no_retake() -> None:
    quality = stored_quality(sample_quality(acceptable=True))
    assert is_quality_observation(quality, CANONICAL)
    assert not needs_retake(quality, CANONICAL)
    assert retake_advice(quality) == []


# --- notification Bundles -----------------------------------------------------------------------


def r4_backport(kind: str, focuses: list[str], resources: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    events = [
        {
            "name": "notification-event",
            "part": [
                {"name": "event-number", "valueString": str(n)},
                {"name": "focus", "valueReference": {"reference": focus}},
            ],
        }
        for n, focus in enumerate(focuses, 1)
    ]
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "subscription", "valueReference": {"reference": f"{BASE}/Subscription/s1"}},
            {"name": "topic", "valueCanonical": "http://example.org/topic/photo"},
            {"name": "type", "valueCode": kind},
            *events,
        ],
    }
    return {
        "resourceType": "Bundle",
        "type": "history",
        "entry": [{"resource": parameters}, *({"resource": r} for r in resources)],
    }


def test_r4_backport_r4b_and_r5_notifications_are_read_alike() -> None:
    media = {"resourceType": "Media", "id": "m1", "meta": {"versionId": "2"}}
    r4 = parse_notification(r4_backport("event-notification", [f"{BASE}/Media/m1"], [media]))
    assert r4.type == "event-notification"
    assert r4.focuses == (f"{BASE}/Media/m1",)
    assert r4.resources["Media/m1"] == media
    status = {
        "resourceType": "SubscriptionStatus",
        "type": "event-notification",
        "subscription": {"reference": "Subscription/s1"},
        "notificationEvent": [{"eventNumber": "4", "focus": {"reference": "Media/m1"}}],
    }
    r4b = parse_notification({"resourceType": "Bundle", "type": "history", "entry": [{"resource": status}]})
    r5 = parse_notification(
        {"resourceType": "Bundle", "type": "subscription-notification", "entry": [{"resource": status}]}
    )
    assert r4b.focuses == r5.focuses == ("Media/m1",)
    assert parse_notification(r4_backport("heartbeat", [])).type == "heartbeat"
    assert parse_notification(r4_backport("handshake", [])).type == "handshake"


@pytest.mark.parametrize(
    "body",
    [
        {"resourceType": "Bundle", "type": "transaction", "entry": []},
        {"resourceType": "Bundle", "type": "history", "entry": [{"resource": {"resourceType": "Patient"}}]},
        {"resourceType": "Bundle", "type": "history"},
        ["not", "a", "resource"],
    ],
)
def test_anything_else_is_not_a_notification(body: Any) -> None:
    with pytest.raises(PhotomarkerError) as caught:
        parse_notification(body)
    assert caught.value.code in ("invalid-request", "not-fhir")


def test_a_focus_must_be_on_our_server() -> None:
    assert focus_on_server(f"{BASE}/Media/m1/_history/3", BASE).version_id == "3"
    assert focus_on_server("Media/m1", BASE).reference == "Media/m1"
    with pytest.raises(UrlNotAllowed):
        focus_on_server("http://elsewhere.example/fhir/Media/m1", BASE)
    with pytest.raises(InvalidRequest):
        focus_on_server(f"{BASE}/Media/../../x", BASE)


# --- site rules -----------------------------------------------------------------------------------


def media(**extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Media",
        "id": "m1",
        "status": "completed",
        "subject": {"reference": "Patient/p1"},
        "content": {"contentType": "image/jpeg", "url": "Binary/b1"},
        **extra,
    }


def decide(resource: dict[str, Any], **settings: Any) -> Any:
    rules = InboxRules.from_settings(load_settings(**settings))
    return rules.decide(resource, photo_from_resource(resource, InputContext(fhir_base=BASE)))


def test_operator_patient_means_patient_submitted_and_nothing_else_does_by_default() -> None:
    assert decide(media(operator={"reference": "Patient/p1"})).kind == "auto"
    assert decide(media(operator={"reference": "Practitioner/d1"})).kind is None
    assert decide(media()).kind is None
    assert decide(media(operator={"reference": "Patient/p1"}), inbox_operator_patient=False).kind is None


def test_a_tag_or_a_type_can_mark_a_photo_patient_submitted() -> None:
    tagged = media(meta={"tag": [{"system": "http://example.org/src", "code": "patient-app"}]})
    assert decide(tagged, inbox_submitted_tags=("http://example.org/src|patient-app",)).kind == "auto"
    typed = media(type={"coding": [{"system": "http://example.org/media-type", "code": "selfie"}]})
    assert decide(typed, inbox_submitted_types=("selfie",)).kind == "auto"


def test_kind_rules_route_by_body_site_and_can_skip() -> None:
    eye = media(
        operator={"reference": "Patient/p1"},
        bodySite={"coding": [{"system": "http://snomed.info/sct", "code": "29445007"}]},
    )
    rules = {"http://snomed.info/sct|29445007": "conjunctiva", "*": "skip"}
    assert decide(eye, inbox_kind_rules=rules).kind == "conjunctiva"
    other = media(operator={"reference": "Patient/p1"})
    decision = decide(other, inbox_kind_rules=rules)
    assert decision.kind is None and "skipped" in decision.reason


# --- scopes ------------------------------------------------------------------------------------------


def test_scope_coverage_v1_and_v2() -> None:
    assert scope_covers("system/*.cruds", "system/Media.rs")
    assert scope_covers("system/*.read", "system/Media.rs")
    assert scope_covers("system/Observation.c", "system/Observation.c")
    assert not scope_covers("system/*.rs", "system/Observation.c")
    assert not scope_covers("patient/*.rs", "system/Media.rs")
    assert missing_scopes(["system/Media.rs", "system/Observation.c"], ["system/*.rs"]) == [
        "system/Observation.c"
    ]


# --- beat -------------------------------------------------------------------------------------------


def test_beat_runs_the_inbox_tick_only_when_the_inbox_is_configured() -> None:
    from workers.celery_app import INBOX_POLL_TASK, celery_config

    assert "inbox-poll" not in celery_config(load_settings())["beat_schedule"]
    tick = celery_config(load_settings(inbox_client_id="pm", inbox_poll_interval_s=120))["beat_schedule"][
        "inbox-poll"
    ]
    assert tick["task"] == INBOX_POLL_TASK and tick["schedule"] == 120
    # Polling off still leaves a tick: it follows up jobs (retake requests) and polls nothing.
    assert celery_config(load_settings(inbox_client_id="pm", inbox_poll_interval_s=0))["beat_schedule"][
        "inbox-poll"
    ]


def test_the_poller_follows_next_links_on_its_own_server_only() -> None:
    from workers.inbox.poller import _next_page

    page = {
        "link": [
            {
                "relation": "next",
                "url": f"{BASE}/Media?_lastUpdated=gt2026-01-01T00%3A00%3A00.000Z&_offset=100",
            }
        ]
    }
    assert _next_page(page, BASE) == (
        "Media",
        {"_lastUpdated": "gt2026-01-01T00:00:00.000Z", "_offset": "100"},
    )
    assert (
        _next_page({"link": [{"relation": "next", "url": "http://evil.example/fhir/Media?x=1"}]}, BASE)
        is None
    )
    assert _next_page({"link": [{"relation": "self", "url": f"{BASE}/Media"}]}, BASE) is None


# --- golden output of the retake builder ------------------------------------------------------------

GOLDEN = Path(__file__).resolve().parent / "golden"
# Read at import: the isolated-settings fixture clears PHOTOMARKER_* before each test.
REGENERATE = os.environ.get("PHOTOMARKER_REGEN_GOLDEN") == "1"


@pytest.mark.parametrize("kind", ["Communication", "Task"])
def test_retake_request_matches_its_golden_file(kind: RetakeResource) -> None:
    """Regenerate with PHOTOMARKER_REGEN_GOLDEN=1 (then read the diff before keeping it)."""
    bundle = retake_transaction(
        build_retake_request(
            kind,
            quality=stored_quality(failing_verdict()),
            photo_reference="Media/photo-17/_history/3",
            canonical=CANONICAL,
            issued=ISSUED,
        )
    )
    assert_valid_fhir(bundle)
    path = GOLDEN / f"retake-{kind.lower()}.expected.json"
    produced = json.dumps(bundle, indent=2, ensure_ascii=False) + "\n"
    if REGENERATE:
        path.write_text(produced, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == produced
