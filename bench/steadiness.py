"""How often one frame's verdict differs from the accumulated one, on generated and on real clips.

    .venv/bin/python bench/steadiness.py [--generated 16] [--pad DIR] [--pad-limit N] [--frames 12] [--json]

(about 1.6 s per PAD clip on 2 shared cores: the full set of 1200 clips takes about half an hour)

Each clip films one still hand-held (``bench/clip_maker.py``: shift ≤ 4 %, turn ≤ 15°, zoom ± 10 %,
light ± 15 %, blur ≤ 1.2 px), 12 frames at 6 fps, encoded as H.264 MP4 and decoded by
``models.video`` — so every change of verdict between frames comes from the analysis.

- **Generated** clips: skin scenes of ``models/skin/synthetic.py`` through the worker's own path
  (``workers.footage.analyse_video``: decode, gate, skin pipeline, accumulation). Per analysis, the
  share of a clip's frames whose own verdict differs from the accumulated one (1 − agreement).
- **PAD-UFES-20** lesion cut-outs (Pacheco et al., Data in Brief 32:106221, 2020; Mendeley Data
  DOI 10.17632/zr7vgbcyr2.1; CC BY 4.0): every frame through the shipped tumour package as the
  skin pipeline feeds it a lesion crop (no per-frame TTA, as for video), accumulated. Printed:
  how often a frame's most likely type, and its malignant / benign call at the package's operating
  threshold, differ from the clip's accumulated verdict; and the accuracy of a single frame, of the
  accumulated verdict, and of the still cut-out with the package's own 4-rotation TTA. The shipped
  package was trained on all of PAD-UFES-20, these images included: the accuracies compare the
  three ways of judging, they are not held-out performance.
- **Calibration** of ``PHOTOMARKER_ACCUMULATE_MIN_AGREEMENT``: the 5th percentile of agreement over
  the generated clips (one unchanging lesion each, every analysis pooled), rounded down to 0.05 —
  a verdict steadier than that is as steady as 19 in 20 clips of a lesion that did not change.
  What that limit does on the PAD clips (abstentions; accuracy kept vs abstained) is printed too.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from PIL import Image

from bench.clip_maker import HandHeld, encode_mp4, views
from models.accumulate import AccumulationPolicy, FrameResult, accumulate
from models.engine.options import EngineOptions
from models.intake import IntakeLimits, decode_photo
from models.pipelines import build_analysis_pipeline, execution_for
from models.registry import registry_for
from models.results import TumourAssessment
from models.skin.synthetic import generate_scene
from models.tumour.dataset import CLASSES, MALIGNANT
from models.tumour.package import THRESHOLD_KEY
from models.video import decode_video
from models.video_container import VideoLimits
from plugin.settings import load_settings
from workers.analysis import PhotoRequest
from workers.footage import analyse_video

REPO = Path(__file__).resolve().parent.parent
FPS = 6


def generated(count: int, frames: int, seed: int) -> dict[str, Any]:
    settings = load_settings()
    rng = np.random.default_rng(seed)
    flips: dict[str, list[float]] = {}
    agreements: list[float] = []
    for _ in range(count):
        scene = generate_scene(rng, size=352, condition="random", blur=0)
        clip = encode_mp4(views(Image.fromarray(scene.image), frames, rng, HandHeld(), (320, 320)), FPS)
        analysed = analyse_video(PhotoRequest(clip, requested="skin"), settings)
        for item in analysed.report.steadiness:
            flips.setdefault(item.analysis, []).append(1.0 - item.agreement)
            agreements.append(item.agreement)
    limit = math.floor(float(np.percentile(agreements, 5)) * 20) / 20 if agreements else None
    return {
        "clips": count,
        "frames_per_clip": frames,
        "frame_differs_from_accumulated": {
            name: {"clips": len(values), "mean": round(statistics.mean(values), 3)}
            for name, values in sorted(flips.items())
        },
        "agreement_5th_percentile": round(float(np.percentile(agreements, 5)), 3) if agreements else None,
        "calibrated_min_agreement": limit,
    }


def pad(folder: Path, limit: int | None, frames: int, seed: int, min_agreement: float) -> dict[str, Any]:
    with (folder / "labels.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if limit is not None and limit < len(rows):
        # Evenly spaced rows: the CSV is grouped by patient and diagnosis, its head is not a sample.
        rows = [rows[i] for i in np.linspace(0, len(rows) - 1, limit).round().astype(int)]
    registry = registry_for(None)
    loaded = registry.load(registry.for_task("skin-tumour")[0].name)
    threshold = float(loaded.manifest.evaluation.metrics[THRESHOLD_KEY])
    base = EngineOptions(device="cpu", heatmaps=False)
    execution = execution_for(base)
    per_frame = build_analysis_pipeline("skin-tumour", loaded, execution, replace(base, tta=False))
    still_tta = build_analysis_pipeline("skin-tumour", loaded, execution, base)
    codes = [label.code for label in loaded.manifest.labels]
    rng = np.random.default_rng(seed)
    policy = AccumulationPolicy(min_frames=3, min_agreement=min_agreement)
    tally = {key: 0 for key in ("frames", "type_flips", "call_flips", "frame_type_ok", "frame_call_ok")}
    clips: list[dict[str, Any]] = []
    for row in rows:
        data = (folder / row["file"]).read_bytes()
        still = decode_photo(data, limits=IntakeLimits())
        side = max(64, min(still.pixels.size))
        clip = encode_mp4(views(still.pixels, frames, rng, HandHeld(), (side, side)), FPS)
        decoded = decode_video(clip, limits=VideoLimits(sample_fps=FPS, max_samples=frames))
        outcomes = per_frame.run([frame.photo for frame in decoded.frames])
        results = [o.result for o in outcomes if isinstance(o.result, TumourAssessment)]
        (item,) = accumulate(
            [FrameResult(i, 1.0, ((per_frame.model, r),)) for i, r in enumerate(results)], policy
        )
        combined = item.result
        (photo,) = still_tta.run([still])
        if not isinstance(combined, TumourAssessment) or not isinstance(photo.result, TumourAssessment):
            continue
        truth_type = codes[CLASSES.index(row["diagnostic"].strip().upper())]
        truth_call = row["diagnostic"].strip().upper() in MALIGNANT
        accumulated_call = combined.malignancy_probability >= threshold
        for result in results:
            tally["frames"] += 1
            tally["type_flips"] += _top(result) != _top(combined)
            tally["call_flips"] += (result.malignancy_probability >= threshold) != accumulated_call
            tally["frame_type_ok"] += _top(result) == truth_type
            tally["frame_call_ok"] += (result.malignancy_probability >= threshold) == truth_call
        clips.append(
            {
                "type_ok": _top(combined) == truth_type,
                "call_ok": accumulated_call == truth_call,
                "still_type_ok": _top(photo.result) == truth_type,
                "still_call_ok": (photo.result.malignancy_probability >= threshold) == truth_call,
                "abstained": combined.abstention is not None,
                "abstained_for_disagreement": combined.abstention is not None
                and "disagree" in combined.abstention.reason,
                "agreement": item.steadiness.agreement,
            }
        )
    kept = [c for c in clips if not c["abstained"]]
    frames_seen = max(1, tally["frames"])
    return {
        "source": str(folder.relative_to(REPO) if folder.is_relative_to(REPO) else folder),
        "clips": len(clips),
        "frames": tally["frames"],
        "frame_type_differs_from_accumulated": round(tally["type_flips"] / frames_seen, 3),
        "frame_call_differs_from_accumulated": round(tally["call_flips"] / frames_seen, 3),
        "operating_threshold": threshold,
        "type_accuracy": {
            "single_frame": round(tally["frame_type_ok"] / frames_seen, 3),
            "accumulated": _share(clips, "type_ok"),
            "still_with_tta": _share(clips, "still_type_ok"),
        },
        "malignant_call_accuracy": {
            "single_frame": round(tally["frame_call_ok"] / frames_seen, 3),
            "accumulated": _share(clips, "call_ok"),
            "still_with_tta": _share(clips, "still_call_ok"),
        },
        "min_agreement": min_agreement,
        "abstained_clips": len(clips) - len(kept),
        "abstained_for_disagreement": sum(c["abstained_for_disagreement"] for c in clips),
        "type_accuracy_kept": _share(kept, "type_ok"),
        "type_accuracy_abstained": _share([c for c in clips if c["abstained"]], "type_ok"),
        "median_agreement": round(statistics.median(c["agreement"] for c in clips), 3) if clips else None,
    }


def _top(result: TumourAssessment) -> str:
    return max(result.types, key=lambda c: c.probability).concept.code


def _share(items: list[dict[str, Any]], key: str) -> float | None:
    return round(sum(bool(item[key]) for item in items) / len(items), 3) if items else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generated", type=int, default=16, help="generated clips (0: none)")
    parser.add_argument("--pad", type=Path, default=REPO / "tests" / "data" / "pad-ufes-20")
    parser.add_argument(
        "--pad-limit", type=int, default=None, help="N rows spread evenly over the PAD labels.csv"
    )
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures: dict[str, Any] = {}
    limit = load_settings().accumulate_min_agreement
    if args.generated:
        figures["generated"] = generated(args.generated, args.frames, args.seed)
        limit = figures["generated"]["calibrated_min_agreement"] or limit
    figures["pad_ufes_20"] = pad(args.pad, args.pad_limit, args.frames, args.seed, limit)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    for part, values in figures.items():
        print(part)
        for key, value in values.items():
            print(f"  {key:<40} {value}")


if __name__ == "__main__":
    main()
