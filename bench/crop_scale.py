"""Held out: how large should a lesion be in the tumour classifier's crop? (each CV fold's own network)

    .venv/bin/python bench/crop_scale.py --folds build/runs/tumour-balanced --size 160 \\
        [--data ../shared/data/pad-ufes-20/labels.csv] [--margins 0.05 0.25 0.65] [--threads 1] [--json]

The tumour classifier was trained on PAD-UFES-20 photos as they come: the whole 512-px frame, the
lesion on black in its middle, its longest side a median 0.44 of the frame's side (IQR 0.32–0.59).
The skin pipeline serves it a crop made by ``models.skin.lesions``: a cut-out in its own frame
(``cut_out_lesion``: "served"), a growth found in a whole photo in a square with ``GROWTH_MARGIN``
of the lesion's side on each side. Until 2026-12 a cut-out was cropped with a 5 % margin and a
growth with 0.25, which magnified the lesion beyond anything the network saw.

Each fold's network (``photomarker train tumour --cv 5 --checkpoint-dir DIR``, see
``bench/steadiness_folds.py`` for how a fold becomes a package) scores the photos it held out:
"as trained" (the whole JPEG: each fold's first photos must reproduce its saved held-out
logits within ``CHECK_TOLERANCE``, float16 weights against float32; the largest difference and
the photos over it are reported), "served" (what the pipeline makes of it: ``as_cut_out`` →
``cut_out_lesion``) and, for each margin, a square around the lesion with that margin. Pooled
over folds, patient-bootstrap 95 % CIs: malignant-vs-benign AUROC, six-class balanced accuracy,
and each one's difference from "as trained" on the same resampled patients.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch
from numpy.typing import NDArray

from bench.steadiness_folds import (
    CHECK_TOLERANCE,
    CHECKED_STILLS,
    DEFAULT_DATA,
    MALIGNANT_INDEX,
    check_still,
    fold_files,
    fold_package,
    probabilities,
)
from models.cut_out import as_cut_out
from models.engine.options import EngineOptions
from models.evaluation import MetricValue, auroc, balanced_accuracy, bootstrap
from models.intake import DecodedPhoto, IntakeLimits, decode_photo
from models.pipelines import build_analysis_pipeline, execution_for
from models.registry import registry_for
from models.results import TumourAssessment
from models.skin.dataset import square_box
from models.skin.lesions import CROP_MARGIN, GROWTH_MARGIN, cut_out_lesion
from models.tumour.cross_validation import patient_folds
from models.tumour.dataset import load_samples

AS_TRAINED: Final = "as trained"
SERVED: Final = "served"
FloatArray = NDArray[np.float64]


def conditions(photo: DecodedPhoto, margins: list[float]) -> dict[str, tuple[DecodedPhoto, float]] | None:
    """Each way of showing the lesion, with the lesion's longest side as a share of the input's."""
    cut = as_cut_out(photo)
    if cut.alpha is None or cut.alpha.getbbox() is None:
        return None  # nearly all black: not read as a cut-out
    left, top, right, bottom = cut.alpha.getbbox()
    extent = max(right - left, bottom - top)
    shown = {AS_TRAINED: (photo, extent / max(photo.pixels.size))}
    served = cut_out_lesion(cut, cut.alpha).crop
    shown[SERVED] = (served, extent / max(served.pixels.size))
    for margin in margins:
        box = square_box((left, top, right, bottom), cut.pixels.size, margin)
        crop = replace(cut, pixels=cut.pixels.crop(box), alpha=cut.alpha.crop(box))
        shown[f"margin {margin:g}"] = (crop, extent / max(crop.pixels.size))
    return shown


def run(
    args: argparse.Namespace,
) -> tuple[dict[str, list[FloatArray]], dict[str, list[float]], list[int], list[str], dict[str, Any]]:
    samples = load_samples(args.data)
    files = fold_files(args.folds, args.key)
    splits = patient_folds(samples, args.cv, seed=args.cv_seed)
    registry = registry_for(None)
    shipped = registry.load(registry.for_task("skin-tumour")[0].name)
    temperature = shipped.manifest.calibration.temperature
    codes = [label.code for label in shipped.manifest.labels]
    options = EngineOptions(device="cpu", heatmaps=False, threads=args.threads)
    execution = execution_for(options)
    scores: dict[str, list[FloatArray]] = {}
    shares: dict[str, list[float]] = {}
    labels: list[int] = []
    patients: list[str] = []
    largest = 0.0
    skipped = over = 0
    with tempfile.TemporaryDirectory(prefix="crop-scale-") as root:
        for k, path in sorted(files.items()):
            saved = torch.load(path, map_location="cpu", weights_only=True)
            test = saved["test"].numpy()
            if not np.array_equal(test, splits[k][1]):
                raise SystemExit(f"{path.name}: its held-out rows are not fold {k} of {args.data}")
            if "members" not in saved:
                raise SystemExit(f"{path.name}: held-out outputs only, no networks: retrain the fold")
            loaded = fold_package(shipped, saved["members"], k, Path(root), size=args.size)
            pipeline = build_analysis_pipeline("skin-tumour", loaded, execution, options)
            checked = 0  # its first CHECKED_STILLS photos must match its saved logits: the fold's model
            for position, row in enumerate(test.tolist()):
                sample = samples[row]
                shown = conditions(
                    decode_photo(sample.path.read_bytes(), limits=IntakeLimits()), args.margins
                )
                if shown is None:
                    skipped += 1
                    continue
                outcomes = pipeline.run([photo for photo, _ in shown.values()])
                results = [o.result for o in outcomes]
                if not all(isinstance(r, TumourAssessment) for r in results):
                    raise SystemExit(f"row {row}: no tumour assessment")
                for name, (_, share), result in zip(shown, shown.values(), results, strict=True):
                    assert isinstance(result, TumourAssessment)
                    scores.setdefault(name, []).append(probabilities(result, codes))
                    shares.setdefault(name, []).append(share)
                difference = check_still(scores[AS_TRAINED][-1], saved["logits"][:, :, position], temperature)
                largest = max(largest, difference)
                over += difference > CHECK_TOLERANCE
                checked += 1
                if checked <= CHECKED_STILLS and difference > CHECK_TOLERANCE:
                    raise SystemExit(
                        f"fold {k}, row {row}: differs from the fold's saved logits by {difference:.3f}"
                    )
                labels.append(sample.label)
                patients.append(sample.patient_id)
            if args.progress:
                print(
                    f"  fold {k}: {len(labels)} photos ({time.perf_counter() - args.began:.0f} s)",
                    file=sys.stderr,
                )
    context = {
        "not_cut_outs": skipped,
        "max_difference_vs_saved_logits": round(largest, 4),
        "photos_over_tolerance": over,
    }
    return scores, shares, labels, patients, context


def figures(
    scores: dict[str, list[FloatArray]],
    shares: dict[str, list[float]],
    labels: list[int],
    patients: list[str],
    resamples: int,
) -> dict[str, Any]:
    label = np.asarray(labels)
    malignant = np.isin(label, MALIGNANT_INDEX).astype(np.float64)
    stacked = {name: np.stack(rows) for name, rows in scores.items()}

    def auc(name: str, index: NDArray[np.int_]) -> float:
        return auroc(malignant[index], stacked[name][index][:, MALIGNANT_INDEX].sum(1))

    def balanced(name: str, index: NDArray[np.int_]) -> float:
        return balanced_accuracy(label[index], stacked[name][index].argmax(1))

    metrics: dict[str, Any] = {}
    for name in stacked:
        metrics[f"{name}: malignant AUROC"] = lambda i, n=name: auc(n, i)
        metrics[f"{name}: balanced accuracy"] = lambda i, n=name: balanced(n, i)
        if name != AS_TRAINED:
            metrics[f"{name}: AUROC − as trained"] = lambda i, n=name: auc(n, i) - auc(AS_TRAINED, i)
            metrics[f"{name}: balanced accuracy − as trained"] = lambda i, n=name: (
                balanced(n, i) - balanced(AS_TRAINED, i)
            )
    index = np.arange(len(label), dtype=np.float64)
    wrapped = {key: (lambda y, _, fn=fn: np.asarray(fn(y.astype(np.int64)))) for key, fn in metrics.items()}
    values = bootstrap(wrapped, index, index, groups=patients, n_resamples=resamples)
    out: dict[str, Any] = {"photos": len(label), "patients": len(set(patients))}
    for name in stacked:
        out[f"{name}: lesion / input side, median"] = round(float(np.median(shares[name])), 3)
    out.update(values)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--folds", type=Path, required=True, help="the CV run's --checkpoint-dir")
    parser.add_argument("--key", default=None, help="which run's fold files, when DIR holds several")
    parser.add_argument("--size", type=int, default=None, help="the side the CV run trained at")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the labels.csv the CV was run on")
    parser.add_argument("--cv", type=int, default=5)
    parser.add_argument("--cv-seed", type=int, default=0)
    parser.add_argument(
        "--margins", type=float, nargs="+", default=sorted({0.05, CROP_MARGIN, GROWTH_MARGIN})
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: one per core)")
    parser.add_argument("--resamples", type=int, default=1000, help="patient-bootstrap resamples")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.began = time.perf_counter()
    scores, shares, labels, patients, context = run(args)
    if not labels:
        raise SystemExit("no held-out photos")
    result = {**context, **figures(scores, shares, labels, patients, args.resamples)}
    result["seconds"] = round(time.perf_counter() - args.began)
    if args.json:
        print(json.dumps(result, indent=2, default=MetricValue.as_dict))
        return
    for key, value in result.items():
        shown = value.format(3) if isinstance(value, MetricValue) else value
        print(f"  {key:<52} {shown}")


if __name__ == "__main__":
    main()
