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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from models.engine.options import EngineOptions
from models.errors import DatasetError, ModelNotInstalled
from models.evaluation import MetricValue, accuracy, auroc, bootstrap, mae, pearson_r
from models.intake import DecodedPhoto, IntakeLimits, decode_photo
from models.model_stages import execution_for
from models.registry import LoadedModel, registry_for
from models.results import AnalysisName, AnalysisNotPerformed, ConditionProbabilities, TisScore
from models.skin.crops import CropModel
from models.skin.dataset import SkinRow, SkinTask, components, load_rows, read_mask, rows_for
from models.skin.findings import BodyPartClassifier
from models.skin.labels import key_of
from models.skin.lesions import MIN_LESION_SHARE, LesionExtractor, lesion_regions
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
_CHUNK = 32
_ANALYSIS_OF_TASK: dict[str, AnalysisName] = {
    "tis": "tis",
    "ad-complications": "skin-condition",
    "diagnosis": "skin-diagnosis",
}
FloatArray = NDArray[np.float64]


def _share(values: FloatArray, _: FloatArray) -> FloatArray:
    return np.asarray(np.mean(values, axis=-1))


@dataclass(frozen=True)
class SkinEvaluation:
    task: SkinTask
    model: str
    version: str
    reference_only: bool
    n: int
    metrics: dict[str, MetricValue]
    per_fitzpatrick: dict[int, tuple[int, MetricValue]] = field(default_factory=dict)
    breakdown_metric: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    # What was scored, for the card (empty: held-out generated photos).
    split: str = ""
    # Real PAD-UFES-20 lesions (models.skin.real_lesions): its figures sit beside the generated ones.
    real_lesions: bool = False
    # How many photos each metric was computed on, where that differs from n.
    sizes: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "task": self.task,
            "model": self.model,
            "version": self.version,
            "reference_only": self.reference_only,
            "n": self.n,
        }
        if self.split:
            out["split"] = self.split
        for name, value in self.metrics.items():
            out[name] = value.as_dict()["value"]
        out["metrics"] = {name: value.as_dict() for name, value in self.metrics.items()}
        out["counts"] = self.counts
        if self.per_fitzpatrick:
            out["per_fitzpatrick"] = {
                str(k): {"n": n, self.breakdown_metric: v.as_dict()}
                for k, (n, v) in sorted(self.per_fitzpatrick.items())
            }
        return out

    def flat_metrics(self) -> dict[str, float]:
        """For the manifest: value, _low, _high, and n_ per Fitzpatrick type."""
        out: dict[str, float] = {}
        for name, value in self.metrics.items():
            if np.isfinite(value.value):
                out[name] = round(value.value, 4)
                if np.isfinite(value.low) and np.isfinite(value.high):
                    out[f"{name}_low"], out[f"{name}_high"] = round(value.low, 4), round(value.high, 4)
                if name in self.sizes:
                    out[f"n_{name}"] = self.sizes[name]
        for fitz, (n, value) in sorted(self.per_fitzpatrick.items()):
            key = f"{self.breakdown_metric}_fitzpatrick_{fitz}"
            if np.isfinite(value.value):
                out[key] = round(value.value, 4)
                out[f"n_{key}"] = n
                if np.isfinite(value.low) and np.isfinite(value.high):
                    out[f"{key}_low"], out[f"{key}_high"] = round(value.low, 4), round(value.high, 4)
        return out

    def format_table(self) -> str:
        lines = [f"{'metric':<34} value [95% CI]"]
        lines += [
            f"{name:<34} {value.format(3)}" + (f"  n={self.sizes[name]}" if name in self.sizes else "")
            for name, value in self.metrics.items()
        ]
        if self.per_fitzpatrick:
            lines.append(f"per Fitzpatrick type ({self.breakdown_metric}):")
            lines += [
                f"  type {k}: n={n:<5} {v.format(3)}" for k, (n, v) in sorted(self.per_fitzpatrick.items())
            ]
        if self.counts:
            lines.append("counts: " + ", ".join(f"{k} {v}" for k, v in self.counts.items()))
        return "\n".join(lines)


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


