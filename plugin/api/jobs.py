"""The jobs API for machine clients: submit a photo for analysis, then read how it went.

``POST /api/v1/jobs`` takes ``{"resource": <Media or DocumentReference>}`` (a photo or a video),
``{"reference": "Media/123"}`` or ``{"series": ["Media/1", "Media/2", …]}`` (photos of one lesion,
analysed as one; kept in the job as a FHIR ``List`` of those references) plus an optional
``"kind"``, checks it as far as it can without the photo's pixels, records the job and queues a
message that carries only references. It answers 202 with the job id; ``GET /api/v1/jobs/<id>``
tells queued / running / done / failed, the reason of a failure, what was written, and the result
Bundle when there was no FHIR server to write it to. Every request needs an API token; a client
sees only its own jobs. The contract is ``openapi.json`` beside this file, served at
``/api/v1/openapi.json``.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from datetime import datetime
from importlib.resources import files
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from audit.record import AuditOutcome
from fhir_mappings.attachments import check_declared_hash
from fhir_mappings.inputs import InputContext, photo_from_resource
from fhir_mappings.photo import Photo
from models.errors import (
    BinaryUnavailable,
    InvalidRequest,
    InvalidResource,
    InvalidSeries,
    MalformedJson,
    NotAuthenticated,
    NotFhir,
    NotFound,
    PhotomarkerError,
    QueueUnavailable,
    RequestTooLarge,
    UnsupportedContentType,
)
from models.intake import IntakeLimits, check_declared_pixels
from models.video_container import VideoLimits, check_video_header, is_video_type, looks_like_video
from plugin.api.tokens import ApiTokens
from workers.celery_app import Services, celery_for, enqueue, queue_for, services
from workers.job_records import Job, NewJob, job_audit_record
from workers.progress import Progress, ProgressBoard

log = logging.getLogger(__name__)

api_v1 = Blueprint("api_v1", __name__, url_prefix="/api/v1")

KINDS = ("auto", "skin", "conjunctiva")
JSON_TYPES = ("application/json", "application/fhir+json")
_FIELDS = frozenset({"resource", "reference", "series", "kind"})
# FHIR id: 1–64 of [A-Za-z0-9-.]; "." and ".." are path segments to an HTTP client: refused.
_ID = r"(?!\.{1,2}(?:/|$))[A-Za-z0-9\-.]{1,64}"
_PHOTO_REFERENCE = re.compile(rf"^(?:Media|DocumentReference)/{_ID}(?:/_history/{_ID})?$")
_PATIENT_REFERENCE = re.compile(rf"^Patient/{_ID}$")
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
# Optional: the FHIR bearer token the worker should use for this job (stored encrypted).
FHIR_TOKEN_HEADER = "X-FHIR-Authorization"  # noqa: S105  (a header name, not a secret)
_BEARER = re.compile(r"^Bearer ([A-Za-z0-9\-._~+/]+=*)$")


# --- endpoints -----------------------------------------------------------------------------------


@api_v1.post("/jobs")
def submit_job() -> tuple[Response, int, dict[str, str]]:
    client = authenticate()
    svc = services()
    settings = svc.settings
    body = _json_body()
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    if not set(body) <= _FIELDS:
        raise InvalidRequest("unknown fields; the body takes resource or reference, and kind")
    kind = body.get("kind", "auto")
    if not isinstance(kind, str) or kind not in KINDS:
        raise InvalidRequest("kind must be one of auto, skin, conjunctiva", expression="kind")
    if sum(name in body for name in ("resource", "reference", "series")) != 1:
        raise InvalidRequest("give exactly one of resource, reference and series")

    resource_json: str | None = None
    reference: str | None = None
    patient: str | None = None
    kind_hint: str | None = None
    if "resource" in body:
        photo = _checked_photo(body["resource"], svc)
        resource_json = json.dumps(body["resource"], separators=(",", ":"), ensure_ascii=False)
        patient, kind_hint = photo.subject, photo.kind_hint
    elif "series" in body:
        resource_json = json.dumps(series_list(body["series"], svc), separators=(",", ":"))
    else:
        reference = body["reference"]
        if not isinstance(reference, str) or not _PHOTO_REFERENCE.match(reference):
            raise InvalidRequest(
                "reference must be Media/<id> or DocumentReference/<id> on the configured FHIR server",
                expression="reference",
            )
        if settings.fhir_base is None:
            raise InvalidRequest(
                "a reference needs a FHIR server, and none is configured", expression="reference"
            )
    g.patient = patient

    credential = _stored_fhir_credential(svc)
    new = NewJob(
        id=uuid.uuid4().hex,
        queue=queue_for(kind if kind != "auto" else kind_hint),
        kind=kind,
        requested_by=f"api-token:{client}",
        fhir_base=settings.fhir_base,
        reference=reference,
        resource=resource_json,
        credential=credential,
        patient=patient,
    )
    job = svc.jobs.create(new)
    svc.audit(job_audit_record(job, "requested", AuditOutcome.SUCCESS, source_ip=request.remote_addr))
    try:
        enqueue(celery_for(), job)
    except Exception as exc:  # whatever the transport raises, the client gets a clear 503
        log.warning("could not queue job %s (%s)", job.id, type(exc).__name__)
        error = QueueUnavailable("the job could not be queued; try again later")
        if svc.jobs.fail(job.id, code=error.code, message=error.message):
            svc.audit(job_audit_record(job, "failed", AuditOutcome.SERIOUS_FAILURE, reason=error.code))
        raise error from None
    location = f"/api/v1/jobs/{job.id}"
    return jsonify({"id": job.id, "status": job.status}), 202, {"Location": location}


@api_v1.get("/jobs/<job_id>")
def show_job(job_id: str) -> Response:
    client = authenticate()
    job = services().jobs.get(job_id) if _JOB_ID.match(job_id) else None
    # Another client's job is "not found" too: its existence is none of this client's business.
    if job is None or job.requested_by != f"api-token:{client}":
        raise NotFound("no such job")
    progress = ProgressBoard(services().jobs.engine).get(job.id) if job.status == "running" else None
    return jsonify(job_json(job, progress))


@api_v1.get("/openapi.json")
def openapi() -> Response:
    text = files("plugin.api").joinpath("openapi.json").read_text(encoding="utf-8")
    return current_app.response_class(text, mimetype="application/json")


# --- helpers -------------------------------------------------------------------------------------


def authenticate() -> str:
    """The name of the API token this request carries; 401 otherwise."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise NotAuthenticated("an API token is required (Authorization: Bearer …)")
    name = ApiTokens(services().jobs).verify(value.strip())
    if name is None:
        raise NotAuthenticated("the API token is unknown or revoked")
    g.api_client = name
    return name


