"""Held out: does accumulating a clip's frames beat one frame, and the still photo, on the tumour CV folds?

    .venv/bin/python bench/steadiness_folds.py --folds build/runs/tumour-lite0 \\
        [--data ../shared/data/pad-ufes-20/labels.csv] [--pad-limit N] [--frames 12] [--threads 1] [--json]

``bench/steadiness.py`` compares single frame, accumulated and still on the shipped package, which
was trained on every PAD-UFES-20 photo; this bench uses each cross-validation fold's own network on
the photos that fold held out (patient-grouped, ``photomarker train tumour --cv 5 --checkpoint-dir
DIR``: each ``tumour-cv-<key>-fold<k>.pt`` holds the fold's ``test`` indices, its held-out
``logits`` and its members' weights).

Per fold a package is written to a temporary directory with ``save_model_package``: the shipped
package's manifest (input, temperature, TTA views, operating threshold) with the fold's weights
and no OOD statistics (the fold's Gaussian is not saved; the OOD test only marks abstentions, it
does not change a probability). It is loaded by a ``ModelRegistry`` and run through
``build_analysis_pipeline`` — the worker's code path. Before a fold's clips, the fold package's
TTA probabilities on its first held-out stills must equal those of the fold's saved logits
(within ``CHECK_TOLERANCE``: package weights are float16, the saved logits came from float32), or
the bench stops; the largest difference over every still is reported.

Each held-out cut-out becomes a hand-held clip as in ``bench/steadiness.py`` (its own random
moves, seeded by its row, so a subset sees the same clips): every frame through the fold package
without TTA, accumulated with ``models.accumulate``; the still with the package's 4-rotation TTA.
Pooled over folds, with patient-bootstrap 95 % CIs (``models.evaluation.bootstrap``; differences
paired on the same resampled patients): malignant-vs-benign AUROC of single frames (every frame
its own score), of the accumulated verdict (one per clip) and of the still (one per photo);
balanced accuracy of the most likely of the 6 types; how often a frame's type and malignant /
benign call (at the package's threshold) differ from the accumulated verdict.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch
from numpy.typing import NDArray

from bench.clip_maker import HandHeld, encode_mp4, views
from bench.steadiness import FPS
from models.accumulate import AccumulationPolicy, FrameResult, accumulate
from models.engine.network import ensemble_state_dict
from models.engine.options import EngineOptions
from models.evaluation import MetricValue, auroc, balanced_accuracy, bootstrap
from models.intake import IntakeLimits, decode_photo
from models.manifest import ModelManifest
from models.pipelines import AnalysisPipeline, build_analysis_pipeline, execution_for
from models.registry import PENDING_SHA256, LoadedModel, ModelRegistry, registry_for, save_model_package
from models.results import TumourAssessment
from models.tumour.cross_validation import patient_folds
from models.tumour.dataset import CLASSES, MALIGNANT, TumourSample, load_samples
from models.tumour.package import THRESHOLD_KEY
from models.video import decode_video
from models.video_container import VideoLimits
from plugin.settings import load_settings

REPO: Final = Path(__file__).resolve().parent.parent
DEFAULT_DATA: Final = REPO.parent / "shared" / "data" / "pad-ufes-20" / "labels.csv"
# Largest difference of any type probability between the fold package on a still and the fold's
# saved held-out logits (computed with the float32 weights). Packages store float16 weights, which
# alone move them by a median 0.009 (fold 0, 40 photos, the training code's own path), at most 0.10
# over all 1201 stills of the five folds; another photo's logits differ by a median 0.34.
CHECK_TOLERANCE: Final = 0.15
CHECKED_STILLS: Final = 5
FOLD_FILE: Final = re.compile(r"tumour-cv-(?P<key>[0-9a-f]+)-fold(?P<k>\d+)\.pt")
MALIGNANT_INDEX: Final = [CLASSES.index(c) for c in sorted(MALIGNANT)]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Clip:
    """One held-out photo: its frames' and accumulated verdicts and its still's (6 probabilities each)."""

    row: int
    fold: int
    patient: str
    label: int
    frames: FloatArray  # (F, 6)
    accumulated: FloatArray  # (6,)
    still: FloatArray  # (6,)
    agreement: float
    abstained_for_disagreement: bool


def fold_files(folder: Path, key: str | None) -> dict[int, Path]:
    found: dict[str, dict[int, Path]] = {}
    for path in sorted(folder.glob("tumour-cv-*-fold*.pt")):
        match = FOLD_FILE.fullmatch(path.name)
        if match:
            found.setdefault(match["key"], {})[int(match["k"])] = path
    if key is not None:
        found = {k: v for k, v in found.items() if k == key}
    if len(found) != 1:
        raise SystemExit(f"{folder}: need fold files of exactly one run, found keys {sorted(found)} (--key)")
    return next(iter(found.values()))


def fold_package(
    shipped: LoadedModel,
    members: list[Mapping[str, torch.Tensor]],
    k: int,
    root: Path,
    size: int | None = None,
) -> LoadedModel:
    """The shipped package with fold ``k``'s weights, written and loaded as any package is
    (``size``: the side the CV run trained at, where it is not the shipped package's)."""
    base = shipped.manifest
    name = f"{base.name}-cv-fold{k}"
    manifest = ModelManifest.model_validate(
        {
            **base.model_dump(),
            "name": name,
            "version": f"{base.version}+cv-fold{k}",
            "weights": {**base.weights.model_dump(), "sha256": PENDING_SHA256},
            "architecture": {**base.architecture.model_dump(), "ensemble_size": len(members)},
            "input": {**base.input.model_dump(), "size": size or base.input.size},
            "abstention": {
                **base.abstention.model_dump(),
                "max_ood": None,
                "ood_method": "none",
                "rule": base.abstention.rule + " (cross-validation fold: no OOD test)",
            },
        }
    )
    save_model_package(root / name, manifest, ensemble_state_dict(members), f"# {name}\n\nCV fold {k}.\n")
    return ModelRegistry([root]).load(name)


def probabilities(result: TumourAssessment, codes: list[str]) -> FloatArray:
    by_code = {item.concept.code: item.probability for item in result.types}
    return np.array([by_code[code] for code in codes], dtype=np.float64)


def check_still(still: FloatArray, saved_logits: torch.Tensor, temperature: float) -> float:
    """Largest type-probability difference between the pipeline's still and the fold's saved
    held-out logits (M, K, C) of that photo."""
    expected = torch.softmax(saved_logits.float() / temperature, -1).mean((0, 1)).double().numpy()
    return float(np.abs(still - expected).max())


def run_folds(args: argparse.Namespace) -> tuple[list[Clip], dict[str, Any]]:
    samples = load_samples(args.data)
    files = fold_files(args.folds, args.key)
    splits = patient_folds(samples, args.cv, seed=args.cv_seed)
    chosen = set(range(len(samples)))
    if args.pad_limit is not None and args.pad_limit < len(samples):
        # Evenly spaced rows: the CSV is grouped by patient and diagnosis, its head is not a sample.
        chosen = set(np.linspace(0, len(samples) - 1, args.pad_limit).round().astype(int).tolist())
    registry = registry_for(None)
    shipped = registry.load(registry.for_task("skin-tumour")[0].name)
    threshold = float(shipped.manifest.evaluation.metrics[THRESHOLD_KEY])
    temperature = shipped.manifest.calibration.temperature
    codes = [label.code for label in shipped.manifest.labels]
    base = EngineOptions(device="cpu", heatmaps=False, threads=args.threads)
    execution = execution_for(base)
    policy = AccumulationPolicy(min_frames=3, min_agreement=load_settings().accumulate_min_agreement)
    clips: list[Clip] = []
    checks: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="steadiness-folds-") as root:
        for k, path in sorted(files.items()):
            saved = torch.load(path, map_location="cpu", weights_only=True)
            test = saved["test"].numpy()
            if not np.array_equal(test, splits[k][1]):
                raise SystemExit(
                    f"{path.name}: its held-out rows are not fold {k} of {args.data} — other data?"
                )
            if "members" not in saved:
                raise SystemExit(f"{path.name}: held-out outputs only, no networks: retrain the fold")
            loaded = fold_package(shipped, saved["members"], k, Path(root))
            per_frame = build_analysis_pipeline("skin-tumour", loaded, execution, replace(base, tta=False))
            still_tta = build_analysis_pipeline("skin-tumour", loaded, execution, base)
            differences: list[float] = []
            for position, row in enumerate(test.tolist()):
                if row not in chosen:
                    continue
                clip = one_clip(samples[row], row, k, per_frame, still_tta, codes, policy, args)
                if clip is None:
                    continue
                differences.append(check_still(clip.still, saved["logits"][:, :, position], temperature))
                if len(differences) <= CHECKED_STILLS and differences[-1] > CHECK_TOLERANCE:
                    raise SystemExit(
                        f"fold {k}: the fold package's still probabilities differ from the fold's saved "
                        f"held-out logits by {differences[-1]:.3f} (row {row}): not the fold's model"
                    )
                clips.append(clip)
                if args.progress and len(clips) % 25 == 0:
                    print(f"  {len(clips)} clips ({time.perf_counter() - args.began:.0f} s)", file=sys.stderr)
            checks[k] = {
                "held_out": len(test),
                "clips": len(differences),
                "max_still_difference_vs_saved_logits": round(max(differences, default=0.0), 4),
                "stills_over_tolerance": sum(d > CHECK_TOLERANCE for d in differences),
            }
    context = {"operating_threshold": threshold, "temperature": temperature, "folds": checks}
    return clips, context


