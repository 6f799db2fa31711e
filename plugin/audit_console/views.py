"""The console's pages: login, search with keyset paging, event detail, verification, export.

Every login attempt and every read of the trail (search, event, export, verification) is itself
appended to the trail — who, when, from which address, with what outcome — before the answer
goes out, so a read that could not be recorded is not served. Searches run newest first, a page
at a time through ``AuditStore.search(after_seq=…)``, so page 1 000 costs what page 1 does.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, g, redirect, render_template, request, send_file, url_for
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response as BaseResponse

from audit.events import AuditFilter, StoredEvent
from audit.export import ExportFormat, chain_extension_url, fhir_builder
from audit.record import AuditAction, AuditOutcome, AuditRecord
from audit.store import AuditStore
from audit.users import NAME_PATTERN, AuditorUsers
from models.errors import (
    AuditError,
    AuditorLoginFailed,
    CsrfRejected,
    InvalidRequest,
    NotFound,
    PhotomarkerError,
)
from plugin.audit_console import session as auditor_session
from plugin.audit_console.verification import ChainVerifier
from workers.celery_app import services

console = Blueprint(
    "audit_console",
    __name__,
    url_prefix="/audit",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

PAGE_SIZE = 50
# Longest filter value accepted; references and names are far shorter.
_MAX_FIELD = 200
FILTER_FIELDS = ("patient", "agent", "event", "outcome", "since", "until")
OUTCOME_LABELS = {
    AuditOutcome.SUCCESS: "Success",
    AuditOutcome.MINOR_FAILURE: "Minor failure",
    AuditOutcome.SERIOUS_FAILURE: "Serious failure",
    AuditOutcome.MAJOR_FAILURE: "Major failure",
}
_DOWNLOADS = {
    ExportFormat.FHIR: ("application/fhir+json", "json"),
    ExportFormat.NDJSON: ("application/fhir+ndjson", "ndjson"),
    ExportFormat.CSV: ("text/csv; charset=utf-8", "csv"),
}
VERIFIER_EXTENSION = "photomarker.audit_console.verifier"
_OPEN_ENDPOINTS = frozenset({"audit_console.login", "audit_console.static"})


# --- every request ---------------------------------------------------------------------------------


@console.before_request
def _guard() -> BaseResponse | None:
    if request.method == "POST":
        try:
            auditor_session.check_csrf()
        except CsrfRejected as error:
            _record(
                "auditor.csrf-rejected",
                outcome=AuditOutcome.MINOR_FAILURE,
                reason=_reason(error),
                who=_who(auditor_session.current_auditor(_max_age())),
            )
            raise
    if request.endpoint in _OPEN_ENDPOINTS:
        return None
    auditor = auditor_session.current_auditor(_max_age())
    if auditor is None:
        return redirect(url_for(".login"))
    g.auditor = auditor
    return None


@console.after_request
def _page_headers(response: Response) -> Response:
    # Set before the app-wide defaults (which only fill in what is missing): pages need their own
    # stylesheet and forms, and may be framed by the EHR origins the settings name.
    ancestors = services().settings.audit_console_frame_ancestors.strip()
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        f"base-uri 'none'; frame-ancestors {ancestors}"
    )
    return response


@console.context_processor
def _template_helpers() -> dict[str, Any]:
    return {
        "csrf_token": auditor_session.csrf_token,
        "csrf_field": auditor_session.CSRF_FIELD,
        "outcome_label": lambda outcome: OUTCOME_LABELS.get(outcome, str(outcome)),
        "auditor": g.get("auditor"),
    }


@console.errorhandler(PhotomarkerError)
def _refused(error: PhotomarkerError) -> tuple[str, int]:
    return render_template("audit_console/error.html", error=error), error.http_status


# --- logging in and out ------------------------------------------------------------------------------


@console.route("/login", methods=["GET", "POST"])
def login() -> BaseResponse | tuple[str, int]:
    if request.method == "GET":
        return render_template("audit_console/login.html", failed=False), 200
    name = request.form.get("name", "")[:_MAX_FIELD]
    password = request.form.get("password", "")
    store = services().audit_store
    if AuditorUsers(store.engine).authenticate(name, password):
        # Recorded first: a login the trail cannot show must not open a session.
        _record("auditor.login", who=_who(name))
        auditor_session.start(name)
        return redirect(url_for(".search"))
    # Only a well-formed name is kept: people type passwords into the name field.
    _record(
        "auditor.login",
        outcome=AuditOutcome.MINOR_FAILURE,
        reason=_reason(AuditorLoginFailed("wrong name or password")),
        who=_who(name if NAME_PATTERN.match(name) else None),
    )
    return render_template("audit_console/login.html", failed=True), 401


@console.post("/logout")
def logout() -> BaseResponse:
    _record("auditor.logout")
    auditor_session.end()
    return redirect(url_for(".login"))


# --- reading the trail ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchForm:
    """The search fields as typed (to refill the form) and the filter they mean."""

    values: dict[str, str]
    chosen: AuditFilter
    problems: list[str]

    @property
    def query(self) -> str:
        return urlencode({k: v for k, v in self.values.items() if v})


def _search_form(source: MultiDict[str, str]) -> SearchForm:
    values = {name: source.get(name, "").strip()[:_MAX_FIELD] for name in FILTER_FIELDS}
    problems: list[str] = []
    outcome: AuditOutcome | None = None
    if values["outcome"]:
        try:
            outcome = AuditOutcome(values["outcome"])
        except ValueError:
            problems.append("Outcome: choose one from the list.")
    since = _day(values["since"], "From", problems)
    until = _day(values["until"], "To", problems)
    chosen = AuditFilter(
        patient=values["patient"] or None,
        agent=values["agent"] or None,
        event=values["event"] or None,
        outcome=outcome,
        since=since,
        # "To" is inclusive for a person; the store's ``until`` is exclusive.
        until=until + timedelta(days=1) if until is not None else None,
    )
    return SearchForm(values, chosen, problems)


def _day(value: str, label: str, problems: list[str]) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.combine(date.fromisoformat(value), time(), tzinfo=UTC)
    except ValueError:
        problems.append(f"{label}: a date like 2026-03-01.")
        return None


@console.route("/", methods=["GET", "POST"])
def search() -> tuple[str, int]:
    """GET: the newest events; POST: the search form (and its pages).

    Filters travel in the POST body, never the URL, so patient references stay out of access
    logs, proxies and browser history.
    """
    form = _search_form(request.form if request.method == "POST" else MultiDict())
    after = request.form.get("after", type=int) if request.method == "POST" else None
    store = services().audit_store
    page = None
    if not form.problems:
        page = store.search(form.chosen, after_seq=after, limit=PAGE_SIZE, newest_first=True)
        _record("audit.search", subtype="search-type", patient=form.chosen.patient, query=_query(form, after))
    return render_template(
        "audit_console/search.html",
        form=form,
        page=page,
        after=after,
        verification=_last_verification(store),
        verifying=_verifier().running,
        outcomes=OUTCOME_LABELS,
        formats=[f.value for f in ExportFormat],
    ), 200 if not form.problems else 400


@console.get("/events/<int:seq>")
def event_detail(seq: int) -> tuple[str, int]:
    stored = services().audit_store.get(seq)
    if stored is None:
        raise NotFound(f"there is no audit event {seq}")
    _record("audit.read", subtype="read", patient=stored.record.patient, entities=(f"audit-event:{seq}",))
    return render_template("audit_console/event.html", stored=stored, record=stored.record), 200


@console.post("/verify")
def verify() -> BaseResponse:
    """Start recomputing the whole chain (tens of seconds at a million events) and go back."""
    _verifier().start(services().audit_store, who=_who(g.get("auditor")), source_ip=request.remote_addr)
    return redirect(url_for(".search"))


def _verifier() -> ChainVerifier:
    verifier: ChainVerifier = current_app.extensions[VERIFIER_EXTENSION]
    return verifier


def _last_verification(store: AuditStore) -> StoredEvent | None:
    # The verdicts are audit events themselves (console and CLI alike): the newest one is the status.
    found = store.search(AuditFilter(event="audit.verify"), limit=1, newest_first=True)
    return found.events[0] if found.events else None


@console.post("/export")
def export() -> Response:
    form = _search_form(request.form)
    if form.problems:
        raise InvalidRequest(" ".join(form.problems))
    try:
        fmt = ExportFormat(request.form.get("format", ""))
    except ValueError:
        raise InvalidRequest("choose an export format: fhir, ndjson or csv") from None
    svc = services()
    store = svc.audit_store
    asked = f"_format={fmt}" + (f"&{form.query}" if form.query else "")
    builder, extension_url = None, None
    if fmt != ExportFormat.CSV:
        builder = fhir_builder(svc.settings.canonical)
        extension_url = chain_extension_url(svc.settings.canonical)
    # Spooled to disk past 8 MiB: an export of the whole trail must not sit in the web worker's memory.
    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115  (closed by send_file)
    text = io.TextIOWrapper(spool, encoding="utf-8", newline="")
    try:
        count = store.export(text, fmt, form.chosen, builder=builder, chain_extension_url=extension_url)
        text.flush()
    except AuditError as error:
        _record(
            "audit.export",
            outcome=AuditOutcome.SERIOUS_FAILURE,
            reason=_reason(error),
            patient=form.chosen.patient,
            query=asked,
        )
        raise
    text.detach()
    spool.seek(0)
    _record(
        "audit.export",
        subtype="search-type",
        patient=form.chosen.patient,
        query=asked,
    )
    mimetype, suffix = _DOWNLOADS[fmt]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    response = send_file(
        spool, mimetype=mimetype, as_attachment=True, download_name=f"audit-{stamp}.{suffix}"
    )
    response.headers["X-Audit-Event-Count"] = str(count)
    return response


# --- recording what the auditor did -------------------------------------------------------------------


def _max_age() -> int:
    return services().settings.audit_console_session_max_age_s


def _who(name: str | None) -> str:
    return f"auditor:{name}" if name else "auditor:unknown"


def _reason(error: PhotomarkerError) -> str:
    return f"{error.code}: {error.message}"


def _query(form: SearchForm, after: int | None) -> str:
    return "&".join(part for part in (form.query, f"after={after}" if after is not None else "") if part)


def _record(
    event: str,
    *,
    outcome: AuditOutcome = AuditOutcome.SUCCESS,
    reason: str | None = None,
    who: str | None = None,
    subtype: str | None = None,
    patient: str | None = None,
    query: str | None = None,
    entities: tuple[str, ...] = (),
) -> None:
    services().audit(
        AuditRecord(
            event=event,
            action=AuditAction.EXECUTE,
            recorded=datetime.now(UTC),
            outcome=outcome,
            outcome_reason=reason,
            subtype=subtype,
            agent_who=who or _who(g.get("auditor")),
            source_ip=request.remote_addr,
            patient=patient,
            entities=entities,
            query=query or None,
        )
    )
