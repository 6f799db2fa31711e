"""The patient's photos and videos as the clinician sees them: listed, checked, shown as
metadata-free images (a video as its poster frame, with its length).

Photos are read from the launch's FHIR server with the clinician's token. Every one goes through
``fhir_mappings.inputs`` with the launch patient as the expected subject, so a photo of another
patient is refused here exactly as the workers would refuse it. Images are decoded by the one
decoder (``models.intake``: size and pixel caps, EXIF orientation) and re-encoded small, with no
metadata at all, before they reach the browser.
"""

from __future__ import annotations

import base64
import copy
import io
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from PIL import Image

from fhir_mappings.codes import AIAST
from fhir_mappings.inputs import InputContext, photo_from_resource
from fhir_mappings.photo import Photo
from models.errors import InvalidRequest, PhotomarkerError, UnsupportedResource
from models.intake import IntakeLimits, decode_photo
from models.video import poster_frame
from models.video_container import VideoLimits, declared_length, is_video_type
from plugin.clinician.context import ClinicianContext
from plugin.clinician.wording import photo_label
from workers.fetch import photo_bytes
from workers.fhir_client import FhirClient

PHOTO_TYPES = ("Media", "DocumentReference")
_ID = r"(?!\.{1,2}$)[A-Za-z0-9\-.]{1,64}"
PHOTO_REFERENCE = re.compile(rf"^(Media|DocumentReference)/({_ID})$")
# Long side of the images sent to the browser.
IMAGE_SIZES = {"thumb": 320, "large": 960}
_SEARCH_COUNT = "100"


@dataclass
class PhotoCard:
    """One photo in the patient view."""

    reference: str  # "Media/1"
    taken_at: datetime | None
    body_site: str | None
    kind: str | None
    problem: str | None = None  # why it cannot be analysed, when it cannot
    earlier: list[Any] = field(default_factory=list)  # ResultView of earlier analyses
    video: bool = False
    length_s: float | None = None  # a video's length, when it states one

    @property
    def label(self) -> str:
        return photo_label(self.taken_at, self.body_site, noun="Video" if self.video else "Photo")


def checked_reference(value: str) -> str:
    if not PHOTO_REFERENCE.match(value):
        raise InvalidRequest("a photo is named Media/<id> or DocumentReference/<id>")
    return value


def list_photos(context: ClinicianContext, client: FhirClient) -> list[PhotoCard]:
    """The launch patient's photos (Media and image DocumentReferences), newest first."""
    patient = context.patient
    cards: list[PhotoCard] = []
    for resource_type in PHOTO_TYPES:
        bundle = client.search(resource_type, {"subject": patient, "_count": _SEARCH_COUNT})
        for resource in _entries(bundle, resource_type):
            if _is_ai_output(resource) or not _has_picture(resource):
                continue
            reference = f"{resource_type}/{resource.get('id')}"
            if not PHOTO_REFERENCE.match(reference):
                continue
            try:
                photo = read_photo_resource(resource, context)
                video = is_video_type(photo.content_type)
                length = video_length(resource, photo, context.settings) if video else None
            except PhotomarkerError as error:
                cards.append(PhotoCard(reference, None, None, None, problem=f"{error.code}: {error.message}"))
                continue
            site = body_site(resource, photo)
            cards.append(
                PhotoCard(reference, photo.taken_at, site, photo.kind_hint, video=video, length_s=length)
            )
    cards.sort(key=lambda card: card.taken_at.timestamp() if card.taken_at else 0.0, reverse=True)
    return cards


def body_site(resource: dict[str, Any], photo: Photo) -> str | None:
    """The body site as the sender wrote it (``bodySite.text``), else its coding's display."""
    sites = resource.get("bodySite")
    # Media.bodySite is one CodeableConcept; an R5 DocumentReference's is a list of CodeableReference.
    for site in sites if isinstance(sites, list) else [sites]:
        concept = site.get("concept", site) if isinstance(site, dict) else None
        text = concept.get("text") if isinstance(concept, dict) else None
        if isinstance(text, str) and text.strip():
            return text.strip()
    return photo.body_site[0].display if photo.body_site else None


def label_of(resource: dict[str, Any], photo: Photo) -> str:
    """ "Photo of 20 Nov 2026 · Left forearm" (or "Video of …")."""
    noun = "Video" if is_video_type(photo.content_type) else "Photo"
    return photo_label(photo.taken_at, body_site(resource, photo), noun=noun)