def one_clip(
    sample: TumourSample,
    row: int,
    k: int,
    per_frame: AnalysisPipeline,
    still_tta: AnalysisPipeline,
    codes: list[str],
    policy: AccumulationPolicy,
    args: argparse.Namespace,
) -> Clip | None:
    still = decode_photo(sample.path.read_bytes(), limits=IntakeLimits())
    side = max(64, min(still.pixels.size))
    rng = np.random.default_rng([args.seed, row])  # the same clip for this photo in any subset
    clip = encode_mp4(views(still.pixels, args.frames, rng, HandHeld(), (side, side)), FPS)
    decoded = decode_video(clip, limits=VideoLimits(sample_fps=FPS, max_samples=args.frames))
    outcomes = per_frame.run([frame.photo for frame in decoded.frames])
    results = [o.result for o in outcomes if isinstance(o.result, TumourAssessment)]
    if not results:
        return None
    (item,) = accumulate(
        [FrameResult(i, 1.0, ((per_frame.model, r),)) for i, r in enumerate(results)], policy
    )
    (photo,) = still_tta.run([still])
    if not isinstance(item.result, TumourAssessment) or not isinstance(photo.result, TumourAssessment):
        return None
    abstention = item.result.abstention
    return Clip(
        row=row,
        fold=k,
        patient=sample.patient_id,
        label=sample.label,
        frames=np.stack([probabilities(r, codes) for r in results]),
        accumulated=probabilities(item.result, codes),
        still=probabilities(photo.result, codes),
        agreement=item.steadiness.agreement,
        abstained_for_disagreement=abstention is not None and "disagree" in abstention.reason,
    )