def _photos(rows: Sequence[SkinRow]) -> list[DecodedPhoto]:
    limits = IntakeLimits()
    out = []
    for row in rows:
        try:
            data = row.image.read_bytes()
        except OSError as exc:
            raise DatasetError(f"line {row.line}: cannot read {row.image.name}: {exc.strerror}") from None
        out.append(decode_photo(data, limits=limits))
    return out


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
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start : start + _CHUNK]
            for row, (label, _) in zip(chunk, classifier(_photos(chunk)), strict=True):
                truth.append(keys.index(row.body_part or ""))
                predicted.append(keys.index(key_of(label)))
            advance(len(chunk))
        y, p = np.asarray(truth, float), np.asarray(predicted, float)
        metrics = bootstrap({"detection_rate": accuracy}, y, p, groups=groups, n_resamples=n_resamples)
        for index, key in enumerate(keys):
            positives = y == index
            if positives.any():
                metrics[f"recall_{key}"] = bootstrap(
                    {"r": _share},
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
            per_fitzpatrick=_by_fitzpatrick(rows, correct, n_resamples),
            breakdown_metric="detection_rate",
        )
    if task == "lesion":
        extractor = LesionExtractor(loaded, execution, views=options.view_count)
        return _evaluate_lesions(rows, extractor, groups, n_resamples, advance, common)
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
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start : start + _CHUNK]
        for outcome in pipeline.run(_photos(chunk)):
            result = outcome.result
            results.append(None if isinstance(result, AnalysisNotPerformed) else result)  # type: ignore[arg-type]
        advance(len(chunk))
    if task == "tis":
        return _evaluate_tis(rows, results, groups, n_resamples, common)  # type: ignore[arg-type]
    return _evaluate_classes(task, rows, results, manifest.labels, groups, n_resamples, common)  # type: ignore[arg-type]


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
        "scored it; bootstrap 95 % CIs resample patients",
        real_lesions=True,
        sizes=sizes,
    )


def _evaluate_lesions(
    rows: Sequence[SkinRow],
    extractor: LesionExtractor,
    groups: Sequence[str],
    n_resamples: int,
    advance: Callable[[int], None],
    common: Mapping[str, Any],
) -> SkinEvaluation:
    photo_hit, photo_groups, clean_ok, clean_groups, iou, lesion_hit, lesion_groups = (
        [],
        [],
        [],
        [],
        [],
        [],
        [],
    )
    kind_ok: list[float] = []
    per_row: list[float | None] = []
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start : start + _CHUNK]
        photos = _photos(chunk)
        for row, photo, probabilities in zip(
            chunk, photos, extractor.probabilities(photos).numpy(), strict=True
        ):
            # What the pipeline would cut out: the kept regions, each with its class.
            regions = lesion_regions(probabilities)
            predicted = np.zeros(probabilities.shape[1:], dtype=np.int64)
            for region in regions:
                predicted[region.mask] = 1 if region.kind == "rash" else 2
            if row.mask is None:  # rows_for("lesion") keeps only rows with a mask
                continue
            size = predicted.shape[0]
            truth_full = read_mask(row.mask, photo.original_size)
            truth = np.asarray(Image.fromarray(truth_full).resize((size, size), Image.Resampling.NEAREST))
            labels, count = components(truth > 0)
            areas = np.bincount(labels.ravel())[1:] if count else np.zeros(0)
            real = [i + 1 for i, area in enumerate(areas) if area / (size * size) >= MIN_LESION_SHARE]
            found = predicted > 0
            if not real:
                clean_ok.append(float(not regions))
                clean_groups.append(row.patient_id)
                per_row.append(None)
                continue
            hits = []
            for component in real:
                pixels = labels == component
                hit = float((found & pixels).sum() / pixels.sum() >= 0.25)
                hits.append(hit)
                lesion_hit.append(hit)
                lesion_groups.append(row.patient_id)
                if hit:
                    kind_ok.append(
                        float(
                            np.bincount(predicted[pixels & found], minlength=3).argmax()
                            == np.bincount(truth[pixels], minlength=3).argmax()
                        )
                    )
            photo_hit.append(float(max(hits)))
            photo_groups.append(row.patient_id)
            iou.append(float((found & (truth > 0)).sum() / max(1, (found | (truth > 0)).sum())))
            per_row.append(float(max(hits)))
        advance(len(chunk))
    metrics: dict[str, MetricValue] = {}
    if photo_hit:
        a = np.asarray(photo_hit)
        metrics["detection_rate"] = bootstrap(
            {"m": _share}, a, a, groups=photo_groups, n_resamples=n_resamples
        )["m"]
        b = np.asarray(lesion_hit)
        metrics["lesion_recall"] = bootstrap(
            {"m": _share}, b, b, groups=lesion_groups, n_resamples=n_resamples
        )["m"]
        c = np.asarray(iou)
        metrics["pixel_iou"] = bootstrap({"m": _share}, c, c, groups=photo_groups, n_resamples=n_resamples)[
            "m"
        ]
    if clean_ok:
        d = np.asarray(clean_ok)
        metrics["no_lesion_specificity"] = bootstrap(
            {"m": _share}, d, d, groups=clean_groups, n_resamples=n_resamples
        )["m"]
    if kind_ok:
        e = np.asarray(kind_ok)
        metrics["rash_vs_tumour_accuracy"] = bootstrap({"m": _share}, e, e, n_resamples=n_resamples)["m"]
    scored = [(row, value) for row, value in zip(rows, per_row, strict=True) if value is not None]
    return SkinEvaluation(
        n=len(rows),
        metrics=metrics,
        **common,
        per_fitzpatrick=_by_fitzpatrick(
            [r for r, _ in scored], np.asarray([v for _, v in scored]), n_resamples
        ),
        breakdown_metric="detection_rate",
        counts={
            "photos_with_lesions": len(photo_hit),
            "photos_without": len(clean_ok),
            "lesions": len(lesion_hit),
        },
    )


