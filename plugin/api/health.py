"""``GET /healthz`` for load balancers and compose: 200 when the queue and the job store answer."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from flask import Blueprint, Response, jsonify

from workers.celery_app import QUEUES, celery_for, services

log = logging.getLogger(__name__)

health = Blueprint("health", __name__)

# The check must answer before a load balancer gives up on it.
_CONNECT_TIMEOUT_S = 3.0


@health.get("/healthz")
def healthz() -> tuple[Response, int]:
    checks: dict[str, str] = {}
    depths: dict[str, int] = {}
    try:
        depths = queue_depths(celery_for())
        checks["queue"] = "ok"
    except Exception as exc:  # any failure to reach the broker is "unhealthy", whatever its type
        log.warning("health: queue unreachable (%s)", type(exc).__name__)
        checks["queue"] = "unreachable"
    try:
        services().jobs.ping()
        checks["jobs"] = "ok"
    except Exception as exc:
        log.warning("health: job store unreachable (%s)", type(exc).__name__)
        checks["jobs"] = "unreachable"
    healthy = all(value == "ok" for value in checks.values())
    body: dict[str, Any] = {"status": "ok" if healthy else "unavailable", "checks": checks}
    if depths:
        body["queues"] = depths  # waiting messages per queue: what worker autoscaling reads
    return jsonify(body), 200 if healthy else 503


def queue_depths(celery_app: Celery) -> dict[str, int]:
    """Messages waiting in each queue — which also proves the broker answers."""
    with celery_app.connection_for_read() as connection:
        connection.ensure_connection(
            max_retries=1, interval_start=0, interval_step=0.2, timeout=_CONNECT_TIMEOUT_S
        )
        channel = connection.default_channel
        return {name: int(channel.queue_declare(queue=name).message_count) for name in QUEUES}
