"""``photomarker train`` and ``photomarker evaluate``: fit a model on labelled photos, or score one.

``train hb --data labels.csv --cv 5`` cross-validates (grouped, see ``models.hb.dataset``),
prints the figures beside the "predict the training mean" baseline, then trains the final
model on all the data and writes the package (weights, manifest, model card). ``evaluate hb
--data labels.csv`` scores an installed package — by default the one the analysis would use —
on any CSV of the same layout, without training. Both print a table, or one JSON object with
``--json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from models.errors import PhotomarkerError
from plugin.cli_context import command_line, describe_data, fail, settings_of
from plugin.cli_skin import SKIN_TASKS, evaluate_skin_command, train_skin
from plugin.cli_tumour import evaluate_tumour, train_tumour, tumour_recipe

if TYPE_CHECKING:
    from models.hb.dataset import Grouping

TASKS = ("hb", "tumour", "hb-localiser", *SKIN_TASKS)
# The pretrained encoders (models.engine.pretrained.ENCODERS), named here to keep torch out of --help.


def _task_and_data(command: Callable[..., None]) -> Callable[..., None]:
    """TASK and --data, the same on ``train`` and ``evaluate``."""
    command = click.option(
        "--data",
        "csv_path",
        required=True,
        type=click.Path(path_type=Path, dir_okay=False),
        help="CSV in CP-AnemiC's (hb, hb-localiser) or PAD-UFES-20's (tumour) layout, or a skin "
        "training manifest (body-part, lesion, tis, ad-complications, diagnosis); images beside it.",
    )(command)
    return click.argument("task", type=click.Choice(TASKS))(command)


@click.command("train")
@_task_and_data
@click.option(
    "--cv",
    "folds",
    default=5,
    show_default=True,
    type=click.IntRange(2, 20),
    help="Cross-validation folds (grouped).",
)
@click.option(
    "--grouping",
    type=click.Choice(["strict", "sha256"]),
    default="strict",
    show_default=True,
    help="strict: copies, one child's photos and look-alike re-crops share a fold; sha256: copies only.",
)
@click.option(
    "--members",
    default=3,
    show_default=True,
    type=click.IntRange(1, 16),
    help="CNNs (seeds) in the ensemble.",
)
@click.option("--epochs", default=40, show_default=True, type=click.IntRange(1, 1000))
@click.option(
    "--threads",
    default=0,
    show_default=True,
    type=click.IntRange(0, 256),
    help="CPU threads for torch; 0 = one per available core.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Package directory [default: the shipped models/weights/NAME].",
)
@click.option("--name", default="hb-conjunctiva", show_default=True, help="Package name.")
@click.option("--model-version", "model_version", default="1.0.0", show_default=True)
@click.option("--no-final", is_flag=True, help="Cross-validate only; write no package.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@tumour_recipe
@click.option(
    "--test",
    "test_csv",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Skin tasks: a held-out manifest scored after training; its figures go into the card.",
)
@click.option(
    "--labels",
    "label_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="diagnosis: JSON label list (key, code, display, system) fixing the classes and their codes.",
)
@click.pass_context
def train(
    ctx: click.Context,
    /,
    task: str,
    csv_path: Path,
    folds: int,
    grouping: str,
    members: int,
    epochs: int,
    threads: int,
    out_dir: Path | None,
    name: str,
    model_version: str,
    no_final: bool,
    as_json: bool,
    test_csv: Path | None,
    label_file: Path | None,
    **recipe: Any,
) -> None:
    """Cross-validate TASK on labelled photos, then train the final model on all of them.

    Skin tasks train once on a patient-grouped 85/15 split (--cv does not apply; use --test for
    held-out figures) with 14 epochs and 2 members unless --epochs/--members are given.
    """
    if task in SKIN_TASKS:
        from click.core import ParameterSource

        def given(option: str) -> bool:
            return ctx.get_parameter_source(option) != ParameterSource.DEFAULT

        train_skin(
            ctx,
            task,
            csv_path,
            epochs=epochs if given("epochs") else 14,
            members=members if given("members") else 2,
            threads=threads,
            out_dir=out_dir,
            name=name if given("name") else None,
            model_version=model_version,
            test_csv=test_csv,
            label_file=label_file,
            as_json=as_json,
            size=recipe.get("size"),
        )
        return
    if task == "tumour":
        train_tumour(
            ctx,
            csv_path,
            folds,
            epochs,
            members,
            threads,
            out_dir,
            name,
            model_version,
            no_final,
            as_json,
            recipe,
        )
        return
    if task == "hb-localiser":
        _train_hb_localiser(ctx, csv_path, epochs, threads, out_dir, name, model_version, no_final, as_json)
        return
    from models.engine.execution import resolve_execution
    from models.hb.cnn import CnnTraining
    from models.hb.dataset import load_dataset
    from models.hb.package import cv_summary_json, save_hb_package
    from models.hb.training import HbTrainingConfig, cross_validate, prepare, train_final
    from models.registry import SHIPPED_MODEL_DIR, PackageRequest

    resolve_execution("cpu", threads=threads)
    command = command_line(
        "train", task, csv_path, cv=folds, grouping=grouping, members=members, epochs=epochs
    )

    def progress(line: str) -> None:
        click.echo(f"photomarker: {line}", err=True)

    try:
        began = time.perf_counter()
        dataset = load_dataset(csv_path)
        data = prepare(dataset, cast("Grouping", grouping))
        summary = dataset.summary()
        progress(
            f"{summary['rows']} rows → {summary['samples']} samples ({summary['rows_dropped']} rows in "
            f"{summary['duplicate_groups_dropped']} conflicting duplicate groups dropped); "
            f"{len(set(data.groups))} CV groups ({grouping})"
        )
        config = HbTrainingConfig(
            folds=folds,
            members=members,
            cnn=CnnTraining(epochs=epochs),
            grouping=cast("Grouping", grouping),
        )
        cv = cross_validate(data, config, progress)
        final = None
        manifest = None
        if not no_final:
            final = train_final(data, cv, progress)
            directory = out_dir or SHIPPED_MODEL_DIR / name
            request = PackageRequest(directory, name, model_version, command, describe_data(csv_path))
            manifest = save_hb_package(request, cv, final)
            progress(f"wrote {directory} (weights {manifest.weights.sha256[:12]}…)")
    except PhotomarkerError as error:
        fail(ctx, error)
        return
    extra: dict[str, Any] = {
        "task": task,
        "command": command,
        "dataset": summary,
        "excluded_too_little_tissue": data.excluded,
        "total_seconds": round(time.perf_counter() - began, 1),
    }
    if manifest is not None:
        extra["package"] = {
            "name": manifest.name,
            "version": manifest.version,
            "sha256": manifest.weights.sha256,
        }
    if as_json:
        click.echo(cv_summary_json(cv, final, extra))
        return
    click.echo(f"Cross-validation ({folds}-fold, grouped: {grouping}), out-of-fold ensemble:")
    click.echo(cv.report.format_table(" (g/dL)"))
    for estimator, report in cv.estimator_reports.items():
        click.echo(
            f"  {estimator:<7} MAE {report.metrics['mae'].format()}  r {report.metrics['pearson_r'].format()}"
        )
    click.echo(
        f"95% prediction interval ± {cv.interval_half_width:.2f} g/dL "
        f"(cross-conformal coverage {cv.interval_coverage:.1%}); {extra['total_seconds']:.0f} s in all"
    )


@click.command("evaluate")
@_task_and_data
@click.option("--model", "model_name", help="Installed package to score [default: the one analyses use].")
@click.option(
    "--grouping",
    type=click.Choice(["strict", "sha256"]),
    default="strict",
    show_default=True,
    help="Groups the bootstrap resamples as units.",
)
@click.option("--resamples", default=2000, show_default=True, type=click.IntRange(100, 100_000))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--record",
    is_flag=True,
    help="Skin tasks and hb-localiser: write these figures (and this command) into the package's "
    "manifest and card.",
)
@click.pass_context
def evaluate(
    ctx: click.Context,
    task: str,
    csv_path: Path,
    model_name: str | None,
    grouping: str,
    resamples: int,
    as_json: bool,
    record: bool,
) -> None:
    """Score an installed TASK model on labelled photos (no training)."""
    if task in SKIN_TASKS:
        evaluate_skin_command(ctx, task, csv_path, model_name, as_json, record=record)
        return
    if task == "tumour":
        evaluate_tumour(ctx, csv_path, model_name, resamples, as_json)
        return
    if task == "hb-localiser":
        _evaluate_hb_localiser(ctx, csv_path, model_name, as_json, record)
        return
    from models.errors import ModelNotInstalled
    from models.hb.evaluate import evaluate_hb
    from models.hb.pipeline import ARCHITECTURE
    from models.registry import registry_for

    settings = settings_of(ctx)
    registry = registry_for(settings.model_dir)
    try:
        if model_name is None:
            candidates = [p for p in registry.for_task(task) if p.manifest.architecture.name == ARCHITECTURE]
            if not candidates:
                raise ModelNotInstalled(f"no {task} model package is installed")
            model_name = candidates[0].name
        loaded = registry.load(model_name)
        result = evaluate_hb(csv_path, loaded, grouping=cast("Grouping", grouping), n_resamples=resamples)
    except PhotomarkerError as error:
        fail(ctx, error)
        return
    if as_json:
        out = result.to_json()
        out["command"] = command_line("evaluate", task, csv_path, model=model_name, grouping=grouping)
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(f"{result.model} {result.version} on {csv_path}:")
    click.echo(result.report.format_table(" (g/dL)"))
    click.echo(f"abstained on {result.abstained}; no conjunctiva found in {result.not_found}")


def _train_hb_localiser(
    ctx: click.Context,
    csv_path: Path,
    epochs: int,
    threads: int,
    out_dir: Path | None,
    name: str,
    model_version: str,
    no_final: bool,
    as_json: bool,
) -> None:
    """``train hb-localiser``: the conjunctiva segmenter on composites of the CSV's strips."""
    from click.core import ParameterSource

    from models.engine.execution import resolve_execution
    from models.hb.segmenter_training import DEFAULT_NAME, SegmenterConfig, train_segmenter
    from models.registry import SHIPPED_MODEL_DIR, PackageRequest

    def given(option: str) -> bool:
        return ctx.get_parameter_source(option) != ParameterSource.DEFAULT

    config = SegmenterConfig(epochs=epochs) if given("epochs") else SegmenterConfig()
    name = name if given("name") else DEFAULT_NAME
    resolve_execution("cpu", threads=threads)
    options: dict[str, object] = {"epochs": config.epochs} if given("epochs") else {}
    command = command_line("train", "hb-localiser", csv_path, **options, threads=threads)
    request = None
    if not no_final:
        directory = out_dir or SHIPPED_MODEL_DIR / name
        request = PackageRequest(directory, name, model_version, command, describe_data(csv_path))
    try:
        report, manifest, extra = train_segmenter(
            csv_path, config, request, lambda line: click.echo(f"photomarker: {line}", err=True)
        )
    except PhotomarkerError as error:
        fail(ctx, error)
        return
    if manifest is not None and request is not None:
        click.echo(
            f"photomarker: wrote {request.directory} (weights {manifest.weights.sha256[:12]}…)", err=True
        )
    if as_json:
        out = {"task": "hb-localiser", "command": command, **extra, **report.to_json()}
        click.echo(json.dumps(out, indent=2))
        return
    click.echo("Held-out composites (strips from CV groups training never saw):")
    click.echo(report.format_table())