def _evaluate_tis(
    rows: Sequence[SkinRow],
    results: Sequence[TisScore | None],
    groups: Sequence[str],
    n_resamples: int,
    common: Mapping[str, Any],
) -> SkinEvaluation:
    keep = [i for i, result in enumerate(results) if result is not None]
    if len(keep) < 3:
        raise DatasetError(f"lesions were found in only {len(keep)} photos: too few to score TIS")
    truth = np.array([sum(rows[i].tis or (0, 0, 0)) for i in keep], dtype=float)
    predicted = np.array([score.total for score in results if score is not None], dtype=float)
    kept_groups = [groups[i] for i in keep]
    metrics = bootstrap(
        {"pearson_r": pearson_r, "mae": mae}, truth, predicted, groups=kept_groups, n_resamples=n_resamples
    )
    for index, item in enumerate(("erythema", "oedema_papulation", "excoriation")):
        t = np.array([(rows[i].tis or (0, 0, 0))[index] for i in keep], dtype=float)
        p = np.array([getattr(results[i], item) for i in keep], dtype=float)
        metrics[f"mae_{item}"] = bootstrap({"m": mae}, t, p, groups=kept_groups, n_resamples=n_resamples)["m"]
    bands = [_band(v) for v in truth], [_band(v) for v in predicted]
    metrics["band_accuracy"] = bootstrap(
        {"m": accuracy},
        np.asarray(bands[0], float),
        np.asarray(bands[1], float),
        groups=kept_groups,
        n_resamples=n_resamples,
    )["m"]
    found = np.asarray([float(r is not None) for r in results])
    metrics["lesion_found_rate"] = bootstrap(
        {"m": _share}, found, found, groups=groups, n_resamples=n_resamples
    )["m"]
    errors = np.abs(truth - predicted)
    return SkinEvaluation(
        n=len(rows),
        metrics=metrics,
        **common,
        per_fitzpatrick=_by_fitzpatrick([rows[i] for i in keep], errors, n_resamples),
        breakdown_metric="mae",
        counts={"scored": len(keep), "not_found": len(rows) - len(keep)},
    )


