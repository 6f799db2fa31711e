"""The automated inbox end to end: patient-submitted photos scored without a click, blurred ones
answered with a retake request, each photo version scored once however it arrives, and a job
whose token the server refuses tried again with a fresh one.

Against the real FHIR server (SMART Backend Services enforced, Subscriptions on), real Redis and
a real worker process. The tests share one stack and run in order: the Subscription the first one
creates stays active for the rest (the receiver half of "receiver and poller together").
"""

from __future__ import annotations

import base64
import json
import random
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import update

from plugin.app import create_app
from plugin.cli import main
from plugin.inbox.notifications import SECRET_HEADER
from tests.fhir_validation import assert_valid_fhir
from tests.inbox.conftest import SECRET, TOPIC, InboxStack, photo_bytes
from tests.inbox.notification_bundles import notification
from workers.celery_app import celery_for, services
from workers.inbox.followup import follow_up
from workers.inbox.intake import Intake, send_inbox_job
from workers.inbox.poller import poll_once
from workers.inbox.runtime import inbox_runtime
from workers.inbox.store import PhotoVersion, inbox_photos
from workers.inbox.tasks import inbox_poll
from workers.job_records import NewJob

pytestmark = pytest.mark.fhir_server


def document(patient: str, content_type: str, data: bytes) -> dict[str, Any]:
    """A DocumentReference the patient app filed (author = the patient)."""
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": patient},
        "author": [{"reference": patient}],
        "content": [{"attachment": {"contentType": content_type, "data": base64.b64encode(data).decode()}}],
    }


# --- the real thing --------------------------------------------------------------------------------


