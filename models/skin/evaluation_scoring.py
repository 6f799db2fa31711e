"""The figures of the skin evaluations (:mod:`models.skin.evaluate`), computed from each photo's result.

Lesion extraction against the labelled masks (per photo, per lesion and per pixel, healthy photos
for specificity, rash against tumour); TIS (Pearson r and MAE of the total and of each item,
severity band); the condition and diagnosis classes (top-k, and per class sensitivity,
specificity and AUROC); and the per-Fitzpatrick breakdown. Each comes with a bootstrap 95 % CI
that resamples patients. The photos are read in chunks of :data:`CHUNK`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from models.errors import DatasetError
from models.evaluation import MetricValue, accuracy, auroc, bootstrap, mae, pearson_r
from models.intake import DecodedPhoto, IntakeLimits, decode_photo
from models.results import ConditionProbabilities, TisScore
from models.skin.dataset import SkinRow, SkinTask, components, read_mask
from models.skin.evaluation_result import SkinEvaluation
from models.skin.labels import key_of
from models.skin.lesions import MIN_LESION_SHARE, LesionExtractor, lesion_regions

CHUNK = 32
FloatArray = NDArray[np.float64]


def share(values: FloatArray, _: FloatArray) -> FloatArray:
    """The mean of a per-photo value (a hit, an IoU, an error) as a bootstrap metric; the second is unused."""
    return np.asarray(np.mean(values, axis=-1))


def load_photos(rows: Sequence[SkinRow]) -> list[DecodedPhoto]:
    """The rows' photos, decoded as an upload is, under the default intake limits."""
    limits = IntakeLimits()
    out = []
    for row in rows:
        try:
            data = row.image.read_bytes()
        except OSError as exc:
            raise DatasetError(f"line {row.line}: cannot read {row.image.name}: {exc.strerror}") from None
        out.append(decode_photo(data, limits=limits))
    return out


def evaluate_lesions(
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
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        photos = load_photos(chunk)
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
            {"m": share}, a, a, groups=photo_groups, n_resamples=n_resamples
        )["m"]
        b = np.asarray(lesion_hit)
        metrics["lesion_recall"] = bootstrap(
            {"m": share}, b, b, groups=lesion_groups, n_resamples=n_resamples
        )["m"]
        c = np.asarray(iou)
        metrics["pixel_iou"] = bootstrap({"m": share}, c, c, groups=photo_groups, n_resamples=n_resamples)[
            "m"
        ]
    if clean_ok:
        d = np.asarray(clean_ok)
        metrics["no_lesion_specificity"] = bootstrap(
            {"m": share}, d, d, groups=clean_groups, n_resamples=n_resamples
        )["m"]
    if kind_ok:
        e = np.asarray(kind_ok)
        metrics["rash_vs_tumour_accuracy"] = bootstrap({"m": share}, e, e, n_resamples=n_resamples)["m"]
    scored = [(row, value) for row, value in zip(rows, per_row, strict=True) if value is not None]
    return SkinEvaluation(
        n=len(rows),
        metrics=metrics,
        **common,
        per_fitzpatrick=by_fitzpatrick(
            [r for r, _ in scored], np.asarray([v for _, v in scored]), n_resamples
        ),
        breakdown_metric="detection_rate",
        counts={
            "photos_with_lesions": len(photo_hit),
            "photos_without": len(clean_ok),
            "lesions": len(lesion_hit),
        },
    )


def evaluate_tis(
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
        {"m": share}, found, found, groups=groups, n_resamples=n_resamples
    )["m"]
    errors = np.abs(truth - predicted)
    return SkinEvaluation(
        n=len(rows),
        metrics=metrics,
        **common,
        per_fitzpatrick=by_fitzpatrick([rows[i] for i in keep], errors, n_resamples),
        breakdown_metric="mae",
        counts={"scored": len(keep), "not_found": len(rows) - len(keep)},
    )


def _band(total: float) -> int:
    return 0 if total <= 2 else 1 if total <= 5 else 2


def evaluate_classes(
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
            {"m": share}, hit, hit, groups=groups, n_resamples=n_resamples
        )["m"]
    f = found.astype(float)
    metrics["lesion_found_rate"] = bootstrap({"m": share}, f, f, groups=groups, n_resamples=n_resamples)["m"]
    kept = [i for i in range(len(rows)) if found[i]]
    kept_groups = [groups[i] for i in kept]
    predicted = ranked[:, 0]
    for index, key in enumerate(keys):
        positive = (truth[kept] == index).astype(float)
        if positive.sum() == 0 or positive.sum() == len(kept):
            continue
        call = (predicted[kept] == index).astype(float)
        sens = bootstrap(
            {"m": share},
            call[positive == 1],
            call[positive == 1],
            n_resamples=n_resamples,
            groups=[kept_groups[j] for j in range(len(kept)) if positive[j]],
        )["m"]
        spec = bootstrap(
            {"m": share},
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
        per_fitzpatrick=by_fitzpatrick(rows, correct, n_resamples),
        breakdown_metric="top1_accuracy",
        counts={"scored": int(found.sum()), "not_found": int((~found).sum())},
    )


def by_fitzpatrick(
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
            bootstrap({"m": share}, chosen, chosen, groups=groups, n_resamples=n_resamples)["m"],
        )
    return out
