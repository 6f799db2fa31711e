"""Helpers for the inbox tests: the notification Bundles a FHIR server POSTs to the receiver."""

from __future__ import annotations

from typing import Any

from tests.inbox.conftest import TOPIC


def notification(focuses: list[str], *, kind: str = "event-notification", base: str = "") -> dict[str, Any]:
    """A Subscription notification (backport Parameters) with one event per focus."""
    events = [
        {
            "name": "notification-event",
            "part": [
                {"name": "event-number", "valueString": str(n)},
                {"name": "focus", "valueReference": {"reference": f"{base}/{focus}" if base else focus}},
            ],
        }
        for n, focus in enumerate(focuses, 1)
    ]
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "subscription", "valueReference": {"reference": "Subscription/test"}},
            {"name": "topic", "valueCanonical": TOPIC},
            {"name": "type", "valueCode": kind},
            *events,
        ],
    }
    return {"resourceType": "Bundle", "type": "history", "entry": [{"resource": parameters}]}