def figures(clips: list[Clip], threshold: float, resamples: int) -> dict[str, Any]:
    """Pooled figures; every metric is a function of resampled clip indices, so one patient
    bootstrap draws the same patients for frames, accumulated verdicts and stills."""
    label = np.array([c.label for c in clips])
    malignant = np.isin(label, MALIGNANT_INDEX).astype(np.float64)
    counts = np.array([len(c.frames) for c in clips])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    frames = np.concatenate([c.frames for c in clips])
    frame_clip = np.repeat(np.arange(len(clips)), counts)
    accumulated = np.stack([c.accumulated for c in clips])
    still = np.stack([c.still for c in clips])

    def score(p: FloatArray) -> FloatArray:
        return np.asarray(p[:, MALIGNANT_INDEX].sum(1))

    frame_score, accumulated_score, still_score = score(frames), score(accumulated), score(still)
    frame_top, accumulated_top, still_top = frames.argmax(1), accumulated.argmax(1), still.argmax(1)
    type_differs = (frame_top != accumulated_top[frame_clip]).astype(np.float64)
    frame_call, accumulated_call = frame_score >= threshold, accumulated_score >= threshold
    call_differs = (frame_call != accumulated_call[frame_clip]).astype(np.float64)

    def frame_rows(index: NDArray[np.int_]) -> NDArray[np.int_]:
        repeated = np.repeat(index, counts[index])
        offsets = np.arange(len(repeated)) - np.repeat(
            np.cumsum(counts[index]) - counts[index], counts[index]
        )
        return np.asarray(starts[repeated] + offsets)

    def frame_auroc(index: NDArray[np.int_]) -> float:
        rows = frame_rows(index)
        return float(auroc(malignant[frame_clip[rows]], frame_score[rows]))

    def frame_balanced(index: NDArray[np.int_]) -> float:
        rows = frame_rows(index)
        return balanced_accuracy(label[frame_clip[rows]], frame_top[rows])

    per_clip: dict[str, Callable[[NDArray[np.int_]], float]] = {
        "auroc_single_frame": frame_auroc,
        "auroc_accumulated": lambda i: float(auroc(malignant[i], accumulated_score[i])),
        "auroc_still_tta": lambda i: float(auroc(malignant[i], still_score[i])),
        "type_balanced_accuracy_single_frame": frame_balanced,
        "type_balanced_accuracy_accumulated": lambda i: balanced_accuracy(label[i], accumulated_top[i]),
        "type_balanced_accuracy_still_tta": lambda i: balanced_accuracy(label[i], still_top[i]),
        "frame_type_differs_from_accumulated": lambda i: float(type_differs[frame_rows(i)].mean()),
        "frame_call_differs_from_accumulated": lambda i: float(call_differs[frame_rows(i)].mean()),
    }
    paired = {
        "auroc_accumulated_minus_single_frame": ("auroc_accumulated", "auroc_single_frame"),
        "auroc_accumulated_minus_still_tta": ("auroc_accumulated", "auroc_still_tta"),
        "type_balanced_accuracy_accumulated_minus_single_frame": (
            "type_balanced_accuracy_accumulated",
            "type_balanced_accuracy_single_frame",
        ),
        "type_balanced_accuracy_accumulated_minus_still_tta": (
            "type_balanced_accuracy_accumulated",
            "type_balanced_accuracy_still_tta",
        ),
    }
    metrics: dict[str, Callable[[FloatArray, FloatArray], Any]] = {
        name: _on_index(fn) for name, fn in per_clip.items()
    }
    for name, (a, b) in paired.items():
        metrics[name] = _on_index(_difference(per_clip[a], per_clip[b]))
    index = np.arange(len(clips), dtype=np.float64)
    values = bootstrap(metrics, index, index, groups=[c.patient for c in clips], n_resamples=resamples)
    call = {
        "single_frame": float(np.mean((frame_score >= threshold) == malignant[frame_clip].astype(bool))),
        "accumulated": float(np.mean((accumulated_score >= threshold) == malignant.astype(bool))),
        "still_tta": float(np.mean((still_score >= threshold) == malignant.astype(bool))),
    }
    per_fold = {}
    for k in sorted({c.fold for c in clips}):
        rows = np.array([c.fold == k for c in clips])
        fr = np.isin(frame_clip, np.flatnonzero(rows))
        per_fold[k] = {
            "clips": int(rows.sum()),
            "auroc_single_frame": round(float(auroc(malignant[frame_clip[fr]], frame_score[fr])), 4),
            "auroc_accumulated": round(float(auroc(malignant[rows], accumulated_score[rows])), 4),
            "auroc_still_tta": round(float(auroc(malignant[rows], still_score[rows])), 4),
        }
    return {
        "clips": len(clips),
        "patients": len({c.patient for c in clips}),
        "malignant_clips": int(malignant.sum()),
        "frames": int(counts.sum()),
        "bootstrap_resamples": resamples,
        **values,
        "malignant_call_accuracy_at_threshold": {k: round(v, 4) for k, v in call.items()},
        "abstained_for_disagreement": sum(c.abstained_for_disagreement for c in clips),
        "median_agreement": round(float(np.median([c.agreement for c in clips])), 3),
        "per_fold": per_fold,
    }


