"""``photomarker worker|serve|web|beat``, ``tokens create|list|revoke`` and ``jobs list|show|retry``.

``serve`` is the one-machine mode: the web app plus an embedded worker process on the embedded
SQLite queue (or on Redis, if ``PHOTOMARKER_BROKER_URL`` says so). Production runs ``web``,
``worker`` (one per GPU) and ``beat`` as separate services (see ``compose.yaml``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
from datetime import datetime
from types import FrameType
from typing import TYPE_CHECKING, Any, cast

import click
from flask import Flask

from models.errors import PhotomarkerError
from plugin.cli_context import settings_of
from plugin.settings import Settings
from plugin.worker_main import quiet_http_loggers, run_worker

if TYPE_CHECKING:
    from workers.job_records import JobStatus
    from workers.jobs import JobStore

log = logging.getLogger(__name__)

POOLS = ("prefork", "solo", "threads")


def _queues(value: str) -> list[str]:
    from workers.celery_app import QUEUES

    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in QUEUES]
    if not names or unknown:
        raise click.BadParameter(f"choose from {', '.join(QUEUES)} (comma-separated)", param_hint="--queues")
    return names


# --- worker, beat ----------------------------------------------------------------------------------


@click.command("worker")
@click.option("--queues", "-Q", default="skin,conjunctiva", show_default=True, help="Queues to consume.")
@click.option("--concurrency", "-c", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option(
    "--pool",
    type=click.Choice(POOLS),
    default="prefork",
    show_default=True,
    help="prefork: one process per slot (models loaded once per process); solo: in this process.",
)
@click.option("--hostname", "-n", help="Worker node name (default photomarker-<queues>@<host>).")
@click.pass_context
def worker(ctx: click.Context, queues: str, concurrency: int, pool: str, hostname: str | None) -> None:
    """Run a Celery worker that analyses photos from the queues."""
    run_worker(settings_of(ctx), _queues(queues), concurrency=concurrency, pool=pool, hostname=hostname)


@click.command("beat")
@click.pass_context
def beat(ctx: click.Context) -> None:
    """Run the scheduler that re-sends jobs whose message was lost (one per deployment)."""
    import workers.tasks  # noqa: F401
    from plugin.app import create_app
    from workers.celery_app import celery_for

    settings = settings_of(ctx)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    celery_for(create_app(settings)).start(["beat", "--loglevel", settings.log_level])


# --- web, serve ------------------------------------------------------------------------------------


@click.command("web")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--workers", "processes", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--threads", type=click.IntRange(1, 64), default=4, show_default=True)
@click.pass_context
def web(ctx: click.Context, host: str, port: int, processes: int, threads: int) -> None:
    """Run the web app (gunicorn when installed, else Werkzeug's threaded server)."""
    serve_http(settings_of(ctx), host=host, port=port, processes=processes, threads=threads)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--concurrency", "-c", type=click.IntRange(1, 16), default=1, show_default=True)
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, concurrency: int) -> None:
    """Run everything on this machine: the web app and an embedded worker on the embedded queue."""
    settings = settings_of(ctx)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _recover_unfinished(settings)
    from plugin.embedded_worker import EmbeddedWorker

    embedded = EmbeddedWorker(concurrency)
    log.info("embedded worker started (pid %s) on %s", embedded.pid, _safe_broker(settings))
    serving_pid = os.getpid()

    def _stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    try:
        serve_http(settings, host=host, port=port, processes=1, threads=8)
    finally:
        # gunicorn's workers are forks of this process and unwind through here too: only the
        # process that started the worker stops it.
        if os.getpid() == serving_pid:
            embedded.stop()


def _recover_unfinished(settings: Settings) -> None:
    """After a crash: re-send jobs left queued or running with an expired lease.

    The embedded queue forgets a message whose worker died mid-job (it stays invisible); the job
    store remembers the job. Extra messages are harmless, so this is safe on Redis too.
    """
    from plugin.app import create_app
    from workers.celery_app import services
    from workers.tasks import resend_stale

    app = create_app(settings)
    with app.app_context():
        sent = resend_stale(services().jobs, older_than_s=0)
    if sent:
        log.info("re-queued %d unfinished job(s) from an earlier run", sent)