def video_length(resource: dict[str, Any], photo: Photo, settings: Any) -> float | None:
    """Seconds: ``Media.duration`` when the sender stated it, else what inline bytes declare.

    A video held in a Binary and stated without a duration is not downloaded just to list it.
    """
    stated = resource.get("duration")
    if isinstance(stated, int | float) and not isinstance(stated, bool) and stated >= 0:
        return float(stated)
    if photo.data is None:
        return None
    limits = VideoLimits.from_settings(settings)
    return declared_length(photo.data, limits=limits, declared_content_type=photo.content_type)


def read_photo_resource(resource: dict[str, Any], context: ClinicianContext) -> Photo:
    """The resource as a ``Photo``, refused unless its subject is the launch patient."""
    ctx = InputContext(
        fhir_base=context.launch.iss,
        expected_patient=context.patient,
        max_bytes=context.settings.max_photo_bytes,
        max_video_bytes=context.settings.video_max_bytes,
    )
    return photo_from_resource(resource, ctx)


def fetch_photo(
    reference: str, context: ClinicianContext, client: FhirClient
) -> tuple[dict[str, Any], Photo]:
    """Read ``Media/<id>`` or ``DocumentReference/<id>`` and check it belongs to the launch patient."""
    resource = client.read(checked_reference(reference))
    if resource.get("resourceType") != reference.split("/", 1)[0]:
        raise UnsupportedResource(f"{reference} is not a photo")
    return resource, read_photo_resource(resource, context)


def image_for_browser(photo: Photo, context: ClinicianContext, client: FhirClient | None, size: str) -> bytes:
    """The photo (a video's poster frame) decoded, made small, re-encoded as JPEG without metadata."""
    settings = context.settings
    if is_video_type(photo.content_type):
        data = photo_bytes(photo, client, max_bytes=settings.video_max_bytes)
        long_side = IMAGE_SIZES.get(size, IMAGE_SIZES["thumb"])
        poster = poster_frame(
            data,
            limits=VideoLimits.from_settings(settings),
            declared_content_type=photo.content_type,
            min_side=long_side,
        )
        return _small_jpeg(poster.image, long_side)
    data = photo_bytes(photo, client, max_bytes=settings.max_photo_bytes)
    return reencode(data, settings, size, declared=photo.content_type)


def reencode(data: bytes, settings: Any, size: str, *, declared: str | None = None) -> bytes:
    long_side = IMAGE_SIZES.get(size, IMAGE_SIZES["thumb"])
    decoded = decode_photo(
        data,
        limits=IntakeLimits.from_settings(settings),
        declared_content_type=declared,
        min_side=long_side,
    )
    return _small_jpeg(decoded.pixels, long_side)


def _small_jpeg(pixels: Image.Image, long_side: int) -> bytes:
    image = pixels.copy()
    image.thumbnail((long_side, long_side))
    out = io.BytesIO()
    # A fresh RGB image saved with no exif/icc/xmp arguments: nothing but pixels leaves the server.
    image.convert("RGB").save(out, format="JPEG", quality=85)
    return out.getvalue()


def inline_copy(resource: dict[str, Any], photo: Photo, data: bytes) -> dict[str, Any]:
    """The resource with its Binary replaced by inline data, for a job that must not touch the server."""
    copied = copy.deepcopy(resource)
    encoded = base64.b64encode(data).decode("ascii")
    attachments: list[dict[str, Any]] = []
    if copied.get("resourceType") == "Media" and isinstance(copied.get("content"), dict):
        attachments = [copied["content"]]
    else:
        attachments = [
            item["attachment"]
            for item in copied.get("content") or []
            if isinstance(item, dict) and isinstance(item.get("attachment"), dict)
        ]
    for attachment in attachments:
        url = attachment.get("url")
        if (
            isinstance(url, str)
            and photo.binary_reference
            and url.rstrip("/").endswith(photo.binary_reference)
        ):
            attachment.pop("url")
            attachment["data"] = encoded
    return copied


def _entries(bundle: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    found = []
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") == resource_type:
            found.append(resource)
    return found


def _is_ai_output(resource: dict[str, Any]) -> bool:
    """Heat maps are Media too, marked AI-asserted; they are shown with their result, not as photos."""
    meta = resource.get("meta")
    security = meta.get("security") if isinstance(meta, dict) else None
    return any(
        isinstance(label, dict)
        and label.get("code") == AIAST["code"]
        and label.get("system") == AIAST["system"]
        for label in security or []
    )


def _has_picture(resource: dict[str, Any]) -> bool:
    """Every Media; a DocumentReference only with a photo or a video (not a PDF letter)."""
    if resource.get("resourceType") == "Media":
        return True
    return any(
        isinstance(item, dict)
        and isinstance(item.get("attachment"), dict)
        and str(item["attachment"].get("contentType", "")).lower().startswith(("image/", "video/"))
        for item in resource.get("content") or []
    )
