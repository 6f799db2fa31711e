"""Inference engine speed: per-stage time, photos/s at batch 1/8/32, peak memory, overhead, decode.

    .venv/bin/python bench/inference.py [--device cpu|cuda] [--json] [--model NAME] [--repeats N]
                                        [--photo PATH ...] [--tta-views N]

1. Decode: a generated 12 MP (4000×3000, ~2.5 MB) JPEG, decoded in full and at reduced scale the
   way the worker does it (``decode_photo(min_side=WORKING_MIN_SIDE)``: Pillow draft mode, DCT
   scaling, here 1/4). ``decode_speedup`` = full / reduced, measured after the models have run
   with Pillow's block cache on (``keep_decode_buffers()``, as every worker process sets it):
   the worker's steady state. ``decode_speedup_fresh_process`` is measured first, in this fresh
   process without the cache: there every full decode maps and page-faults a new 36 MB buffer
   (~50 ms of its ~100 ms), which the worker never pays — so that ratio (~3.4) overstates what
   reduced decoding saves. What it really saves is the IDCT and colour conversion; the Huffman
   decoding of the whole bitstream remains (~25 ms here), so the steady-state ratio is ~1.7–1.9
   and the reduced decode's own time (``decode_reduced_ms``) is the figure to watch. An earlier
   steady-state 0.84 (reduced slower than full) came from a run without the cache on a machine
   busy with training: fastest-of-3 of a 28 ms decode; it did not recur in five runs here.
2. Pipeline: photos at the worker's working size (1008×756) — or the ``--photo`` files, e.g. a
   real lesion cut-out for the tumour stage, which the skin pipeline runs per lesion crop —
   through the model's whole data path — pre_process (resize, TTA views), predict (every
   member, Grad-CAM from the same pass), post_process (calibration, spread, OOD, abstention) —
   at batch 1, 8 and 32, on ``--tta-views`` test-time views (default: the engine's default).
3. ``overhead_ratio`` (batch 8) = that pipeline's time / the time of plain inference-mode
   forwards of the same members on the same prepared tensor (all TTA views). Target ≤ 1.25.
   Rendering the heat-map PNGs happens at write-back, not in the pipeline; it is reported
   beside it (``heatmap_png_ms``, ``overhead_ratio_with_png``).
4. Peak memory: CUDA ``max_memory_allocated``; on the CPU the process's peak RSS.

Every figure is the fastest of ``--repeats`` runs, compared runs taken in turn: on a shared
machine other processes only add time, so the fastest run is the least disturbed one.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

# Run from a checkout without an install: the repository root first on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch
from PIL import Image

from models.engine.execution import resolve_execution, synchronise
from models.engine.gradcam import render_overlay
from models.engine.network import build_ensemble
from models.engine.options import EngineOptions
from models.engine.reference_data import add_marker, as_photo, skin_patch, to_uint8
from models.engine.reference_train import base_manifest
from models.engine.stages import Pipeline, Predict, PreparedBatch, StageTimings
from models.intake import DecodedPhoto, IntakeLimits, decode_photo, keep_decode_buffers
from models.manifest import AbstentionPolicy, ArchitectureSpec, InputSpec
from models.pipelines import build_model_pipeline
from models.registry import ModelRegistry, registry_for, save_model_package
from workers.analysis import WORKING_MIN_SIDE

BATCHES = (1, 8, 32)


def fastest_interleaved(
    runs: dict[str, Callable[[], object]], repeats: int, sync: Callable[[], None]
) -> dict[str, float]:
    """Seconds of the fastest of ``repeats`` runs of each, taken in turn (A B A B …).

    On a shared machine other processes only ever add time; the fastest run is the least
    disturbed, and taking the runs in turn exposes what is compared to the same conditions.
    """
    best = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            began = time.perf_counter()
            run()
            sync()
            best[name] = min(best[name], time.perf_counter() - began)
    return best


def twelve_megapixel_jpeg() -> bytes:
    """A 4000×3000 JPEG (quality 90) with skin texture and sensor-like grain, ~2.5–3 MB."""
    rng = np.random.default_rng(12)
    patch = skin_patch(rng, 1000)
    add_marker(patch, rng)
    upscaled = Image.fromarray(to_uint8(patch)).resize((4000, 3000), Image.Resampling.BILINEAR)
    big = np.asarray(upscaled, np.float32)
    big += rng.normal(0, 4, (*big.shape[:2], 1)).astype(np.float32)
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(big)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def bench_decode(repeats: int) -> dict[str, Any]:
    data = twelve_megapixel_jpeg()
    limits = IntakeLimits(max_bytes=64 << 20, max_pixels=60_000_000)
    sizes = {"full": None, "worker": WORKING_MIN_SIDE, "eighth": 375}
    runs: dict[str, Callable[[], object]] = {
        name: partial(decode_photo, data, limits=limits, min_side=side) for name, side in sizes.items()
    }
    best = fastest_interleaved(runs, repeats, lambda: None)
    decoded = {
        name: decode_photo(data, limits=limits, min_side=side).pixels.size for name, side in sizes.items()
    }
    return {
        "jpeg_bytes": len(data),
        "decode_full_ms": round(best["full"] * 1000, 1),
        # The worker's own setting (min_side=WORKING_MIN_SIDE): what every JPEG photo gets.
        "decode_reduced_ms": round(best["worker"] * 1000, 1),
        "decode_reduced_size": list(decoded["worker"]),
        "decode_speedup": round(best["full"] / best["worker"], 2),
        "decode_speedup_by_scale": {
            f"{decoded[name][0]}x{decoded[name][1]}": round(best["full"] / best[name], 2)
            for name in ("worker", "eighth")
        },
    }


def working_photos(count: int) -> list[DecodedPhoto]:
    """Photos as the worker holds them: a 12 MP (4032×3024) JPEG decoded at 1/4 scale, 1008×756."""
    rng = np.random.default_rng(7)
    photos = []
    for index in range(count):
        patch = skin_patch(rng, 256)
        if index % 2:
            add_marker(patch, rng)
        image = Image.fromarray(to_uint8(patch)).resize((1008, 756), Image.Resampling.BILINEAR)
        photos.append(as_photo(image))
    return photos


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    # ru_maxrss is KiB on Linux.
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def given_photos(paths: list[Path], count: int) -> list[DecodedPhoto]:
    """The ``--photo`` files decoded as the worker would, repeated in turn up to ``count``."""
    decoded = [decode_photo(path.read_bytes(), limits=IntakeLimits()) for path in paths]
    return [decoded[index % len(decoded)] for index in range(count)]


def _described(paths: list[Path]) -> list[str]:
    return [f"{path.name} {Image.open(path).size[0]}x{Image.open(path).size[1]}" for path in paths]


def bench_pipeline(
    model: str, device: str, repeats: int, paths: list[Path] | None = None, views: int | None = None
) -> dict[str, Any]:
    execution = resolve_execution(device)  # type: ignore[arg-type]
    sync = lambda: synchronise(execution)  # noqa: E731
    loaded = registry_for(None).load(model)
    photos = given_photos(paths, max(BATCHES)) if paths else working_photos(max(BATCHES))
    results: dict[str, Any] = {"device": execution.describe(), "model": f"{model} {loaded.manifest.version}"}
    results["photos"] = _described(paths) if paths else "generated 1008x756"
    per_batch: dict[str, Any] = {}
    for batch in BATCHES:
        options = EngineOptions(device=device, batch_size=batch)  # type: ignore[arg-type]
        if views is not None:
            options = replace(options, tta_views=views)
        pipeline = build_model_pipeline(loaded, execution, options)
        chunk = photos[:batch]
        pipeline(chunk)  # warm-up: allocator, kernels, first-call overheads
        runs: list[StageTimings] = []
        for _ in range(repeats):
            runs.append(StageTimings())
            pipeline(chunk, runs[-1])
        fastest = min(runs, key=lambda timing: sum(timing.seconds.values()))
        seconds = sum(fastest.seconds.values())
        per_batch[str(batch)] = {
            "photos_per_s": round(batch / seconds, 2),
            "ms_per_batch": round(seconds * 1000, 2),
            "stage_ms_per_batch": {k: round(v * 1000, 2) for k, v in fastest.seconds.items()},
        }
        if batch == 8:
            results.update(overhead(pipeline, chunk, repeats, sync))
    results["batches"] = per_batch
    results["threads"] = execution.threads
    results["peak_memory_mib"] = peak_memory_mib(execution.device)
    results["peak_memory_kind"] = "cuda max_memory_allocated" if execution.is_cuda else "process peak RSS"
    return results


def overhead(
    pipeline: Pipeline, chunk: list[DecodedPhoto], repeats: int, sync: Callable[[], None]
) -> dict[str, Any]:
    """The whole pipeline vs plain forwards of the same members on the same prepared tensor."""
    pre, predict = pipeline.stages[0], pipeline.stages[1]
    if not isinstance(predict, Predict):
        raise TypeError("stage 2 is not predict")
    prepared: PreparedBatch = pre(chunk)
    network = predict.network
    network.forward_only(prepared.inputs)
    explanations = [p.explanation for p in pipeline(chunk) if p.explanation is not None]
    pairs = list(zip(chunk, explanations, strict=True))
    best = fastest_interleaved(
        {
            "pipeline": lambda: pipeline(chunk),
            "forward": lambda: network.forward_only(prepared.inputs),
            "png": lambda: [render_overlay(photo.pixels, e) for photo, e in pairs],
        },
        repeats,
        sync,
    )
    return {
        "views": len(prepared.plan),
        "members": len(network.members),
        "network_inputs_batch8": int(prepared.inputs.shape[0]),
        "forward_ms_batch8": round(best["forward"] * 1000, 2),
        "pipeline_ms_batch8": round(best["pipeline"] * 1000, 2),
        "overhead_ratio": round(best["pipeline"] / best["forward"], 3),
        "heatmap_png_ms_batch8": round(best["png"] * 1000, 2),
        "overhead_ratio_with_png": round((best["pipeline"] + best["png"]) / best["forward"], 3),
    }


def context_overhead(device: str, repeats: int) -> dict[str, Any]:
    """The same measurement on a realistically sized network: MobileNetV3-small at 224 px.

    Random weights in a throw-away package (the engine's cost does not depend on the weights);
    one member, the reference model's ten views. Shows how the fixed per-photo pre-processing
    weighs against a forward that is not tiny.
    """
    base = base_manifest()
    manifest = base.model_copy(
        update={
            "name": "bench-mobilenet",
            "input": InputSpec(size=224, normalisation=base.input.normalisation),
            "architecture": ArchitectureSpec(name="mobilenet_v3_small", ensemble_size=1),
            "abstention": AbstentionPolicy(),
        }
    )
    with tempfile.TemporaryDirectory() as root:
        save_model_package(
            Path(root) / manifest.name, manifest, build_ensemble(manifest).state_dict(), "# bench\n"
        )
        loaded = ModelRegistry([Path(root)]).load(manifest.name)
        execution = resolve_execution(device)  # type: ignore[arg-type]
        options = EngineOptions(device=device, batch_size=8)  # type: ignore[arg-type]
        pipeline = build_model_pipeline(loaded, execution, options)
        chunk = working_photos(8)
        pipeline(chunk)
        figures = overhead(pipeline, chunk, repeats, lambda: synchronise(execution))
    return {
        "context_model": "mobilenet_v3_small, 224 px, 1 member, 10 views, random weights",
        "context_forward_ms_batch8": figures["forward_ms_batch8"],
        "context_pipeline_ms_batch8": figures["pipeline_ms_batch8"],
        "context_overhead_ratio": figures["overhead_ratio"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="Inference engine benchmark.")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--model", default="reference-marker", help="installed model package to time")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--photo",
        type=Path,
        action="append",
        help="time the model on this photo instead of generated ones (repeat for several)",
    )
    parser.add_argument("--tta-views", type=int, default=None, help="test-time views (default: the engine's)")
    args = parser.parse_args()
    if args.tta_views is not None and args.tta_views < 1:
        parser.error("--tta-views is at least 1")
    # Decode twice: in a fresh process without Pillow's block cache (a new 36 MB buffer, page
    # faults and all, for every full decode), then as a worker decodes — models loaded, the
    # cache on. The second is the headline figure.
    cold = bench_decode(args.repeats)
    pipeline = bench_pipeline(args.model, args.device, args.repeats, args.photo, args.tta_views)
    keep_decode_buffers()
    figures = {**pipeline, **bench_decode(args.repeats)}
    figures["decode_speedup_fresh_process"] = cold["decode_speedup"]
    figures["decode_full_ms_fresh_process"] = cold["decode_full_ms"]
    figures.update(context_overhead(args.device, max(3, args.repeats // 3)))
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"device {figures['device']}, model {figures['model']}, photos {figures['photos']}")
    print(f"views × members: {figures['views']} × {figures['members']}")
    for batch, row in figures["batches"].items():
        stages = ", ".join(f"{name} {ms:.1f} ms" for name, ms in row["stage_ms_per_batch"].items())
        print(f"batch {batch:>2}: {row['photos_per_s']:8.2f} photos/s  ({stages})")
    print(
        f"overhead_ratio (batch 8): {figures['overhead_ratio']:.3f}  "
        f"(pipeline {figures['pipeline_ms_batch8']} ms / forward {figures['forward_ms_batch8']} ms; "
        f"+ heat-map PNGs {figures['heatmap_png_ms_batch8']} ms → {figures['overhead_ratio_with_png']:.3f})"
    )
    print(
        f"decode_speedup: {figures['decode_speedup']:.2f}  (12 MP JPEG: full {figures['decode_full_ms']} ms, "
        f"reduced to {figures['decode_reduced_size']} {figures['decode_reduced_ms']} ms; "
        f"fresh process {figures['decode_speedup_fresh_process']:.2f}; "
        f"by scale {figures['decode_speedup_by_scale']})"
    )
    print(f"peak memory: {figures['peak_memory_mib']} MiB ({figures['peak_memory_kind']})")
    print(
        f"context: {figures['context_model']}: overhead_ratio {figures['context_overhead_ratio']:.3f} "
        f"(pipeline {figures['context_pipeline_ms_batch8']} ms / "
        f"forward {figures['context_forward_ms_batch8']} ms)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