def _evaluate_hb_localiser(
    ctx: click.Context, csv_path: Path, model_name: str | None, as_json: bool, record: bool
) -> None:
    from models.errors import ModelNotInstalled
    from models.hb.segmenter import ARCHITECTURE, TASK, segmenter_from
    from models.hb.segmenter_training import record_rescored, rescore
    from models.registry import registry_for

    registry = registry_for(settings_of(ctx).model_dir)
    try:
        if model_name is None:
            candidates = [p for p in registry.for_task(TASK) if p.manifest.architecture.name == ARCHITECTURE]
            if not candidates:
                raise ModelNotInstalled("no conjunctiva segmenter package is installed")
            model_name = candidates[0].name
        loaded = registry.load(model_name)
        segmenter = segmenter_from(loaded)
        report, split = rescore(csv_path, segmenter)
        command = command_line("evaluate", "hb-localiser", csv_path, model=model_name)
        if record:
            directory = registry.get(model_name).directory
            record_rescored(directory, segmenter, (report, split), command)
            click.echo(f"photomarker: recorded in {directory.name}/{loaded.manifest.card}", err=True)
    except PhotomarkerError as error:
        fail(ctx, error)
        return
    if as_json:
        click.echo(json.dumps({"model": model_name, "command": command, **report.to_json()}, indent=2))
        return
    click.echo(f"{model_name} {loaded.manifest.version} on held-out composites of {csv_path}:")
    click.echo(report.format_table())
