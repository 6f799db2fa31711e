"""``photomarker audit verify|export|user create``: the auditor's command line (a click group).

Where the store is, in order: ``--database-url``; the ``Settings`` the main ``photomarker`` group
puts in ``ctx.obj["settings"]``; ``PHOTOMARKER_AUDIT_DATABASE_URL``; an ``audit.sqlite`` under
``PHOTOMARKER_DATA_DIR``. The HMAC key: ``--hmac-key-file``; the settings;
``PHOTOMARKER_AUDIT_HMAC_KEY`` (UTF-8 encoded). FHIR exports need the canonical base: the
settings, else ``PHOTOMARKER_CANONICAL_BASE``. There is no ``--hmac-key`` option on purpose:
a key on the command line is visible to every user of the machine through ``ps``.

``verify`` and ``export`` read the trail, so both append an event saying who ran them and with
what; ``user create`` adds an auditor account for the console at ``/audit`` and records that too.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast
from urllib.parse import urlencode

import click
from sqlalchemy.engine import make_url

from audit.events import AuditFilter
from audit.export import BUNDLE_TYPES, ExportFormat, chain_extension_url, fhir_builder
from audit.record import AuditAction, AuditOutcome, AuditRecord
from audit.store import AuditStore
from audit.users import AuditorUsers
from models.errors import AuditError, InvalidRequest

if TYPE_CHECKING:
    from plugin.settings import Settings

URL_ENV = "PHOTOMARKER_AUDIT_DATABASE_URL"
KEY_ENV = "PHOTOMARKER_AUDIT_HMAC_KEY"
DATA_DIR_ENV = "PHOTOMARKER_DATA_DIR"
CANONICAL_ENV = "PHOTOMARKER_CANONICAL_BASE"
_META_KEY = "photomarker.audit.target"
# Exit codes: 1 the chain is broken; 2 the command could not run (wrong key, bad usage).
EXIT_BROKEN = 1
EXIT_CANNOT_CHECK = 2


@dataclass(frozen=True)
class _Target:
    url: str
    hmac_key: bytes | None
    # Canonical base for the AuditEvent code systems and the chain-link extension (FHIR exports).
    canonical: str | None


def _settings(ctx: click.Context) -> Settings | None:
    obj = ctx.find_root().obj
    if isinstance(obj, Mapping):
        settings: Settings | None = obj.get("settings")
        return settings
    return None


def _resolve(ctx: click.Context, database_url: str | None, key_file: Path | None) -> _Target:
    settings = _settings(ctx)
    url = database_url or (settings.effective_audit_database_url if settings else None)
    if url is None:
        url = os.environ.get(URL_ENV)
    if url is None and os.environ.get(DATA_DIR_ENV):
        url = f"sqlite:///{Path(os.environ[DATA_DIR_ENV]).expanduser() / 'audit.sqlite'}"
    if url is None:
        raise click.UsageError(f"no audit database: pass --database-url or set {URL_ENV} or {DATA_DIR_ENV}")
    key: bytes | None
    if key_file is not None:
        # A trailing newline from `echo key > file` is not part of the key.
        key = key_file.read_bytes().rstrip(b"\r\n")
    elif settings is not None:
        key = settings.audit_hmac_key.get_secret_value().encode() if settings.audit_hmac_key else None
    else:
        key = os.environ[KEY_ENV].encode() if os.environ.get(KEY_ENV) else None
    canonical = settings.canonical if settings else os.environ.get(CANONICAL_ENV, "").rstrip("/") or None
    return _Target(url=url, hmac_key=key, canonical=canonical)


def _open_store(ctx: click.Context) -> AuditStore:
    target: _Target = ctx.meta[_META_KEY]
    parsed = make_url(target.url)
    # Checking a database that does not exist would create an empty one and call it intact.
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database
        if not path or path == ":memory:" or not Path(path).exists():
            raise click.ClickException(f"no audit database at {target.url}")
    try:
        return AuditStore.from_url(target.url, hmac_key=target.hmac_key)
    except AuditError as exc:
        raise click.ClickException(str(exc)) from exc


def _who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name in some containers
        return "cli:unknown"


@click.group("audit")
@click.option("--database-url", metavar="URL", help=f"SQLAlchemy URL of the audit store [{URL_ENV}].")
@click.option(
    "--hmac-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help=f"File holding the chain's HMAC key [{KEY_ENV} holds the key itself].",
)
@click.pass_context
def audit_cli(ctx: click.Context, database_url: str | None, hmac_key_file: Path | None) -> None:
    """Verify and export the audit trail."""
    ctx.meta[_META_KEY] = _resolve(ctx, database_url, hmac_key_file)


@audit_cli.command("verify")
@click.pass_context
def verify_command(ctx: click.Context) -> None:
    """Recompute the hash chain; exit 1 naming the first altered, removed or re-ordered event."""
    with _open_store(ctx) as store:
        try:
            result = store.verify()
        except AuditError as exc:
            click.echo(f"cannot verify: {exc}", err=True)
            ctx.exit(EXIT_CANNOT_CHECK)
        click.echo(result.describe(), err=not result.ok)
        store.append(
            AuditRecord(
                event="audit.verify",
                action=AuditAction.EXECUTE,
                recorded=datetime.now(UTC),
                outcome=AuditOutcome.SUCCESS if result.ok else AuditOutcome.SERIOUS_FAILURE,
                outcome_reason=None if result.ok else result.describe(),
                agent_who=_who(),
            )
        )
    if not result.ok:
        ctx.exit(EXIT_BROKEN)


def _moment(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("expected an ISO 8601 date or time, e.g. 2025-03-01T08:00Z") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@audit_cli.command("export")
@click.option(
    "--format", "fmt", type=click.Choice([f.value for f in ExportFormat]), default="fhir", show_default=True
)
@click.option("--patient", help='Only events about this patient, e.g. "Patient/123".')
@click.option("--agent", help="Only events by this user or client.")
@click.option("--event", help='Only this kind of event, e.g. "photo.read".')
@click.option(
    "--outcome", type=click.Choice([o.value for o in AuditOutcome]), help="0 success … 12 major failure."
)
@click.option("--since", callback=_moment, help="From this time on (ISO 8601; UTC when no offset).")
@click.option("--until", callback=_moment, help="Before this time (ISO 8601; UTC when no offset).")
@click.option(
    "--bundle-type",
    type=click.Choice(BUNDLE_TYPES),
    default="collection",
    show_default=True,
    help="Bundle.type of a FHIR export.",
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of stdout.")
@click.pass_context
def export_command(
    ctx: click.Context,
    fmt: str,
    patient: str | None,
    agent: str | None,
    event: str | None,
    outcome: str | None,
    since: datetime | None,
    until: datetime | None,
    bundle_type: str,
    out: Path | None,
) -> None:
    """Export audit events as IHE BALP AuditEvents (FHIR Bundle or NDJSON) or CSV."""
    target: _Target = ctx.meta[_META_KEY]
    chosen = AuditFilter(
        patient=patient,
        agent=agent,
        event=event,
        outcome=AuditOutcome(outcome) if outcome else None,
        since=since,
        until=until,
    )
    builder, extension_url = None, None
    if fmt != ExportFormat.CSV:
        if target.canonical is None:
            raise click.UsageError(f"a FHIR export needs the canonical base: set {CANONICAL_ENV}")
        try:
            builder = fhir_builder(target.canonical)
        except AuditError as exc:
            raise click.ClickException(str(exc)) from exc
        extension_url = chain_extension_url(target.canonical)
    with _open_store(ctx) as store:
        try:
            # An export that could not be recorded must not happen.
            store.check_key()
        except AuditError as exc:
            click.echo(f"cannot export: {exc}", err=True)
            ctx.exit(EXIT_CANNOT_CHECK)
        outcome_code, reason = AuditOutcome.SUCCESS, None
        try:
            # atomic: an interrupted export leaves no half-written file for someone to trust.
            with click.open_file(
                str(out) if out else "-", "w", encoding="utf-8", atomic=out is not None
            ) as stream:
                count = store.export(
                    cast(TextIO, stream),
                    fmt,
                    chosen,
                    bundle_type=bundle_type,
                    builder=builder,
                    chain_extension_url=extension_url,
                )
        except AuditError as exc:
            outcome_code, reason = AuditOutcome.SERIOUS_FAILURE, f"{exc.code}: {exc}"
            raise click.ClickException(str(exc)) from exc
        finally:
            # The attempt to read the trail is recorded whether or not it succeeded.
            store.append(
                AuditRecord(
                    event="audit.export",
                    action=AuditAction.EXECUTE,
                    subtype="search-type",
                    recorded=datetime.now(UTC),
                    outcome=outcome_code,
                    outcome_reason=reason,
                    agent_who=_who(),
                    patient=patient,
                    query=_query_string(chosen, fmt),
                )
            )
    if out is not None:
        click.echo(f"{count} events written to {out}", err=True)


def _query_string(chosen: AuditFilter, fmt: str) -> str:
    params: dict[str, Any] = {"_format": fmt}
    for name in ("patient", "agent", "event", "outcome", "since", "until"):
        value = getattr(chosen, name)
        if value is not None:
            params[name] = value.isoformat() if isinstance(value, datetime) else str(value)
    return urlencode(params)


@audit_cli.group("user")
def user_cli() -> None:
    """Auditor accounts for the console at /audit."""


@user_cli.command("create")
@click.argument("name")
@click.option("--replace", is_flag=True, help="Give an existing auditor a new password.")
@click.pass_context
def user_create_command(ctx: click.Context, name: str, replace: bool) -> None:
    """Add auditor NAME; the password is prompted for, or read as one line from stdin."""
    if sys.stdin.isatty():
        password = str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
    else:
        # Piped in (automation): the first line, without its newline, is the password.
        password = sys.stdin.readline().rstrip("\r\n")
    target: _Target = ctx.meta[_META_KEY]
    parsed = make_url(target.url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        # The first account may come before anything else has created the data dir.
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        store = AuditStore.from_url(target.url, hmac_key=target.hmac_key)
    except AuditError as exc:
        raise click.ClickException(str(exc)) from exc
    with store:
        try:
            AuditorUsers(store.engine).create(name, password, replace=replace)
        except InvalidRequest as exc:
            raise click.ClickException(str(exc)) from exc
        # Who may read the trail is itself part of the trail.
        store.append(
            AuditRecord(
                event="auditor.created" if not replace else "auditor.password-changed",
                action=AuditAction.CREATE if not replace else AuditAction.UPDATE,
                recorded=datetime.now(UTC),
                agent_who=_who(),
                entities=(f"auditor:{name}",),
            )
        )
    click.echo(f"auditor {name} {'updated' if replace else 'created'}", err=True)
