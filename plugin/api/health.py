"""``GET /healthz`` for load balancers and compose.

503 when the queue or the job store does not answer (this process cannot take jobs). 200 with
``"status": "degraded"`` when both answer but no worker has announced itself for
``worker_missing_after_s``: jobs are still accepted and wait, queued, for a worker to come back —
the web process is fine, so a load balancer must not pull it, but an operator should look.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from flask import Blueprint, Response, jsonify

from workers.celery_app import QUEUES, celery_for, services
from workers.liveness import last_worker_seen

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
    if healthy:
        checks["workers"] = _workers_check()
    status = "unavailable" if not healthy else "ok" if checks["workers"] == "ok" else "degraded"
    body: dict[str, Any] = {"status": status, "checks": checks}
    if depths:
        body["queues"] = depths  # waiting messages per queue: what worker autoscaling reads
    return jsonify(body), 200 if healthy else 503


def _workers_check() -> str:
    """ "ok" when some worker announced itself recently; else how long none has."""
    svc = services()
    seen = last_worker_seen(svc.jobs)
    if seen is None:
        return "none seen yet"
    silent = svc.jobs.now() - seen
    if silent > svc.settings.worker_missing_after_s:
        return f"none seen for {silent:.0f} s"
    return "ok"


def queue_depths(celery_app: Celery) -> dict[str, int]:
    """Messages waiting in each queue — which also proves the broker answers."""
    with celery_app.connection_for_read() as connection:
        connection.ensure_connection(
            max_retries=1, interval_start=0, interval_step=0.2, timeout=_CONNECT_TIMEOUT_S
        )
        channel = connection.default_channel
        return {name: int(channel.queue_declare(queue=name).message_count) for name in QUEUES}
