"""``models.errors`` → HTTP status + FHIR OperationOutcome JSON: the one place a refusal becomes HTTP.

Every error a client can cause is a ``PhotomarkerError`` with its own status (4xx) and stable
code; Werkzeug's own refusals (unknown route, wrong method, body too large, undecodable request)
are mapped onto the same classes, so a client always gets an OperationOutcome, never an HTML
page, and hostile input never a 500. A 500 means a bug: logged with its traceback, answered
with a generic OperationOutcome that says nothing about the internals. Refusals of API requests
are appended to the audit trail (who, what, why — never the body or a token).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import MethodNotAllowed as _MethodNotAllowedHTTP

from audit.record import AuditAction, AuditOutcome, AuditRecord
from fhir_mappings.outcome import operation_outcome
from models.errors import (
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    NotAuthenticated,
    NotFound,
    PhotomarkerError,
    RequestTooLarge,
    UnsupportedContentType,
)
from workers.celery_app import services

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
AUTH_REALM = 'Bearer realm="photomarker"'
# Paths whose refusals are audited: the APIs (a scanner probing random URLs elsewhere is noise).
AUDITED_PREFIX = "/api/"


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(PhotomarkerError, _photomarker_error)
    app.register_error_handler(HTTPException, _http_exception)
    app.register_error_handler(Exception, _unexpected)


def error_response(error: PhotomarkerError, status: int | None = None) -> Response:
    """The OperationOutcome answer for ``error`` (audited when it refuses an API request)."""
    status = status or error.http_status
    body = operation_outcome(error, services().settings.canonical)
    response = current_app.response_class(json.dumps(body), status=status, mimetype=FHIR_JSON)
    if isinstance(error, NotAuthenticated):
        # RFC 6750: say which scheme; "invalid_token" only when a token was actually presented.
        presented = bool(request.headers.get("Authorization"))
        response.headers["WWW-Authenticate"] = AUTH_REALM + (', error="invalid_token"' if presented else "")
    if status < 500:
        log.info("refused %s %s: %s", request.method, request.path[:200], error.code)
        _audit_refusal(error, status)
    return response


def _photomarker_error(error: PhotomarkerError) -> Response:
    return error_response(error)


def _http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    response = error_response(_from_http_exception(exc), status)
    if status == 405 and isinstance(exc, _MethodNotAllowedHTTP) and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.path[:200])
    return error_response(InternalError("unexpected error; it has been logged"), 500)


def _from_http_exception(exc: HTTPException) -> PhotomarkerError:
    status = exc.code or 500
    if status == 404:
        return NotFound("no such endpoint")
    if status == 405:
        return MethodNotAllowed(f"{request.method} is not allowed on this endpoint")
    if status == 413:
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        return RequestTooLarge(f"the request body is larger than the limit of {limit} bytes")
    if status == 415:
        return UnsupportedContentType("the request body must be JSON")
    if status == 401:
        return NotAuthenticated("authentication required")
    if 400 <= status < 500:
        # Werkzeug's descriptions are its own fixed texts, never the client's input.
        return InvalidRequest(exc.description or "bad request")
    return InternalError("unexpected error; it has been logged")


def _audit_refusal(error: PhotomarkerError, status: int) -> None:
    if not request.path.startswith(AUDITED_PREFIX):
        return
    client = g.get("api_client")
    record = AuditRecord(
        event="request.refused",
        action=AuditAction.EXECUTE,
        recorded=datetime.now().astimezone(),
        outcome=AuditOutcome.MINOR_FAILURE,
        outcome_reason=f"{status} {error.code}: {error.message} ({request.method} {request.path[:200]})",
        agent_who=f"api-token:{client}" if client else "anonymous",
        source_ip=request.remote_addr,
        patient=g.get("patient"),
    )
    try:
        services().audit(record)
    except Exception:  # the refusal still goes out; a broken audit store shows in health and logs
        log.exception("could not audit a refused request")
