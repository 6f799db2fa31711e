"""The patient view at ``/clinician/<launch>/``: photos, earlier results, trend, Analyse, results.

Every page needs the launch's id in its URL *and* the browser cookie of the launch, so one browser
can hold launches for several patients side by side (tabs) without ever mixing them up. Analyse
creates jobs exactly as the jobs API does (``workers.job_records.NewJob``, an encrypted credential, a
references-only message); with write scopes the workers read the photo and write the results
with the clinician's own token, without them the photo travels inline in the job and the result
Bundle is kept in the job store and shown, not saved.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import secrets
from typing import Any

from flask import Blueprint, Response, g, jsonify, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from audit.record import AuditAction, AuditOutcome
from fhir_mappings import codes
from models.errors import (
    InternalError,
    InvalidRequest,
    NotFound,
    PhotomarkerError,
    SubjectMismatch,
)
from plugin.clinician import photos as photo_io
from plugin.clinician import record
from plugin.clinician.analysis import MAX_PHOTOS_PER_RUN, start_run
from plugin.clinician.charts import bar_svg
from plugin.clinician.context import ClinicianContext, load_context
from plugin.clinician.headers import page_headers
from plugin.clinician.pages import error_page
from plugin.clinician.results import ResultView, result_view, sort_key
from plugin.clinician.style import style_css
from plugin.clinician.wording import clip_length, clip_words, day, percent
from plugin.smart import session
from plugin.smart.store import Launch, Run
from workers.celery_app import services
from workers.fhir_client import FhirClient
from workers.job_records import Job
from workers.progress import Progress, ProgressBoard

log = logging.getLogger(__name__)

clinician = Blueprint(
    "clinician",
    __name__,
    url_prefix="/clinician",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

# Most runs a launch remembers.
MAX_RUNS = 30
_RUN_ID = re.compile(r"^[A-Za-z0-9_\-]{8,32}$")
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
_FHIR_ID = re.compile(r"^(?!\.{1,2}$)[A-Za-z0-9\-.]{1,64}$")
_STATUS_WORDS = {"queued": "Waiting", "running": "Analysing", "done": "Finished", "failed": "Failed"}


# --- every request ---------------------------------------------------------------------------------


@clinician.before_request
def _load_launch() -> None:
    if request.endpoint == "clinician.static":
        return
    launch_id = (request.view_args or {}).get("launch_id", "")
    g.clinician = load_context(str(launch_id), services().settings)
    if request.method == "POST":
        session.check_csrf(g.clinician.launch.csrf)


@clinician.teardown_request
def _close_client(_exc: BaseException | None) -> None:
    client = g.pop("fhir_client", None)
    if client is not None:
        client.close()


@clinician.after_request
def _headers(response: Response) -> Response:
    return page_headers(response)


@clinician.context_processor
def _helpers() -> dict[str, Any]:
    context: ClinicianContext | None = g.get("clinician")
    return {
        "csrf_field": session.CSRF_FIELD,
        "csrf_token": context.launch.csrf if context else "",
        "launch_id": context.launch_id if context else None,
        "status_word": lambda status: _STATUS_WORDS.get(status, status),
        "reference_only_text": codes.REFERENCE_ONLY_TEXT,
        "percent": percent,
        "clip_length": clip_length,
        "clip_words": clip_words,
        "day": day,
        "bar_svg": bar_svg,
    }


@clinician.errorhandler(PhotomarkerError)
def _refused(error: PhotomarkerError) -> tuple[str, int]:
    context: ClinicianContext | None = g.get("clinician")
    session.audit(
        "clinician.refused",
        outcome=AuditOutcome.MINOR_FAILURE,
        reason=f"{error.code}: {error.message}",
        who=context.who if context else None,
        patient=context.launch.patient if context else None,
    )
    return error_page(error, launch_id=context.launch_id if context else None)


@clinician.errorhandler(HTTPException)
def _http_refusal(exc: HTTPException) -> tuple[str, int]:
    if (exc.code or 500) == 404:
        return _refused(NotFound("no such page"))
    if (exc.code or 500) < 500:
        return _refused(InvalidRequest(exc.description or "bad request"))
    return _unexpected(exc)


@clinician.errorhandler(Exception)
def _unexpected(exc: Exception) -> tuple[str, int]:
    log.exception("unexpected error on a clinician page")
    return _refused(InternalError("unexpected error; it has been logged"))


def _context() -> ClinicianContext:
    context: ClinicianContext = g.clinician
    return context


def _fhir() -> FhirClient:
    client: FhirClient | None = g.get("fhir_client")
    if client is None:
        client = _context().fhir()
        g.fhir_client = client
    return client


# --- the patient view ---------------------------------------------------------------------------


@clinician.get("/<launch_id>/")
def patient_view(launch_id: str) -> tuple[str, int]:
    context = _context()
    client = _fhir()
    patient = client.read(context.patient) if context.launch.need_patient_banner else None
    cards = photo_io.list_photos(context, client)
    earlier = record.earlier_results(context, client)
    by_photo: dict[str, list[ResultView]] = {}
    for view in earlier:
        if not view.not_performed:
            # A series' result belongs to each of its photos, so it shows under every one of them.
            for photo in view.photos:
                by_photo.setdefault(photo, []).append(view)
    for card in cards:
        card.earlier = sorted(by_photo.get(card.reference, []), key=sort_key)
    session.audit(
        "clinician.patient-view",
        action=AuditAction.READ,
        subtype="search-type",
        who=context.who,
        patient=context.patient,
        entities=tuple(card.reference for card in cards),
    )
    return render_template(
        "clinician/patient.html",
        context=context,
        banner=record.banner(patient) if patient else None,
        cards=cards,
        trends=record.trends(earlier),
        max_photos=MAX_PHOTOS_PER_RUN,
        series_max=context.settings.series_max_photos,
        # Everything on this page that came from a model: the cards' earlier results and the trends.
        reference_on_page=any(view.reference_only for view in earlier),
    ), 200


# --- images --------------------------------------------------------------------------------------


@clinician.get("/<launch_id>/photos/<resource_type>/<resource_id>/image")
def photo_image(launch_id: str, resource_type: str, resource_id: str) -> Response:
    context = _context()
    client = _fhir()
    _, photo = photo_io.fetch_photo(f"{resource_type}/{resource_id}", context, client)
    image = photo_io.image_for_browser(photo, context, client, request.args.get("size", "thumb"))
    return Response(image, mimetype="image/jpeg")


@clinician.get("/<launch_id>/runs/<run_id>/heatmaps/<job_id>/<int:index>")
def unsaved_heatmap(launch_id: str, run_id: str, job_id: str, index: int) -> Response:
    """A heat map of a result that was shown but not saved (it lives in the job's Bundle only)."""
    context = _context()
    job = _run_jobs(context, run_id).get(job_id)
    entries = (job.result_bundle or {}).get("entry") if job else None
    if not isinstance(entries, list) or not 0 <= index < len(entries):
        raise NotFound("no such heat map")
    resource = entries[index].get("resource") or {}
    if resource.get("resourceType") != "Media":
        raise NotFound("no such heat map")
    try:
        data = base64.b64decode(resource["content"]["data"], validate=True)
    except (KeyError, TypeError, binascii.Error):
        raise NotFound("no such heat map") from None
    return Response(photo_io.reencode(data, context.settings, "large"), mimetype="image/jpeg")


# --- analysing ---------------------------------------------------------------------------------------


@clinician.post("/<launch_id>/analyse")
def analyse(launch_id: str) -> BaseResponse:
    context = _context()
    only = request.form.get("only")
    chosen = [only] if only else request.form.getlist("photo")
    references = list(dict.fromkeys(photo_io.checked_reference(ref) for ref in chosen))
    as_series = not only and request.form.get("together") == "series"
    run = start_run(context, _fhir(), references, as_series=as_series, source_ip=request.remote_addr)
    run_id = secrets.token_urlsafe(12)

    def remember(launch: Launch) -> None:
        launch.runs[run_id] = run
        for old in sorted(launch.runs, key=lambda key: launch.runs[key].created_at)[:-MAX_RUNS]:
            del launch.runs[old]

    context.update(remember)
    return redirect(url_for(".run_view", launch_id=launch_id, run_id=run_id), 303)


def _run(context: ClinicianContext, run_id: str) -> Run:
    run = context.launch.runs.get(run_id) if _RUN_ID.match(run_id) else None
    if run is None:
        raise NotFound("no such analysis in this session")
    return run


def _run_jobs(context: ClinicianContext, run_id: str) -> dict[str, Job]:
    run = _run(context, run_id)
    found: dict[str, Job] = {}
    for job_id in run.jobs:
        job = services().jobs.get(job_id)
        # A job of this run is this patient's by construction; checked again all the same.
        if job is not None and job.patient == context.patient:
            found[job_id] = job
    return found


@clinician.get("/<launch_id>/runs/<run_id>/status.json")
def run_status(launch_id: str, run_id: str) -> Response:
    context = _context()
    run = _run(context, run_id)
    jobs = _run_jobs(context, run_id)
    shown = [
        {
            "id": job_id,
            "photo": run.label(index),
            "status": jobs[job_id].status if job_id in jobs else "failed",
        }
        for index, job_id in enumerate(run.jobs)
    ]
    board = ProgressBoard(services().jobs.engine)
    for item in shown:
        running = item["status"] == "running"
        item["label"] = _status_line(str(item["status"]), board.get(str(item["id"])) if running else None)
    finished = all(item["status"] in ("done", "failed") for item in shown)
    return jsonify({"finished": finished, "jobs": shown})


@clinician.get("/<launch_id>/runs/<run_id>")
def run_view(launch_id: str, run_id: str) -> tuple[str, int]:
    context = _context()
    run = _run(context, run_id)
    jobs = _run_jobs(context, run_id)
    board = ProgressBoard(services().jobs.engine)
    panels = []
    for index, (job_id, photo) in enumerate(zip(run.jobs, run.photos, strict=True)):
        job = jobs.get(job_id)
        status = job.status if job is not None else "failed"
        panel: dict[str, Any] = {
            "job_id": job_id,
            "photo": photo,
            "members": run.members.get(job_id, []),
            "label": run.label(index),
            "job": job,
            "status_line": _status_line(status, board.get(job_id) if status == "running" else None),
            "results": [],
        }
        if job is not None and job.status == "done":
            panel["results"] = _job_results(context, run_id, job, saved=run.saved)
        panels.append(panel)
    finished = all(p["job"] is None or p["job"].finished for p in panels)
    return render_template(
        "clinician/run.html",
        context=context,
        run=run,
        run_id=run_id,
        panels=panels,
        finished=finished,
        reference_on_page=any(item["view"].reference_only for p in panels for item in p["results"]),
    ), 200


def _status_line(status: str, progress: Progress | None) -> str:
    """ "Analysing — frame 8 of 24" while a video's frames (or a series' photos) are counted."""
    word = _STATUS_WORDS.get(status, status)
    return f"{word} — {progress.words()}" if progress is not None else word


def _job_results(context: ClinicianContext, run_id: str, job: Job, *, saved: bool) -> list[dict[str, Any]]:
    views: list[ResultView] = []
    heatmap_urls: dict[str, str] = {}
    if saved:
        client = _fhir()
        for reference in job.written:
            if reference.startswith("Observation/"):
                view = result_view(client.read(reference), link=reference)
                if view is not None:
                    views.append(view)
    else:
        entries = (job.result_bundle or {}).get("entry") or []
        for index, entry in enumerate(entries):
            resource = entry.get("resource") or {}
            if resource.get("resourceType") == "Media" and entry.get("fullUrl"):
                heatmap_urls[entry["fullUrl"]] = url_for(
                    ".unsaved_heatmap", launch_id=context.launch_id, run_id=run_id, job_id=job.id, index=index
                )
            elif resource.get("resourceType") == "Observation":
                view = result_view(resource)
                if view is not None:
                    views.append(view)
    shown = []
    for view in sorted(views, key=sort_key):
        heatmap = None
        if view.heatmap and view.heatmap in heatmap_urls:
            heatmap = heatmap_urls[view.heatmap]
        elif view.heatmap and view.heatmap.startswith("Media/"):
            heatmap = url_for(
                ".photo_image",
                launch_id=context.launch_id,
                resource_type="Media",
                resource_id=view.heatmap.split("/", 1)[1],
                size="large",
            )
        shown.append({"view": view, "heatmap": heatmap})
    return shown


# --- a resource, for the links to what was written ------------------------------------------------


@clinician.get("/<launch_id>/resources/Observation/<resource_id>")
def observation_json(launch_id: str, resource_id: str) -> tuple[str, int]:
    context = _context()
    if not _FHIR_ID.match(resource_id):
        raise NotFound("no such Observation")
    resource = _fhir().read(f"Observation/{resource_id}")
    subject = (resource.get("subject") or {}).get("reference")
    if subject != context.patient:
        raise SubjectMismatch("that Observation belongs to another patient than the one in context")
    text = json.dumps(resource, indent=2, ensure_ascii=False)
    return render_template(
        "clinician/resource.html", context=context, reference=f"Observation/{resource_id}", text=text
    ), 200


@clinician.get("/<launch_id>/style.css")
def ehr_style(launch_id: str) -> Response:
    """The EHR's smart_style_url colours and fonts as CSS variables (empty when it gave none)."""
    return Response(style_css(_context()), mimetype="text/css")
