"""A patient whose chart holds videos and several photos of one lesion (a series to choose)."""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from tests.clinician.conftest import UPPER_LIMB, post_resource
from tests.video.clips import encode, skin_frames

LOWER_LEG = {"system": "http://snomed.info/sct", "code": "30021000", "display": "Lower leg structure"}


@dataclass
class FootageChart:
    patient: str
    video: str  # "Media/<id>": a 3 s MP4 in a Binary, Media.duration stated
    video_document: str  # "DocumentReference/<id>": a 2 s MP4 inline, no duration stated
    shin_photos: tuple[str, str]  # two Media of one lesion, bodySite.text "Right shin"
    forearm_photo: str  # a Media of another site


def _sha1(data: bytes) -> str:
    return base64.b64encode(hashlib.sha1(data).digest()).decode()


def _jpeg(array: np.ndarray, quality: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def seed_footage_chart(sekmet: str) -> FootageChart:
    patient = post_resource(
        sekmet, {"resourceType": "Patient", "name": [{"family": "Sato", "given": ["Ken"]}]}
    )
    clip = encode(skin_frames(18, size=320, seed=3), fps=6)
    binary = post_resource(
        sekmet,
        {"resourceType": "Binary", "contentType": "video/mp4", "data": base64.b64encode(clip).decode()},
    )
    video = post_resource(
        sekmet,
        {
            "resourceType": "Media",
            "status": "completed",
            "type": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/media-type", "code": "video"}]
            },
            "subject": {"reference": patient},
            "createdDateTime": "2026-12-01T10:00:00+09:00",
            "bodySite": {"coding": [LOWER_LEG], "text": "Right shin"},
            "duration": 3,
            "content": {"contentType": "video/mp4", "url": binary, "hash": _sha1(clip)},
        },
    )
    short = encode(skin_frames(12, size=256, seed=4), fps=6)
    video_document = post_resource(
        sekmet,
        {
            "resourceType": "DocumentReference",
            "status": "current",
            "subject": {"reference": patient},
            "content": [
                {
                    "attachment": {
                        "contentType": "video/mp4",
                        "data": base64.b64encode(short).decode(),
                        "creation": "2026-11-28T16:00:00+09:00",
                    }
                }
            ],
        },
    )
    shin = []
    for index, array in enumerate(skin_frames(2, size=320, seed=3)):
        photo = _jpeg(array, 92 - index)
        shin.append(
            post_resource(
                sekmet,
                {
                    "resourceType": "Media",
                    "status": "completed",
                    "subject": {"reference": patient},
                    "createdDateTime": f"2026-12-02T10:0{index}:00+09:00",
                    "bodySite": {"coding": [LOWER_LEG], "text": "Right shin"},
                    "content": {
                        "contentType": "image/jpeg",
                        "data": base64.b64encode(photo).decode(),
                        "hash": _sha1(photo),
                    },
                },
            )
        )
    forearm = _jpeg(skin_frames(1, size=320, seed=5)[0], 90)
    forearm_photo = post_resource(
        sekmet,
        {
            "resourceType": "Media",
            "status": "completed",
            "subject": {"reference": patient},
            "createdDateTime": "2026-12-02T11:00:00+09:00",
            "bodySite": {"coding": [UPPER_LIMB], "text": "Left forearm"},
            "content": {"contentType": "image/jpeg", "data": base64.b64encode(forearm).decode()},
        },
    )
    return FootageChart(patient, video, video_document, (shin[0], shin[1]), forearm_photo)