def test_a_patients_photo_is_scored_and_a_blurred_one_gets_a_retake_request_without_a_click(
    stack: InboxStack,
) -> None:
    topic = {
        "resourceType": "Basic",
        "id": "topic-photo-added",
        "modifierExtension": [
            {
                "url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic.status",
                "valueCode": "active",
            }
        ],
        "extension": [
            {
                "url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic.url",
                "valueUri": TOPIC,
            },
            {
                "url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic.resourceTrigger",
                "extension": [
                    {"url": "resource", "valueUri": "http://hl7.org/fhir/StructureDefinition/Media"},
                    {"url": "supportedInteraction", "valueCode": "create"},
                    {"url": "supportedInteraction", "valueCode": "update"},
                    {"url": "fhirPathCriteria", "valueString": "true"},
                ],
            },
        ],
        "code": {"coding": [{"system": "http://hl7.org/fhir/fhir-types", "code": "SubscriptionTopic"}]},
    }
    stack.admin.put("Basic/topic-photo-added", json=topic).raise_for_status()
    env = {f"PHOTOMARKER_{k.upper()}": v for k, v in stack.values.items()}
    result = CliRunner().invoke(
        main,
        ["inbox", "subscribe", "--endpoint", stack.endpoint, "--topic", TOPIC, "--heartbeat", "2"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    subscription = json.loads(result.stdout)["subscription"]
    stack.wait(
        "the Subscription to become active (handshake answered)",
        lambda: stack.admin.get(subscription).json().get("status") == "active",
    )
    assert stack.audit_events("inbox.subscription.handshake")
    stack.wait("a heartbeat", lambda: stack.audit_events("inbox.subscription.heartbeat"), timeout=20)

    patient = stack.new_patient()
    (sent,) = stack.new_media(patient, range(1, 2))
    (blurred,) = stack.new_media(patient, range(2, 3), blurred=True)
    (by_nurse,) = stack.new_media(patient, range(3, 4), operator="Practitioner/nurse-1")

    def scored() -> list[dict[str, Any]]:
        observations = stack.observations_of(patient)
        photos = {o["derivedFrom"][0]["reference"] for o in observations}
        return observations if {f"{sent}/_history/1", f"{blurred}/_history/1"} <= photos else []

    observations = stack.wait("Observations for the patient's photos", scored)
    for observation in observations:
        assert observation["meta"]["security"][0]["code"] == "AIAST"
    assert not [o for o in observations if o["derivedFrom"][0]["reference"].startswith(by_nurse + "/")]
    assert any(by_nurse in r.entities[0] for r in stack.audit_events("inbox.photo.skipped"))

    communications = stack.wait(
        "a retake request for the blurred photo",
        lambda: stack.search(f"Communication?subject={patient}"),
    )
    (request,) = communications
    assert {"reference": f"{blurred}/_history/1"} in request["about"]
    assert request["recipient"] == [{"reference": patient}]
    texts = " ".join(p["contentString"] for p in request["payload"])
    assert "Hold the phone still" in texts
    assert_valid_fhir({k: v for k, v in request.items() if k != "meta"})
    assert any(blurred + "/_history/1" in r.entities for r in stack.audit_events("inbox.retake.requested"))
    jobs = stack.jobs_for([sent, blurred, by_nurse])
    assert sorted(j.reference for j in jobs if j.reference) == sorted(
        [f"{sent}/_history/1", f"{blurred}/_history/1"]
    )
    assert all(j.status == "done" for j in jobs)

    # A follow-up done twice (say its worker died after the write) still leaves one request.
    (blurred_job,) = [j for j in jobs if j.reference == f"{blurred}/_history/1"]
    with stack.app.app_context():
        svc = services()
        with svc.jobs.write() as connection:
            connection.execute(
                update(inbox_photos).where(inbox_photos.c.job_id == blurred_job.id).values(state="queued")
            )
        assert follow_up(svc, inbox_runtime(), celery_for(), [blurred_job.id]) == {"retake-requested": 1}
    assert len(stack.search(f"Communication?subject={patient}")) == 1

    # A site that chose Task gets a Task owned by the patient instead (the server validates it strictly).
    tasks_app = create_app(stack.settings_with(inbox_retake_resource="Task"))
    with tasks_app.app_context():
        svc = services()
        with svc.jobs.write() as connection:
            connection.execute(
                update(inbox_photos).where(inbox_photos.c.job_id == blurred_job.id).values(state="queued")
            )
        assert follow_up(svc, inbox_runtime(), celery_for(), [blurred_job.id]) == {"retake-requested": 1}
    (task,) = stack.search(f"Task?owner={patient}")
    assert task["focus"] == {"reference": f"{blurred}/_history/1"} and task["status"] == "requested"
    assert "Hold the phone still" in task["description"]


def test_receiver_and_poller_together_score_each_photo_version_once(stack: InboxStack) -> None:
    with stack.app.app_context():
        intake = Intake(services(), inbox_runtime(), celery_for())
        poll_once(intake)  # the first poll of a fresh store only sets the cursor
    patient = stack.new_patient()
    media = stack.new_media(patient, range(10, 13))
    # Photos also arrive as DocumentReferences (no Subscription covers them: only the poller sees them).
    photo, letter = (
        stack.admin.post("DocumentReference", json=document(patient, content_type, data)).json()["id"]
        for content_type, data in (("image/jpeg", photo_bytes(14)), ("application/pdf", b"%PDF-1.4\n"))
    )
    with stack.app.app_context():
        result = inbox_poll.run()
    assert "refused" not in result
    photos = [*media, f"DocumentReference/{photo}"]

    def finished() -> list[Any]:
        found = stack.jobs_for(photos)
        return found if len(found) >= 4 and all(j.finished for j in found) else []

    jobs = stack.wait("one job per photo", finished)
    assert len(jobs) == 4 and all(j.status == "done" for j in jobs)
    assert not stack.jobs_for([f"DocumentReference/{letter}"])  # a letter is not a photo
    observations = stack.observations_of(patient)
    assert {o["derivedFrom"][0]["reference"] for o in observations} == {f"{ref}/_history/1" for ref in photos}
    store = stack.inbox_store()
    assert store.cursor(stack.fhir_base, "Media") is not None
    assert store.cursor(stack.fhir_base, "DocumentReference") is not None
    env = {f"PHOTOMARKER_{k.upper()}": v for k, v in stack.values.items()}
    again = CliRunner().invoke(main, ["inbox", "poll"], env=env)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["outcomes"].get("queued", 0) == 0
    assert len(stack.jobs_for(photos)) == 4


def test_a_burst_of_500_notifications_scores_each_distinct_photo_once_and_loses_none(
    stack: InboxStack,
) -> None:
    patient = stack.new_patient()
    media = stack.new_media(patient, range(100, 150))  # 50 photos; the Subscription notifies too
    resources = {ref: stack.admin.get(ref).json() for ref in media}
    rng = random.Random(9)  # noqa: S311  (a shuffle, not a secret)
    bodies = []
    for n in range(500):
        ref = media[n % len(media)]
        body = notification([ref], base=stack.fhir_base)
        if n % 3 == 0:  # full-resource payload: the resource rides along
            body["entry"].append({"fullUrl": f"{stack.fhir_base}/{ref}", "resource": resources[ref]})
        if n % 5 == 0:  # R4B SubscriptionStatus instead of the backport Parameters
            body["entry"][0] = {
                "resource": {
                    "resourceType": "SubscriptionStatus",
                    "status": "active",
                    "type": "event-notification",
                    "subscription": {"reference": "Subscription/test"},
                    "topic": TOPIC,
                    "notificationEvent": [{"eventNumber": str(n), "focus": {"reference": ref}}],
                }
            }
        bodies.append(body)
    rng.shuffle(bodies)
    started = time.monotonic()
    headers = {SECRET_HEADER: SECRET, "Content-Type": "application/fhir+json"}
    with httpx.Client(timeout=120) as http, ThreadPoolExecutor(8) as pool:
        statuses = Counter(
            pool.map(
                lambda body: http.post(stack.endpoint, content=json.dumps(body), headers=headers).status_code,
                bodies,
            )
        )
    accepted_s = time.monotonic() - started
    assert statuses == {200: 500}

    def all_finished() -> bool:
        found = stack.jobs_for(media)
        return len(found) >= len(media) and all(j.finished for j in found)

    stack.wait("every photo's job to finish", all_finished, timeout=240)
    total_s = time.monotonic() - started
    jobs = stack.jobs_for(media)
    per_version = Counter(j.reference for j in jobs)
    assert len(per_version) == 50 and set(per_version.values()) == {1}, per_version
    assert all(j.status == "done" for j in jobs)
    observations = stack.observations_of(patient)
    identifiers = Counter(o["identifier"][0]["value"] for o in observations)
    assert max(identifiers.values()) == 1
    assert {o["derivedFrom"][0]["reference"].split("/_history/")[0] for o in observations} == set(media)
    duplicates = [r for r in stack.audit_events("inbox.photo.duplicate") if r.patient == patient]
    assert len(duplicates) >= 450
    # The worker's log names jobs, never the patient, a photo's content or a token.
    log = stack.worker.log()
    assert patient.split("/")[1] not in log and "Bearer" not in log and "eyJ" not in log
    print(f"\nburst: 500 notifications accepted in {accepted_s:.1f} s; 50 photos scored in {total_s:.1f} s")


def test_a_job_whose_token_the_server_refuses_is_tried_again_with_a_fresh_one(stack: InboxStack) -> None:
    patient = stack.new_patient()
    # Not patient-submitted, so a notification (if a Subscription is active) skips it; this test
    # then queues it by hand, as the intake would.
    (ref,) = stack.new_media(patient, range(200, 201), operator=None)
    time.sleep(1)
    resource_type, resource_id = ref.split("/")
    version = PhotoVersion(stack.fhir_base, resource_type, resource_id, "1")
    with stack.app.app_context():
        svc = services()
        store = inbox_runtime().store(svc)
        first_id = uuid.uuid4().hex
        store.forget(version)
        assert store.claim(version, source="poll", job_id=first_id)
        # What a job that waited past its token's lifetime looks like to the server: a token it refuses.
        job = svc.jobs.create(
            NewJob(
                id=first_id,
                queue="skin",
                kind="auto",
                requested_by="service:inbox",
                fhir_base=stack.fhir_base,
                reference=version.reference,
                credential=svc.credentials.put("expired-or-revoked-token"),
                patient=patient,
            )
        )
        store.settle(version, "queued")
        send_inbox_job(celery_for(), job)

    def settled() -> Any:
        row = store.get(version)
        if row is None or row.job_id == first_id or row.state != "done":
            return None
        return row

    row = stack.wait("the retried job to finish", settled)
    assert row.attempts == 2
    jobs = {j.id: j for j in stack.jobs_for([ref])}
    assert jobs[first_id].status == "failed" and jobs[first_id].error_code == "fhir-server-error"
    assert row.job_id is not None and jobs[row.job_id].status == "done"
    assert {o["derivedFrom"][0]["reference"] for o in stack.observations_of(patient)} == {version.reference}
