"""``photomarker keys generate|jwks`` and ``photomarker inbox subscribe|poll``: setting up the inbox.

``keys generate`` makes the private key the inbox signs its client assertions with (mode 0600)
and prints the public JWKS to register at the FHIR server (or point it at the app's
``/.well-known/jwks.json``). ``inbox subscribe`` creates the Backport IG Subscription that sends
notifications to ``/fhir/notifications``; ``inbox poll`` runs one poll now.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from models.errors import PhotomarkerError
from plugin.cli_context import fail, settings_of

# --- keys ------------------------------------------------------------------------------------------


@click.group("keys")
def keys_cli() -> None:
    """The inbox's signing key for SMART Backend Services."""


@keys_cli.command("generate")
@click.option("--alg", type=click.Choice(["RS384", "ES384"]), default="RS384", show_default=True)
@click.option(
    "--path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the private key (default: PHOTOMARKER_INBOX_PRIVATE_KEY_PATH or <data dir>/keys/).",
)
@click.option("--replace", is_flag=True, help="Overwrite an existing key (the old one stops working).")
@click.pass_context
def generate(ctx: click.Context, alg: str, path: Path | None, replace: bool) -> None:
    """Make a new key pair (private key mode 0600); print the public JWKS to register."""
    from audit.record import AuditAction
    from plugin.audit_log import cli_actor, open_audit_store
    from workers.inbox.keys import generate_key, key_path
    from workers.inbox.runtime import inbox_record

    settings = settings_of(ctx)
    target = path or key_path(settings)
    try:
        key = generate_key(target, "ES384" if alg == "ES384" else "RS384", replace=replace)
        with open_audit_store(settings) as audit:
            record = inbox_record(
                "inbox.key.generated", action=AuditAction.CREATE, entities=(f"jwk:{key.kid}",)
            )
            audit.append(dataclasses.replace(record, agent_who=cli_actor()))
    except PhotomarkerError as error:
        fail(ctx, error)
        return
    click.echo(f"photomarker: wrote {target} ({key.alg}, kid {key.kid})", err=True)
    click.echo(json.dumps({"keys": [key.public_jwk()]}, indent=2))


@keys_cli.command("jwks")
@click.pass_context
def show_jwks(ctx: click.Context) -> None:
    """Print the public JWKS the app serves at /.well-known/jwks.json."""
    from workers.inbox.keys import public_jwks

    try:
        click.echo(json.dumps(public_jwks(settings_of(ctx)), indent=2))
    except PhotomarkerError as error:
        fail(ctx, error)


# --- inbox -----------------------------------------------------------------------------------------


@click.group("inbox")
def inbox_cli() -> None:
    """The automated inbox: its Subscription and its poller."""


@inbox_cli.command("subscribe")
@click.option("--endpoint", required=True, metavar="URL", help="This app's URL + /fhir/notifications.")
@click.option(
    "--topic", required=True, metavar="CANONICAL", help="The server's SubscriptionTopic for new photos."
)
@click.option(
    "--content",
    type=click.Choice(["id-only", "full-resource"]),
    default="id-only",
    show_default=True,
    help="What each notification carries.",
)
@click.option("--filter", "filters", multiple=True, metavar="CRITERIA", help="Backport filter, e.g. Media?…")
@click.option("--heartbeat", type=click.IntRange(0, 86400), default=0, help="Heartbeat period in seconds.")
@click.pass_context
def subscribe(
    ctx: click.Context, endpoint: str, topic: str, content: str, filters: tuple[str, ...], heartbeat: int
) -> None:
    """Create the inbox's Subscription (R4 Backport IG) on the FHIR server."""
    from audit.record import AuditAction
    from plugin.audit_log import open_audit_store
    from plugin.inbox.notifications import SECRET_HEADER
    from workers.inbox.backend_auth import BackendServicesClient
    from workers.inbox.runtime import inbox_record
    from workers.inbox.subscription import build_backport_subscription

    settings = settings_of(ctx)
    if not endpoint.startswith(("https://", "http://")):
        raise click.BadParameter("must be an http(s) URL", param_hint="--endpoint")
    secret = settings.inbox_notification_secret
    if secret is None:
        click.echo("photomarker: set PHOTOMARKER_INBOX_NOTIFICATION_SECRET first", err=True)
        ctx.exit(2)
        return
    with open_audit_store(settings) as audit:
        try:
            subscription = build_backport_subscription(
                topic=topic,
                endpoint=endpoint,
                header=f"{SECRET_HEADER}: {secret.get_secret_value()}",
                content="full-resource" if content == "full-resource" else "id-only",
                filters=filters,
                heartbeat_s=heartbeat or None,
            )
            auth = BackendServicesClient(settings, extra_scopes=("system/Subscription.crs",))
            try:
                with auth.fhir_client() as client:
                    created = client.create(subscription)
            finally:
                auth.close()
        except PhotomarkerError as error:
            audit.append(inbox_record("inbox.subscription.refused", error=error))
            fail(ctx, error)
            return
        reference = f"Subscription/{created.get('id')}"
        audit.append(
            inbox_record("inbox.subscription.created", action=AuditAction.CREATE, entities=(reference,))
        )
    click.echo(json.dumps({"subscription": reference, "status": created.get("status")}))


@inbox_cli.command("poll")
@click.option(
    "--since", metavar="INSTANT", help="Look from here (e.g. 2026-01-01T00:00:00Z) instead of the cursor."
)
@click.pass_context
def poll(ctx: click.Context, since: str | None) -> None:
    """Poll the FHIR server for new photos now and queue their jobs (workers analyse them)."""
    from plugin.app import create_app
    from workers.inbox.tasks import inbox_poll

    if since is not None:
        try:
            moment = datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError:
            raise click.BadParameter(
                "must be an instant like 2026-01-01T00:00:00Z", param_hint="--since"
            ) from None
        if moment.tzinfo is None:
            raise click.BadParameter("needs a time zone (Z or +hh:mm)", param_hint="--since")
    settings = settings_of(ctx)
    app = create_app(settings)
    with app.app_context():
        result: dict[str, Any] = inbox_poll.run(since=since)
    click.echo(json.dumps(result))
    if "refused" in result:
        ctx.exit(1)
