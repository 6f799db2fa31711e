"""``POST /fhir/notifications``: the rest-hook endpoint of the inbox's FHIR Subscription.

The secret the Subscription sends in its channel header is checked first, in constant time;
then the Bundle is read as an R4 Backport, R4B or R5 notification. Handshakes and heartbeats
are answered 200 and audited. An event notification hands each focus (with its resource when
the payload is ``full-resource``) to the intake, which queues at most one job per photo version.
When the FHIR server, its token endpoint or the queue cannot be reached the answer is 503, so
the server delivers again later; the intake's de-duplication makes that harmless.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from flask import Blueprint, Response, current_app, request

from models.errors import (
    BackendAuthRefused,
    FhirServerUnavailable,
    MalformedJson,
    NotAuthenticated,
    PhotomarkerError,
    QueueUnavailable,
    ScopeNotGranted,
    UnsupportedContentType,
)
from workers.celery_app import celery_for, services
from workers.inbox.intake import Intake
from workers.inbox.notification import Notification, parse_notification
from workers.inbox.runtime import inbox_record, inbox_runtime

log = logging.getLogger(__name__)

notifications = Blueprint("inbox_notifications", __name__)

# The header the Subscription's channel.header sets: "X-Photomarker-Inbox-Secret: <secret>".
SECRET_HEADER = "X-Photomarker-Inbox-Secret"  # noqa: S105  (a header name, not a secret)
FHIR_JSON = "application/fhir+json"
JSON_TYPES = ("application/json", FHIR_JSON)
# Failures that mean "not now": the server should deliver the notification again.
_TRY_AGAIN = (FhirServerUnavailable, QueueUnavailable, BackendAuthRefused, ScopeNotGranted)


@notifications.post("/fhir/notifications")
def receive() -> Response:
    svc = services()
    try:
        _check_secret()
        notification = parse_notification(_json_body())
    except PhotomarkerError as error:
        svc.audit(inbox_record("inbox.notification.refused", error=error, source_ip=request.remote_addr))
        raise
    subscription = (notification.subscription,) if notification.subscription else ()
    if notification.type != "event-notification":
        svc.audit(
            inbox_record(
                f"inbox.subscription.{notification.type}",
                entities=subscription,
                source_ip=request.remote_addr,
            )
        )
        return _informational(f"{notification.type} received")
    intake = Intake(svc, inbox_runtime(), celery_for(), source_ip=request.remote_addr)
    try:
        _take_events(intake, notification)
    except _TRY_AGAIN as error:
        svc.audit(
            inbox_record(
                "inbox.notification.postponed",
                error=error,
                entities=subscription,
                source_ip=request.remote_addr,
            )
        )
        log.warning("inbox notification postponed: %s", error.code)
        raise
    except PhotomarkerError as error:  # the inbox itself is not set up (no FHIR server, no key)
        svc.audit(inbox_record("inbox.notification.refused", error=error, source_ip=request.remote_addr))
        raise
    focuses = tuple(focus for focus in notification.focuses if focus)
    svc.audit(
        inbox_record("inbox.notification", entities=(*subscription, *focuses), source_ip=request.remote_addr)
    )
    summary = ", ".join(f"{outcome}: {n}" for outcome, n in sorted(intake.outcomes.items())) or "no events"
    return _informational(f"event-notification received ({summary})")


def _take_events(intake: Intake, notification: Notification) -> None:
    for focus in notification.focuses:
        if focus is None:
            continue  # an "empty" payload names nothing; the poller finds what changed
        resource = notification.resources.get(_relative(focus, intake.fhir_base))
        intake.consider(focus, resource, "subscription")


def _relative(reference: str, fhir_base: str) -> str:
    prefix = fhir_base.rstrip("/") + "/"
    text = reference[len(prefix) :] if reference.startswith(prefix) else reference
    return text.split("/_history/", 1)[0]


def _check_secret() -> None:
    secret = services().settings.inbox_notification_secret
    presented = request.headers.get(SECRET_HEADER, "")
    expected = secret.get_secret_value() if secret is not None else ""
    # compare_digest on bytes: the time taken says nothing about how much of the secret matched.
    matches = hmac.compare_digest(presented.encode(), expected.encode())
    if secret is None or not presented or not matches:
        raise NotAuthenticated(f"the notification's {SECRET_HEADER} header is missing or wrong")


def _json_body() -> Any:
    if request.mimetype not in JSON_TYPES:
        raise UnsupportedContentType("a notification is application/fhir+json")
    raw = request.get_data(cache=False)
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise MalformedJson("the notification is not valid JSON") from None


def _informational(text: str) -> Response:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "information", "code": "informational", "diagnostics": text}],
    }
    return current_app.response_class(json.dumps(body), status=200, mimetype=FHIR_JSON)
