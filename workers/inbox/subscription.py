"""The inbox's Subscription, in the R4 Subscriptions Backport IG shape (topic-based rest-hook).

``criteria`` is the topic's canonical URL; the backport extensions carry the filters
(``backport-filter-criteria``), the payload content (``id-only`` or ``full-resource``) and the
heartbeat period. The secret the receiver checks rides in ``channel.header``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from fhir_mappings.validation import Resource, validate_resource

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
PROFILE = f"{BACKPORT}/backport-subscription"
EXT_FILTER = f"{BACKPORT}/backport-filter-criteria"
EXT_CONTENT = f"{BACKPORT}/backport-payload-content"
EXT_HEARTBEAT = f"{BACKPORT}/backport-heartbeat-period"
EXT_TIMEOUT = f"{BACKPORT}/backport-timeout"

PayloadContent = Literal["id-only", "full-resource"]


def build_backport_subscription(
    *,
    topic: str,
    endpoint: str,
    header: str,
    content: PayloadContent = "id-only",
    filters: Sequence[str] = (),
    heartbeat_s: int | None = None,
    timeout_s: int = 30,
) -> Resource:
    """A ``requested`` Subscription; the server activates it after our handshake answer."""
    channel: Resource = {
        "extension": [{"url": EXT_TIMEOUT, "valueUnsignedInt": timeout_s}],
        "type": "rest-hook",
        "endpoint": endpoint,
        "payload": "application/fhir+json",
        "_payload": {"extension": [{"url": EXT_CONTENT, "valueCode": content}]},
        "header": [header],
    }
    if heartbeat_s:
        channel["extension"].append({"url": EXT_HEARTBEAT, "valueUnsignedInt": heartbeat_s})
    subscription: Resource = {
        "resourceType": "Subscription",
        "meta": {"profile": [PROFILE]},
        "status": "requested",
        "reason": "Photomarker inbox: score photos that patients send in",
        "criteria": topic,
        "channel": channel,
    }
    if filters:
        subscription["_criteria"] = {"extension": [{"url": EXT_FILTER, "valueString": f} for f in filters]}
    validate_resource(subscription)
    return subscription
