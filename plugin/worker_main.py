"""One Celery worker process: the models warmed, the heartbeat started, the broker guarded.

Shared by ``photomarker worker`` and ``photomarker serve``'s embedded worker.
"""

from __future__ import annotations

import logging
from typing import Any

from plugin.settings import Settings

# These log every request URL at INFO; a URL can name a patient, and logs must not.
_CHATTY_LOGGERS = ("httpx", "httpcore")


def quiet_http_loggers() -> None:
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def run_worker(
    settings: Settings, queues: list[str], *, concurrency: int, pool: str, hostname: str | None = None
) -> None:
    from celery.signals import celeryd_init, worker_process_init

    import workers.tasks  # noqa: F401  (registers the tasks with the app made below)
    from plugin.app import create_app
    from workers.broker import guard_collected_redis_channel, quiet_reconnect_logs
    from workers.celery_app import celery_for
    from workers.liveness import keep_alive
    from workers.tasks import warm_models

    quiet_http_loggers()
    quiet_reconnect_logs()
    guard_collected_redis_channel()
    app = create_app(settings)
    keep_alive(app, queues)
    if pool == "prefork":
        # Each child loads the models once, after the fork (torch state does not survive fork well).
        worker_process_init.connect(lambda **_: warm_models(settings), weak=False)
    else:
        warm_models(settings)
    argv = [
        "worker",
        "--queues",
        ",".join(queues),
        "--concurrency",
        str(concurrency),
        "--pool",
        pool,
        # No gossip, mingle or heartbeat: they need fanout (the SQLite transport has none) and
        # add start-up time; nothing here uses them.
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel",
        settings.log_level,
        "--hostname",
        hostname or f"photomarker-{'-'.join(queues)}@%h",
    ]
    # The worker's own exit status, which `celery worker` run in-process leaves behind (click's
    # non-standalone main swallows it): non-zero after an unrecoverable error such as a broker
    # outage longer than PHOTOMARKER_BROKER_OUTAGE_LIMIT_S, for the supervisor to see.
    started: list[Any] = []
    celeryd_init.connect(lambda instance, **_: started.append(instance), weak=False)
    celery_for(app).worker_main(argv)
    status = getattr(started[0], "exitcode", None) if started else None
    if status:
        raise SystemExit(status)