def _difference(
    a: Callable[[NDArray[np.int_]], float], b: Callable[[NDArray[np.int_]], float]
) -> Callable[[NDArray[np.int_]], float]:
    return lambda index: a(index) - b(index)


def _on_index(fn: Callable[[NDArray[np.int_]], float]) -> Callable[[FloatArray, FloatArray], Any]:
    """A bootstrap metric whose ``y_true`` is the (resampled) clip indices."""
    return lambda index, _: np.asarray(fn(index.astype(np.int64)))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--folds", type=Path, required=True, help="the CV run's --checkpoint-dir")
    parser.add_argument("--key", default=None, help="which run's fold files, when DIR holds several")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the labels.csv the CV was run on")
    parser.add_argument("--cv", type=int, default=5, help="folds of the CV run")
    parser.add_argument("--cv-seed", type=int, default=0, help="the CV run's --seed")
    parser.add_argument("--pad-limit", type=int, default=None, help="N rows spread evenly over labels.csv")
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: one per core)")
    parser.add_argument("--resamples", type=int, default=1000, help="patient-bootstrap resamples")
    parser.add_argument("--progress", action="store_true", help="a line on stderr every 25 clips")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.began = time.perf_counter()
    clips, context = run_folds(args)
    if not clips:
        raise SystemExit("no held-out clips")
    result = {
        **context,
        **figures(clips, context["operating_threshold"], args.resamples),
        "seconds": round(time.perf_counter() - args.began),
    }
    if args.json:
        print(json.dumps(result, indent=2, default=MetricValue.as_dict))
        return
    for key, value in result.items():
        shown = value.format(3) if isinstance(value, MetricValue) else value
        print(f"  {key:<56} {shown}")


if __name__ == "__main__":
    main()
