"""Subscription notification Bundles → what happened: R4 Backport IG, R4B and R5 shapes, read leniently.

- R4 (Subscriptions Backport IG): a ``history`` Bundle whose first entry is a ``Parameters``
  (backport SubscriptionStatus) with ``type`` and ``notification-event`` parts; senders use
  kebab-case or camelCase names, both are read.
- R4B: a ``history`` Bundle whose first entry is a ``SubscriptionStatus``.
- R5: a ``subscription-notification`` Bundle, first entry a ``SubscriptionStatus``.
With a ``full-resource`` payload the changed resources follow as further entries.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from models.errors import InvalidRequest, NotFhir, UrlNotAllowed

PHOTO_TYPES = ("Media", "DocumentReference")
NOTIFICATION_TYPES = frozenset(
    {"handshake", "heartbeat", "event-notification", "query-status", "query-event"}
)
_ID = r"[A-Za-z0-9\-.]{1,64}"
_RELATIVE = re.compile(rf"^([A-Z][A-Za-z]{{1,63}})/({_ID})(?:/_history/({_ID}))?$")


@dataclass(frozen=True)
class Focus:
    """A resource an event is about, relative to the FHIR base; ``version_id`` when the sender said."""

    resource_type: str
    id: str
    version_id: str | None = None

    @property
    def reference(self) -> str:
        return f"{self.resource_type}/{self.id}"


@dataclass(frozen=True)
class Notification:
    type: str
    subscription: str | None
    topic: str | None
    # Each event's focus as sent (absolute or relative); None for an event without one.
    focuses: tuple[str | None, ...] = ()
    # Full-resource payload: "Type/id" → the resource.
    resources: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def parse_notification(body: Any) -> Notification:
    """The notification in ``body``; ``InvalidRequest`` / ``NotFhir`` when it is not one."""
    if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
        raise NotFhir("the notification is not a FHIR resource")
    if body["resourceType"] != "Bundle" or body.get("type") not in ("history", "subscription-notification"):
        raise InvalidRequest("a notification is a history (R4/R4B) or subscription-notification (R5) Bundle")
    entries = (
        [e for e in body.get("entry") or [] if isinstance(e, dict)]
        if isinstance(body.get("entry"), list)
        else []
    )
    first = entries[0].get("resource") if entries else None
    if not isinstance(first, dict):
        raise InvalidRequest("the notification Bundle has no status entry")
    if first.get("resourceType") == "Parameters":
        notification = _from_parameters(first)
    elif first.get("resourceType") == "SubscriptionStatus":
        notification = _from_status(first)
    else:
        raise InvalidRequest("the notification's first entry is neither Parameters nor SubscriptionStatus")
    if notification.type not in NOTIFICATION_TYPES:
        raise InvalidRequest("the notification has no known type")
    resources: dict[str, Mapping[str, Any]] = {}
    for entry in entries[1:]:
        resource = entry.get("resource")
        if isinstance(resource, dict) and isinstance(resource.get("id"), str):
            resources[f"{resource.get('resourceType')}/{resource['id']}"] = resource
    return Notification(
        notification.type, notification.subscription, notification.topic, notification.focuses, resources
    )


def _from_parameters(parameters: Mapping[str, Any]) -> Notification:
    kind: str | None = None
    subscription: str | None = None
    topic: str | None = None
    focuses: list[str | None] = []
    for parameter in _list(parameters.get("parameter")):
        name = parameter.get("name")
        if name == "type":
            kind = _str(parameter.get("valueCode"))
        elif name == "subscription":
            subscription = _reference(parameter.get("valueReference"))
        elif name == "topic":
            topic = _str(parameter.get("valueCanonical")) or _str(parameter.get("valueUri"))
        elif name in ("notification-event", "notificationEvent"):
            parts = {p.get("name"): p for p in _list(parameter.get("part"))}
            focus = parts.get("focus")
            focuses.append(_reference(focus.get("valueReference")) if focus else None)
    return Notification(kind or "", subscription, topic, tuple(focuses))


def _from_status(status: Mapping[str, Any]) -> Notification:
    focuses = tuple(_reference(event.get("focus")) for event in _list(status.get("notificationEvent")))
    return Notification(
        _str(status.get("type")) or "",
        _reference(status.get("subscription")),
        _str(status.get("topic")),
        focuses,
    )


def focus_on_server(reference: str, fhir_base: str) -> Focus:
    """``reference`` (relative, or absolute under ``fhir_base``) as a :class:`Focus`.

    A focus on another server is refused: the inbox reads photos from its own FHIR server only.
    """
    text = reference.strip()
    if "://" in text:
        prefix = fhir_base.rstrip("/") + "/"
        if not text.startswith(prefix):
            raise UrlNotAllowed("the notification names a resource on another server")
        text = text[len(prefix) :]
    match = _RELATIVE.match(text)
    if match is None:
        raise InvalidRequest("the notification's focus is not a resource reference")
    return Focus(match.group(1), match.group(2), match.group(3))


def _list(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _reference(value: Any) -> str | None:
    return _str(value.get("reference")) if isinstance(value, dict) else None
