"""The ``photomarker`` command line: analyse photos, inspect settings, manage the audit trail."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, cast

import click

from models.errors import PhotomarkerError, SettingsError
from plugin.settings import Settings, load_settings


def _settings(ctx: click.Context, **overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as error:
        # One line naming the variable, no traceback: the operator fixes the environment.
        click.echo(f"photomarker: {error.message}", err=True)
        ctx.exit(2)
        raise AssertionError("unreachable") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="photomarker")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Photomarker: phone photos → FHIR Observations (TIS, skin conditions, tumours, Hb)."""
    settings = _settings(ctx)
    logging.basicConfig(
        level=settings.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Migrations announce themselves at INFO on every fresh database; that is not news to a user.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    ctx.obj = {"settings": settings}


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--kind",
    type=click.Choice(["auto", "skin", "conjunctiva"]),
    default="auto",
    show_default=True,
    help="Which analyses to run; auto uses the body site, then what the photo shows.",
)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="Write the Bundle here.")
@click.option(
    "--fhir-base",
    metavar="URL",
    help="FHIR server to read Binaries from and to POST the transaction to.",
)
@click.option(
    "--patient",
    metavar="Patient/ID",
    help="Files: the patient the photos belong to. Resources: refuse photos of anyone else.",
)
@click.option(
    "--series",
    is_flag=True,
    help="The photos given are one series of one lesion: one accumulated result for all of them.",
)
@click.pass_context
def analyze(
    ctx: click.Context,
    paths: tuple[Path, ...],
    kind: str,
    out: Path | None,
    fhir_base: str | None,
    patient: str | None,
    series: bool,
) -> None:
    """Analyse photos and videos (image or video files, Media/DocumentReference JSON, or Bundles).

    A video (MP4, QuickTime .mov, WebM) is judged a few frames a second and accumulated into one
    result; with --series the photos given are one lesion, accumulated the same way.

    Prints one FHIR transaction Bundle with the results (or writes it to --out); with
    --fhir-base also POSTs it. Each refused input is one line on stderr and makes the exit
    status 1; the other inputs are still analysed.
    """
    from plugin.audit_log import cli_actor, open_audit_store, refusal_record, written_record
    from plugin.local_analysis import analyse_paths
    from workers.analysis import RequestedKind
    from workers.fhir_client import FhirClient

    overrides: dict[str, Any] = {"fhir_base_url": fhir_base} if fhir_base else {}
    settings = _settings(ctx, **overrides)
    if patient is not None and not patient.startswith("Patient/"):
        raise click.BadParameter("must look like Patient/<id>", param_hint="--patient")
    if fhir_base and patient is None and any(not _is_json(p) for p in paths):
        raise click.BadParameter(
            "results of an image file can only be posted with --patient Patient/<id>",
            param_hint="--patient",
        )
    try:
        audit = open_audit_store(settings)
    except PhotomarkerError as error:
        # No audit trail, no analysis: an unaudited result is not a result.
        click.echo(f"photomarker: {error.code}: {error.message}", err=True)
        ctx.exit(1)
    client = FhirClient(settings.fhir_base) if settings.fhir_base else None
    try:
        run = analyse_paths(
            paths,
            settings,
            record=audit.append,
            requested=cast(RequestedKind, kind),
            patient=patient,
            client=client,
            series=series,
        )
        for analysed in run.analysed:
            click.echo(f"photomarker: {analysed.line()}", err=True)
        for refusal in run.refusals:
            click.echo(f"photomarker: {refusal.line()}", err=True)
        transaction = run.transaction
        if transaction is not None:
            text = json.dumps(transaction, indent=2, ensure_ascii=False)
            if out is None:
                click.echo(text)
            else:
                out.write_text(text + "\n", encoding="utf-8")
            if fhir_base and client is not None:
                response = client.transaction(transaction)
                written = tuple(
                    str(e["response"]["location"])
                    for e in response.get("entry", [])
                    if isinstance(e.get("response"), dict) and e["response"].get("location")
                )
                audit.append(written_record(who=cli_actor(), locations=written))
                click.echo(f"photomarker: posted to {settings.fhir_base}: {len(written)} entries", err=True)
    except PhotomarkerError as error:
        audit.append(refusal_record(error, who=cli_actor()))
        click.echo(f"photomarker: {error.code}: {error.message}", err=True)
        ctx.exit(1)
    finally:
        if client is not None:
            client.close()
        audit.close()
    ctx.exit(1 if run.refusals else 0)


@main.command("settings")
@click.pass_context
def show_settings(ctx: click.Context) -> None:
    """Print the effective settings (secrets masked) as JSON."""
    settings: Settings = ctx.obj["settings"]
    values = settings.model_dump(mode="json")
    values["effective_broker_url"] = settings.effective_broker_url
    values["effective_audit_database_url"] = settings.effective_audit_database_url
    click.echo(json.dumps(values, indent=2))


def _is_json(path: Path) -> bool:
    return path.suffix.lower() == ".json"


from audit.cli import audit_cli  # noqa: E402  (sub-groups mounted last; they import nothing heavy)
from plugin.cli_models import models_cli  # noqa: E402

main.add_command(audit_cli)
main.add_command(models_cli)

from plugin.cli_train import evaluate as evaluate_command  # noqa: E402
from plugin.cli_train import train as train_command  # noqa: E402

main.add_command(train_command)
main.add_command(evaluate_command)

from plugin.cli_skin import generate_cli  # noqa: E402

main.add_command(generate_cli)

from plugin.cli_workers import beat, jobs_cli, serve, tokens_cli, web, worker  # noqa: E402  (mounted last)

main.add_command(worker)
main.add_command(serve)
main.add_command(web)
main.add_command(beat)
main.add_command(tokens_cli)
main.add_command(jobs_cli)

from plugin.cli_inbox import inbox_cli, keys_cli  # noqa: E402

main.add_command(keys_cli)
main.add_command(inbox_cli)
