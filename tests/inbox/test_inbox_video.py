"""The inbox scores a patient's video like a photo, and asks for a new one when it fails the gate."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from tests.inbox.conftest import SNOMED, InboxStack
from tests.video.clips import encode, skin_frames
from workers.celery_app import celery_for, services
from workers.inbox.intake import Intake
from workers.inbox.poller import poll_once
from workers.inbox.runtime import inbox_runtime
from workers.inbox.tasks import inbox_poll


def video_media(data: bytes, patient: str) -> dict[str, Any]:
    return {
        "resourceType": "Media",
        "status": "completed",
        "subject": {"reference": patient},
        "operator": {"reference": patient},  # the patient sent it from the app
        "bodySite": {"coding": [{"system": SNOMED, "code": "53120007"}]},
        "content": {
            "contentType": "video/mp4",
            "data": base64.b64encode(data).decode(),
            "hash": base64.b64encode(hashlib.sha1(data).digest()).decode(),
        },
    }


def test_a_patients_video_is_scored_and_a_shaky_one_gets_a_retake_request(stack: InboxStack) -> None:
    with stack.app.app_context():
        poll_once(Intake(services(), inbox_runtime(), celery_for()))  # a fresh store's first poll: the cursor
    patient = stack.new_patient()
    steady = encode(skin_frames(12, size=256, seed=1), fps=6)
    shaky = encode(skin_frames(12, size=256, seed=2, blur_from=1), fps=6)
    steady_id, shaky_id = (
        stack.admin.post("Media", json=video_media(data, patient)).json()["id"] for data in (steady, shaky)
    )
    with stack.app.app_context():
        inbox_poll.run()
    videos = [f"Media/{steady_id}", f"Media/{shaky_id}"]

    def finished() -> list[Any]:
        found = stack.jobs_for(videos)
        return found if len(found) == 2 and all(j.finished for j in found) else []

    jobs = stack.wait("one job per video", finished)
    assert all(j.status == "done" for j in jobs)
    observations = stack.observations_of(patient)
    steady_results = [o for o in observations if o["derivedFrom"][0]["reference"].startswith(videos[0])]
    codes = [o["code"]["coding"][0]["code"] for o in steady_results]
    assert "tis" in codes and len(codes) == len(set(codes)), "one Observation per analysis for the video"

    (request,) = stack.wait(
        "a retake request for the shaky video", lambda: stack.search(f"Communication?subject={patient}")
    )
    assert {"reference": f"{videos[1]}/_history/1"} in request["about"]
    texts = " ".join(p["contentString"] for p in request["payload"])
    assert "Your video could not be used" in texts and "Film the lesion" in texts