def _band(total: float) -> int:
    return 0 if total <= 2 else 1 if total <= 5 else 2


def _evaluate_classes(
    task: SkinTask,
    rows: Sequence[SkinRow],
    results: Sequence[ConditionProbabilities | None],
    labels: Sequence[Any],
    groups: Sequence[str],
    n_resamples: int,
    common: Mapping[str, Any],
) -> SkinEvaluation:
    keys = [key_of(label) for label in labels]
    codes = [label.code for label in labels]
    column = "condition" if task == "ad-complications" else "diagnosis"
    truth = np.array(
        [keys.index(getattr(row, column)) if getattr(row, column) in keys else -1 for row in rows]
    )
    scores = np.zeros((len(rows), len(keys)))
    for i, result in enumerate(results):
        if result is not None:
            by_code = {c.concept.code: c.probability for c in result.classes}
            scores[i] = [by_code.get(code, 0.0) for code in codes]
    found = np.array([r is not None for r in results])
    ranked = np.argsort(-scores, axis=1, kind="stable")
    metrics: dict[str, MetricValue] = {}
    # A photo whose lesion was not found is a miss for every top-k: end-to-end, as a clinic sees it.
    for k in (1, 3, 5) if task == "diagnosis" else (1,):
        if k > len(keys):
            continue
        hit = (np.any(ranked[:, :k] == truth[:, None], axis=1) & found).astype(float)
        metrics[f"top{k}_accuracy"] = bootstrap(
            {"m": _share}, hit, hit, groups=groups, n_resamples=n_resamples
        )["m"]
    f = found.astype(float)
    metrics["lesion_found_rate"] = bootstrap({"m": _share}, f, f, groups=groups, n_resamples=n_resamples)["m"]
    kept = [i for i in range(len(rows)) if found[i]]
    kept_groups = [groups[i] for i in kept]
    predicted = ranked[:, 0]
    for index, key in enumerate(keys):
        positive = (truth[kept] == index).astype(float)
        if positive.sum() == 0 or positive.sum() == len(kept):
            continue
        call = (predicted[kept] == index).astype(float)
        sens = bootstrap(
            {"m": _share},
            call[positive == 1],
            call[positive == 1],
            n_resamples=n_resamples,
            groups=[kept_groups[j] for j in range(len(kept)) if positive[j]],
        )["m"]
        spec = bootstrap(
            {"m": _share},
            1 - call[positive == 0],
            call[positive == 0],
            n_resamples=n_resamples,
            groups=[kept_groups[j] for j in range(len(kept)) if not positive[j]],
        )["m"]
        metrics[f"sensitivity_{key}"], metrics[f"specificity_{key}"] = sens, spec
        metrics[f"auroc_{key}"] = bootstrap(
            {"m": auroc}, positive, scores[kept, index], groups=kept_groups, n_resamples=n_resamples
        )["m"]
    correct = ((ranked[:, 0] == truth) & found).astype(float)
    return SkinEvaluation(
        n=len(rows),
        metrics=metrics,
        **common,
        per_fitzpatrick=_by_fitzpatrick(rows, correct, n_resamples),
        breakdown_metric="top1_accuracy",
        counts={"scored": int(found.sum()), "not_found": int((~found).sum())},
    )


def _by_fitzpatrick(
    rows: Sequence[SkinRow], values: FloatArray, n_resamples: int
) -> dict[int, tuple[int, MetricValue]]:
    """The metric (a per-photo value averaged) for each Fitzpatrick type, with counts."""
    out: dict[int, tuple[int, MetricValue]] = {}
    types = sorted({row.fitzpatrick for row in rows if row.fitzpatrick is not None})
    for fitz in types:
        index = [i for i, row in enumerate(rows) if row.fitzpatrick == fitz]
        chosen = np.asarray(values, dtype=float)[index]
        groups = [rows[i].patient_id for i in index]
        out[fitz] = (
            len(index),
            bootstrap({"m": _share}, chosen, chosen, groups=groups, n_resamples=n_resamples)["m"],
        )
    return out
