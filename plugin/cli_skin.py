"""The skin tasks on the command line: ``generate skin``, and ``train``/``evaluate`` for each skin task.

``photomarker generate skin --out DIR --count N`` writes generated photos, lesion masks and a
training manifest (``DIR/labels.csv``, the format in ``models.skin.dataset``). ``photomarker
train TASK --data MANIFEST`` (TASK: body-part, lesion, tis, ad-complications, diagnosis) trains
on any manifest of that format — generated or a hospital's own photos — and writes the package;
with ``--test MANIFEST`` it then scores the package on held-out photos exactly as ``photomarker
evaluate TASK --data MANIFEST`` does and records those figures in the manifest and model card.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from models.errors import PhotomarkerError
from plugin.cli_context import command_line, settings_of

if TYPE_CHECKING:
    from models.skin.dataset import SkinTask

SKIN_TASKS = ("body-part", "lesion", "tis", "ad-complications", "diagnosis")


@click.group("generate")
def generate_cli() -> None:
    """Generate labelled photos (reference data for training and tests)."""


@generate_cli.command("skin")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False))
@click.option("--count", default=3000, show_default=True, type=click.IntRange(10, 1_000_000))
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--size", default=256, show_default=True, type=click.IntRange(64, 4096), help="Side, pixels.")
def generate_skin(out_dir: Path, count: int, seed: int, size: int) -> None:
    """Skin photos with known body part, lesions, TIS items and condition; writes OUT/labels.csv."""
    from models.skin.dataset import write_generated_set

    with click.progressbar(length=count, label="generating", file=sys.stderr) as bar:
        done = 0

        def progress(line: str) -> None:
            nonlocal done
            now = int(line.split()[1].split("/")[0])
            bar.update(now - done)
            done = now

        manifest = write_generated_set(out_dir, count, seed, size, progress)
        bar.update(count - done)
    click.echo(str(manifest))


def train_skin(
    ctx: click.Context,
    task: str,
    csv_path: Path,
    *,
    epochs: int,
    members: int,
    threads: int,
    out_dir: Path | None,
    name: str | None,
    model_version: str,
    test_csv: Path | None,
    label_file: Path | None,
    as_json: bool,
    size: int | None = None,
) -> None:
    from models.engine.execution import resolve_execution
    from models.registry import SHIPPED_MODEL_DIR, PackageRequest
    from models.skin.tasks import TASKS
    from models.skin.training import SkinTrainingConfig
    from models.skin.workflow import train_task

    spec = TASKS[task]  # type: ignore[index]
    resolve_execution("cpu", threads=threads)
    # A package's name is its directory's name (the registry checks it).
    name = name or (out_dir.name if out_dir is not None else spec.default_name)
    options: dict[str, object] = {"epochs": epochs, "members": members}
    if test_csv is not None:
        options["test"] = test_csv
    if label_file is not None:
        options["labels"] = label_file
    if size is not None:
        options["size"] = size
    command = command_line("train", task, csv_path, **options)
    directory = out_dir or SHIPPED_MODEL_DIR / name
    request = PackageRequest(directory, name, model_version, command, str(csv_path))
    config = SkinTrainingConfig(epochs=epochs, members=members)
    stderr = sys.stderr
    try:
        with click.progressbar(length=1000, label=f"training {task}", file=stderr) as bar:
            shown = 0

            def steps(done: int, total: int) -> None:
                nonlocal shown
                now = int(1000 * done / total)
                bar.update(now - shown)
                shown = now

            manifest = train_task(
                cast("SkinTask", task),
                csv_path,
                config,
                request,
                lambda line: click.echo(f"photomarker: {line}", err=True),
                label_file=label_file,
                steps=steps,
                size=size,
            )
        click.echo(f"photomarker: wrote {directory} (weights {manifest.weights.sha256[:12]}…)", err=True)
        result: dict[str, Any] = {
            "task": task,
            "command": command,
            "package": manifest.name,
            "validation": dict(manifest.evaluation.metrics),
        }
        if test_csv is not None:
            evaluation = _evaluate(ctx, task, test_csv, manifest.name, directory.parent)
            from models.skin.package import record_evaluation

            record_evaluation(
                directory,
                evaluation,
                command_line("evaluate", task, test_csv, model=manifest.name),
                spec,
                config,
            )
            result["test"] = evaluation.to_json()
    except PhotomarkerError as error:
        click.echo(f"photomarker: {error.code}: {error.message}", err=True)
        ctx.exit(1)
        return
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(f"{manifest.name} {manifest.version}: validation {json.dumps(result['validation'])}")
        if "test" in result:
            click.echo(f"held-out ({test_csv}):")
            click.echo(evaluation.format_table())


def _evaluate(
    ctx: click.Context, task: str, csv_path: Path, model_name: str | None, extra_dir: Path | None = None
) -> Any:
    from dataclasses import replace

    from models.engine.options import EngineOptions
    from models.pipelines import clear_pipeline_cache
    from models.registry import SHIPPED_MODEL_DIR
    from models.skin.evaluate import evaluate_skin

    settings = settings_of(ctx)
    options = EngineOptions.from_settings(settings)
    if (
        extra_dir is not None
        and options.model_dir is None
        and extra_dir.resolve() != SHIPPED_MODEL_DIR.resolve()
    ):
        options = replace(options, model_dir=extra_dir)
    clear_pipeline_cache()  # a package written a moment ago must be seen
    stderr = sys.stderr
    with click.progressbar(length=1, label=f"evaluating {task}", file=stderr) as bar:
        shown = 0

        def progress(done: int, total: int) -> None:
            nonlocal shown
            bar.length = total
            bar.update(done - shown)
            shown = done

        return evaluate_skin(task, csv_path, options, model_name=model_name, progress=progress)  # type: ignore[arg-type]


def evaluate_skin_command(
    ctx: click.Context,
    task: str,
    csv_path: Path,
    model_name: str | None,
    as_json: bool,
    *,
    record: bool = False,
) -> None:
    try:
        evaluation = _evaluate(ctx, task, csv_path, model_name)
        if record:
            _record(ctx, task, csv_path, evaluation)
    except PhotomarkerError as error:
        click.echo(f"photomarker: {error.code}: {error.message}", err=True)
        ctx.exit(1)
        return
    if as_json:
        out = evaluation.to_json()
        out["command"] = command_line("evaluate", task, csv_path, model=evaluation.model)
        click.echo(json.dumps(out, indent=2))
        return
    reference = " (reference — not for clinical use)" if evaluation.reference_only else ""
    click.echo(f"{evaluation.model} {evaluation.version}{reference} on {csv_path} (n={evaluation.n}):")
    click.echo(evaluation.format_table())


def _record(ctx: click.Context, task: str, csv_path: Path, evaluation: Any) -> None:
    """The figures into the scored package's manifest and card (its weights are not touched)."""
    from models.registry import registry_for
    from models.skin.package import record_evaluation, training_config_of
    from models.skin.tasks import TASKS

    package = registry_for(settings_of(ctx).model_dir).get(evaluation.model)
    spec = TASKS[task]  # type: ignore[index]
    command = command_line("evaluate", task, csv_path, model=evaluation.model)
    record_evaluation(package.directory, evaluation, command, spec, training_config_of(package.manifest))
    click.echo(f"photomarker: recorded in {package.directory.name}/{package.manifest.card}", err=True)