def job_json(job: Job, progress: Progress | None = None) -> dict[str, Any]:
    """A job as the API shows it (with a running video's or series' ``progress`` when given)."""
    shown: dict[str, Any] = {
        "id": job.id,
        "status": job.status,
        "kind": job.kind,
        "queue": job.queue,
        "reference": job.reference,
        "patient": job.patient,
        "created": _instant(job.created_at),
        "started": _instant(job.started_at),
        "finished": _instant(job.finished_at),
        "attempts": job.attempts,
    }
    if progress is not None and job.status == "running":
        shown["progress"] = progress.as_json()
    if job.status == "failed":
        shown["error"] = {"code": job.error_code, "message": job.error_message}
    if job.status == "done":
        shown["written"] = list(job.written)
        if job.result_bundle is not None:
            shown["result"] = job.result_bundle
    return shown


def _instant(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="milliseconds")


def _json_body() -> Any:
    if request.mimetype not in JSON_TYPES:
        raise UnsupportedContentType("the request body must be application/json or application/fhir+json")
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is not None and request.content_length > limit:
        raise RequestTooLarge(f"the request body is larger than the limit of {limit} bytes")
    raw = request.get_data(cache=False)  # Werkzeug stops reading past MAX_CONTENT_LENGTH (413)
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise MalformedJson("the JSON is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, over-long integers, NaN
        detail = (
            f": {exc.msg} at line {exc.lineno} column {exc.colno}"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        raise MalformedJson(f"the body is not valid JSON{detail}") from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _checked_photo(resource: Any, svc: Services) -> Photo:
    """Everything that can be checked before the worker decodes the photo, checked now."""
    if not isinstance(resource, dict):
        raise InvalidRequest("resource must be a FHIR resource (a JSON object)", expression="resource")
    if not isinstance(resource.get("resourceType"), str):
        raise NotFhir("resource has no resourceType, so it is not a FHIR resource", expression="resource")
    subject = resource.get("subject")
    claimed = subject.get("reference") if isinstance(subject, dict) else None
    if isinstance(claimed, str) and _PATIENT_REFERENCE.match(claimed):
        g.patient = claimed  # so that a refusal of this photo is filed under its patient
    settings = svc.settings
    ctx = InputContext(
        fhir_base=settings.fhir_base,
        max_bytes=settings.max_photo_bytes,
        max_video_bytes=settings.video_max_bytes,
    )
    try:
        photo = photo_from_resource(resource, ctx)
    except PhotomarkerError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        # The reader is lenient by design; a value it still chokes on is the sender's fault.
        log.warning("a submitted resource broke the reader (%s)", type(exc).__name__)
        raise InvalidResource("the resource has a value that cannot be read") from None
    if photo.data is not None:
        check_declared_hash(photo, photo.data)
        # A bomb (or an over-long video) is refused here, from its header, not after a worker
        # has taken it off the queue.
        if is_video_type(photo.content_type) or looks_like_video(photo.data):
            check_video_header(
                photo.data,
                limits=VideoLimits.from_settings(settings),
                declared_content_type=photo.content_type,
            )
        else:
            check_declared_pixels(photo.data, IntakeLimits.from_settings(settings))
    elif photo.binary_reference is not None and settings.fhir_base is None:
        raise BinaryUnavailable(
            f"the photo is held in {photo.binary_reference}, and no FHIR server is configured"
        )
    return photo


def series_list(references: Any, svc: Services) -> dict[str, Any]:
    """A series of photo references → the FHIR ``List`` the job keeps (references only)."""
    limit = svc.settings.series_max_photos
    if not isinstance(references, list) or not all(
        isinstance(r, str) and _PHOTO_REFERENCE.match(r) for r in references
    ):
        raise InvalidRequest(
            "series must be a list of Media/<id> or DocumentReference/<id> on the configured FHIR server",
            expression="series",
        )
    if not 2 <= len(references) <= limit or len(set(references)) != len(references):
        raise InvalidSeries(f"a series names 2 to {limit} different photos", expression="series")
    if svc.settings.fhir_base is None:
        raise InvalidRequest("a series needs a FHIR server, and none is configured", expression="series")
    return {
        "resourceType": "List",
        "status": "current",
        "mode": "working",
        "title": "Photos of one lesion, analysed as one",
        "entry": [{"item": {"reference": reference}} for reference in references],
    }


def _stored_fhir_credential(svc: Services) -> str | None:
    """The job's FHIR token, stored encrypted; the message will carry only the handle."""
    header = request.headers.get(FHIR_TOKEN_HEADER)
    if header is None:
        return None
    match = _BEARER.match(header.strip())
    if match is None:
        raise InvalidRequest(f"{FHIR_TOKEN_HEADER} must be 'Bearer <token>'")
    return svc.credentials.put(match.group(1))
