"""``photomarker evaluate TASK`` for the skin tasks: score installed packages on a labelled manifest.

Body part and lesion extraction are scored on their own. TIS, AD vs complications and the
diagnosis are scored **end to end**, as a photo is analysed: the installed lesion model cuts
the lesions out of the whole photo, the task's model scores the crops, and the photo's result
is aggregated — so a lesion the extractor misses counts against the task (reported as
``not_found``). Every figure comes with a bootstrap 95 % CI that resamples patients
(``patient_id``), and with a per-Fitzpatrick breakdown when the manifest has that column.

Figures, as the source studies report them: detection rate for body part and lesions (Keio),
Pearson r and MAE for TIS (Keio), top-1/3/5 accuracy (NSDD), and per-class sensitivity,
specificity and AUROC (Tohoku, one class against the rest).

The figures are computed in :mod:`models.skin.evaluation_scoring` and reported as a
:class:`~models.skin.evaluation_result.SkinEvaluation`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from models.engine.options import EngineOptions
from models.errors import ModelNotInstalled
from models.evaluation import accuracy, bootstrap
from models.model_stages import execution_for
from models.registry import LoadedModel, registry_for
from models.results import AnalysisName, AnalysisNotPerformed, ConditionProbabilities, TisScore
from models.skin.crops import CropModel
from models.skin.dataset import SkinTask, load_rows, rows_for
from models.skin.evaluation_result import SkinEvaluation
from models.skin.evaluation_scoring import (
    CHUNK,
    by_fitzpatrick,
    evaluate_classes,
    evaluate_lesions,
    evaluate_tis,
    load_photos,
    share,
)
from models.skin.findings import BodyPartClassifier
from models.skin.labels import key_of
from models.skin.lesions import LesionExtractor
from models.skin.pipeline import SkinAnalysisPipeline, skin_finder
from models.skin.real_lesion_scoring import (
    CONDITIONS,
    DETECTION_IOU,
    EVALUATION_SEED,
    METRIC_PREFIX,
    held_out_samples,
    runner_for,
    score_cases,
    summarise,
)
from models.skin.real_lesions import LESION_SHARE, is_pad_layout
from models.skin.tasks import TASKS

Progress = Callable[[int, int], None]
_ANALYSIS_OF_TASK: dict[str, AnalysisName] = {
    "tis": "tis",
    "ad-complications": "skin-condition",
    "diagnosis": "skin-diagnosis",
}


def _load(options: EngineOptions, task_name: str, model_name: str | None) -> LoadedModel:
    registry = registry_for(options.model_dir)
    if model_name is None:
        packages = registry.for_task(task_name)
        if not packages:
            raise ModelNotInstalled(f"no {task_name} model package is installed")
        model_name = packages[0].name
    loaded = registry.load(model_name)
    if loaded.manifest.task != task_name:
        raise ModelNotInstalled(f"{model_name} is a {loaded.manifest.task} model, not {task_name}")
    return loaded


def evaluate_skin(
    task: SkinTask,
    csv_path: Path,
    options: EngineOptions,
    *,
    model_name: str | None = None,
    n_resamples: int = 2000,
    progress: Progress | None = None,
) -> SkinEvaluation:
    if task == "lesion" and is_pad_layout(csv_path):
        return evaluate_real_lesions(
            csv_path, options, model_name=model_name, n_resamples=n_resamples, progress=progress
        )
    spec = TASKS[task]
    rows = rows_for(task, load_rows(csv_path))
    loaded = _load(options, spec.registry_task, model_name)
    manifest = loaded.manifest
    execution = execution_for(options)
    groups = [row.patient_id for row in rows]
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(done, len(rows))

    common: dict[str, Any] = {
        "task": task,
        "model": manifest.name,
        "version": manifest.version,
        "reference_only": manifest.reference_only,
    }
    if task == "body-part":
        classifier = BodyPartClassifier(loaded, execution, options)
        keys = [key_of(label) for label in manifest.labels]
        truth, predicted = [], []
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            for row, (label, _) in zip(chunk, classifier(load_photos(chunk)), strict=True):
                truth.append(keys.index(row.body_part or ""))
                predicted.append(keys.index(key_of(label)))
            advance(len(chunk))
        y, p = np.asarray(truth, float), np.asarray(predicted, float)
        metrics = bootstrap({"detection_rate": accuracy}, y, p, groups=groups, n_resamples=n_resamples)
        for index, key in enumerate(keys):
            positives = y == index
            if positives.any():
                metrics[f"recall_{key}"] = bootstrap(
                    {"r": share},
                    (p[positives] == index).astype(float),
                    p[positives],
                    n_resamples=n_resamples,
                    groups=[g for g, keep in zip(groups, positives, strict=True) if keep],
                )["r"]
        correct = (y == p).astype(float)
        return SkinEvaluation(
            n=len(rows),
            metrics=metrics,
            **common,
            per_fitzpatrick=by_fitzpatrick(rows, correct, n_resamples),
            breakdown_metric="detection_rate",
        )
    if task == "lesion":
        extractor = LesionExtractor(loaded, execution, views=options.view_count)
        return evaluate_lesions(rows, extractor, groups, n_resamples, advance, common)
    finder = skin_finder(options)
    if finder is None:
        raise ModelNotInstalled(
            "end-to-end evaluation needs the lesion extraction model (skin-lesion) installed"
        )
    analysis = _ANALYSIS_OF_TASK[task]
    pipeline = SkinAnalysisPipeline(
        analysis, loaded.info, finder, CropModel(analysis, loaded, execution, options), "rash"
    )
    results: list[TisScore | ConditionProbabilities | None] = []
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        for outcome in pipeline.run(load_photos(chunk)):
            result = outcome.result
            results.append(None if isinstance(result, AnalysisNotPerformed) else result)  # type: ignore[arg-type]
        advance(len(chunk))
    if task == "tis":
        return evaluate_tis(rows, results, groups, n_resamples, common)  # type: ignore[arg-type]
    return evaluate_classes(task, rows, results, manifest.labels, groups, n_resamples, common)  # type: ignore[arg-type]


def evaluate_real_lesions(
    csv_path: Path,
    options: EngineOptions,
    *,
    model_name: str | None = None,
    n_resamples: int = 2000,
    progress: Progress | None = None,
) -> SkinEvaluation:
    """The lesion extractor on real PAD-UFES-20 lesions (held-out patients), bare and pasted."""
    samples = held_out_samples(csv_path)
    runner = runner_for(options, model_name)
    results = score_cases(samples, runner, seed=EVALUATION_SEED, progress=progress)
    metrics, sizes, per_fitzpatrick, counts = summarise(results, n_resamples)
    if counts["cut_outs"] < len(samples):  # black all over: no lesion to find
        counts["empty_cut_outs"] = len(samples) - counts["cut_outs"]
    manifest = runner.lesion_model.manifest
    low, high = LESION_SHARE
    return SkinEvaluation(
        task="lesion",
        model=manifest.name,
        version=manifest.version,
        reference_only=manifest.reference_only,
        n=counts["cut_outs"],
        metrics=metrics,
        per_fitzpatrick=per_fitzpatrick,
        breakdown_metric=f"{METRIC_PREFIX}skin_detection_rate",
        counts=counts,
        split=f"real PAD-UFES-20 lesion cut-outs of held-out patients ({counts['patients']} patients), "
        f"each scored {len(CONDITIONS)} ways: {', '.join(CONDITIONS)} (the cut-out itself; pasted at "
        f"{low:.0%}–{high:.0%} of the short side into a generated skin photo without lesions; into a "
        f"generated photo of no skin); detected = a returned lesion with IoU ≥ {DETECTION_IOU} on the "
        "segmenter's map; growth = it went to the tumour classifier; scored = the skin-tumour analysis "
        "scored it; cut-out = read as a cut-out on black; gate pass = the quality gate let it through; "
        "bootstrap 95 % CIs resample patients",
        real_lesions=True,
        sizes=sizes,
    )
