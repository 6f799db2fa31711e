"""``photomarker models``: list, show and verify installed model packages, and run one on photos."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from models.errors import PhotomarkerError
from plugin.cli_context import fail, settings_of

if TYPE_CHECKING:
    from models.registry import ModelPackage, ModelRegistry


def _registry(ctx: click.Context) -> ModelRegistry:
    # Imported here: the registry brings torch, which every other command can do without.
    from models.registry import registry_for

    return registry_for(settings_of(ctx).model_dir)


def _summary(package: ModelPackage) -> dict[str, Any]:
    manifest = package.manifest
    return {
        "name": manifest.name,
        "version": manifest.version,
        "task": manifest.task,
        "display_name": manifest.display_name,
        "reference_only": manifest.reference_only,
        "weights_sha256": manifest.weights.sha256,
        "directory": str(package.directory),
    }


@click.group("models")
def models_cli() -> None:
    """Model packages: what is installed, what each was trained on and how it scored."""


@models_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
@click.pass_context
def list_models(ctx: click.Context, as_json: bool) -> None:
    """List installed model packages (PHOTOMARKER_MODEL_DIR first, then the shipped ones)."""
    registry = _registry(ctx)
    packages = registry.list()
    if as_json:
        click.echo(json.dumps([_summary(package) for package in packages], indent=2))
    else:
        for package in packages:
            manifest = package.manifest
            flag = "  REFERENCE — not for clinical use" if manifest.reference_only else ""
            click.echo(
                f"{manifest.name:<24} {manifest.version:<10} {manifest.task:<18} "
                f"{manifest.weights.sha256[:12]}{flag}"
            )
        if not packages:
            click.echo("no model packages installed", err=True)
    for problem in registry.problems:
        click.echo(
            f"photomarker: {problem.directory}: {problem.error.code}: {problem.error.message}", err=True
        )


@models_cli.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="The full manifest as JSON.")
@click.option("--card", is_flag=True, help="Print the model card (markdown) instead.")
@click.pass_context
def show_model(ctx: click.Context, name: str, as_json: bool, card: bool) -> None:
    """Show one package's manifest: task, labels, training data, metrics, calibration."""
    try:
        package = _registry(ctx).get(name)
    except PhotomarkerError as error:
        fail(ctx, error)
        return
    manifest = package.manifest
    if card:
        click.echo(package.card_text() or f"(no model card at {package.card_path})")
        return
    if as_json:
        click.echo(
            json.dumps({**manifest.model_dump(mode="json"), "directory": str(package.directory)}, indent=2)
        )
        return
    lines = [
        f"{manifest.display_name} — {manifest.name} {manifest.version}",
        *(["REFERENCE — not for clinical use"] if manifest.reference_only else []),
        f"task:          {manifest.task} ({manifest.task_description})",
        f"labels:        {', '.join(f'{label.code} ({label.display})' for label in manifest.labels)}",
        f"architecture:  {manifest.architecture.name} × {manifest.architecture.ensemble_size}, "
        f"input {manifest.input.size} px",
        f"weights:       {package.weights_path} sha256 {manifest.weights.sha256}",
        *(
            [
                f"record model:  {package.directory / manifest.record.file} sha256 {manifest.record.sha256} "
                f"(weighs in: {', '.join(manifest.record.facts)})"
            ]
            if manifest.record is not None
            else []
        ),
        f"training data: {manifest.training_data.source}: {manifest.training_data.summary}",
        f"intended use:  {manifest.intended_use}",
        f"calibration:   temperature {manifest.calibration.temperature:g} ({manifest.calibration.fitted_on})",
        f"abstention:    max spread {manifest.abstention.max_spread}, max OOD {manifest.abstention.max_ood}",
        f"metrics ({manifest.evaluation.split}, n={manifest.evaluation.n}):",
        *(f"  {key}: {value:g}" for key, value in manifest.evaluation.metrics.items()),
        f"model card:    {package.card_path}",
    ]
    click.echo("\n".join(lines))


@models_cli.command("verify")
@click.argument("names", nargs=-1)
@click.pass_context
def verify_models(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Check the weights' (and record models') SHA-256 of the named (or all) packages; exit 1 on any
    mismatch."""
    registry = _registry(ctx)
    failed = False
    for name in names or tuple(package.name for package in registry.list()):
        try:
            click.echo(f"{name}: ok {registry.verify(name)}")
        except PhotomarkerError as error:
            click.echo(f"photomarker: {name}: {error.code}: {error.message}", err=True)
            failed = True
    ctx.exit(1 if failed else 0)


@models_cli.command("predict")
@click.argument("name")
@click.argument("photos", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--heatmap-dir", type=click.Path(path_type=Path, file_okay=False), help="Write Grad-CAM overlays here."
)
@click.pass_context
def predict(ctx: click.Context, name: str, photos: tuple[Path, ...], heatmap_dir: Path | None) -> None:
    """Run one model on image files and print its raw predictions as JSON (no FHIR, no quality gate)."""
    from models.engine.gradcam import render_overlay
    from models.engine.options import EngineOptions
    from models.intake import IntakeLimits, decode_photo
    from models.pipelines import build_model_pipeline, execution_for

    settings = settings_of(ctx)
    options = EngineOptions.from_settings(settings)
    try:
        loaded = _registry(ctx).load(name)
        pipeline = build_model_pipeline(loaded, execution_for(options), options)
        decoded = [
            decode_photo(path.read_bytes(), limits=IntakeLimits.from_settings(settings)) for path in photos
        ]
    except PhotomarkerError as error:
        fail(ctx, error)
        return
    except OSError as exc:
        raise click.FileError(str(exc.filename), exc.strerror) from None
    manifest = loaded.manifest
    rows = []
    for path, photo, prediction in zip(photos, decoded, pipeline(decoded), strict=True):
        row: dict[str, Any] = {"photo": str(path), "model": f"{manifest.name} {manifest.version}"}
        if prediction.probabilities is not None:
            row["probabilities"] = {
                label.code: round(p, 4)
                for label, p in zip(manifest.labels, prediction.probabilities, strict=True)
            }
        if prediction.value is not None:
            row["value"] = round(prediction.value, 4)
            row["unit"] = manifest.output.unit
        row["spread"] = round(prediction.spread, 4)
        row["ood_score"] = None if prediction.ood_score is None else round(prediction.ood_score, 4)
        row["abstained"] = None if prediction.abstention is None else prediction.abstention.reason
        if heatmap_dir is not None and prediction.explanation is not None:
            heatmap_dir.mkdir(parents=True, exist_ok=True)
            target = heatmap_dir / f"{path.stem}.{manifest.name}.heatmap.png"
            target.write_bytes(render_overlay(photo.pixels, prediction.explanation))
            row["heatmap"] = str(target)
        rows.append(row)
    click.echo(json.dumps(rows, indent=2))
    if manifest.reference_only:
        click.echo(f"photomarker: {manifest.name} is a reference model — not for clinical use", err=True)