def serve_http(settings: Settings, *, host: str, port: int, processes: int, threads: int) -> None:
    from plugin.app import create_app

    quiet_http_loggers()
    try:
        from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        log.warning("gunicorn is not installed; serving with Werkzeug's threaded server")
        from werkzeug.serving import make_server

        make_server(host, port, create_app(settings), threaded=True).serve_forever()
        return

    class _Gunicorn(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            options = {
                "bind": f"{host}:{port}",
                "workers": processes,
                "threads": threads,
                "worker_class": "gthread",
                "timeout": 120,
                # Request bodies are read by Flask (MAX_CONTENT_LENGTH); headers capped here.
                "limit_request_field_size": 16384,
                "accesslog": "-",
                # No query strings in the access log: they could carry patient identifiers.
                "access_log_format": '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss',
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Flask:
            return create_app(settings)

    _Gunicorn().run()


def _safe_broker(settings: Settings) -> str:
    """The broker URL for logs, without a password."""
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(settings.effective_broker_url))


# --- tokens ----------------------------------------------------------------------------------------


def _job_store(settings: Settings) -> JobStore:
    from workers.jobs import JobStore

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return JobStore.from_url(settings.effective_jobs_database_url)


@click.group("tokens")
def tokens_cli() -> None:
    """API tokens for machine clients (shown once, stored hashed)."""


@tokens_cli.command("create")
@click.argument("name")
@click.pass_context
def tokens_create(ctx: click.Context, name: str) -> None:
    """Create a token for NAME and print it (it cannot be shown again)."""
    from plugin.api.tokens import ApiTokens

    try:
        token = ApiTokens(_job_store(settings_of(ctx))).create(name)
    except PhotomarkerError as error:
        raise click.ClickException(error.message) from None
    click.echo(token)


@tokens_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def tokens_list(ctx: click.Context, as_json: bool) -> None:
    """List token names, when they were made and whether they are revoked (never the tokens)."""
    from plugin.api.tokens import ApiTokens

    listed = ApiTokens(_job_store(settings_of(ctx))).list_tokens()
    rows = [
        {"name": t.name, "created": _when(t.created_at), "revoked": _when(t.revoked_at), "active": t.active}
        for t in listed
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = "active" if row["active"] else f"revoked {row['revoked']}"
        click.echo(f"{row['name']}\tcreated {row['created']}\t{state}")


@tokens_cli.command("revoke")
@click.argument("name")
@click.pass_context
def tokens_revoke(ctx: click.Context, name: str) -> None:
    """Revoke the token named NAME."""
    from plugin.api.tokens import ApiTokens

    if not ApiTokens(_job_store(settings_of(ctx))).revoke(name):
        raise click.ClickException(f"no active token named {name!r}")
    click.echo(f"revoked {name}")


# --- jobs ------------------------------------------------------------------------------------------


@click.group("jobs")
def jobs_cli() -> None:
    """Inspect and retry analysis jobs."""


@jobs_cli.command("list")
@click.option("--status", type=click.Choice(["queued", "running", "done", "failed"]))
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def jobs_list(ctx: click.Context, status: str | None, limit: int, as_json: bool) -> None:
    """The newest jobs, one line each."""
    from plugin.api.jobs import job_json

    listed = _job_store(settings_of(ctx)).list_jobs(status=cast("JobStatus | None", status), limit=limit)
    if as_json:
        click.echo(json.dumps([_summary(job_json(job)) for job in listed], indent=2))
        return
    for job in listed:
        reason = f"\t{job.error_code}" if job.error_code else ""
        click.echo(
            f"{job.id}\t{job.status}\t{job.queue}\t{_when(job.created_at)}\t{job.requested_by}{reason}"
        )


@jobs_cli.command("show")
@click.argument("job_id")
@click.pass_context
def jobs_show(ctx: click.Context, job_id: str) -> None:
    """One job in full (as the API shows it, plus who asked and which worker ran it)."""
    from plugin.api.jobs import job_json

    job = _job_store(settings_of(ctx)).get(job_id)
    if job is None:
        raise click.ClickException(f"no job {job_id}")
    shown = job_json(job) | {"requested_by": job.requested_by, "worker": job.worker, "batch": job.batch_owner}
    click.echo(json.dumps(shown, indent=2, ensure_ascii=False))


@jobs_cli.command("retry")
@click.argument("job_id")
@click.pass_context
def jobs_retry(ctx: click.Context, job_id: str) -> None:
    """Queue a failed (or stuck) job again; a finished one is left alone."""
    from plugin.app import create_app
    from workers.celery_app import celery_for, enqueue

    settings = settings_of(ctx)
    store = _job_store(settings)
    job = store.requeue(job_id)
    if job is None:
        current = store.get(job_id)
        state = current.status if current is not None else "unknown"
        raise click.ClickException(f"job {job_id} cannot be retried (it is {state})")
    try:
        enqueue(celery_for(create_app(settings)), job)
    except Exception as exc:  # the operator needs the reason, not a traceback
        raise click.ClickException(f"could not queue job {job_id}: {type(exc).__name__}") from None
    click.echo(f"queued {job_id} again on {job.queue}")


def _summary(shown: dict[str, Any]) -> dict[str, Any]:
    # A list is for scanning: the (possibly large) result Bundle is left to `jobs show`.
    return {key: value for key, value in shown.items() if key != "result"}


def _when(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")
