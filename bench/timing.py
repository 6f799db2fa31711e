"""What the per-photo benchmarks (``bench/skin.py``, ``bench/hb.py``) share: their options, the
clock on the networks' forward passes, the timing loop and how figures are printed."""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import torch

from models.engine.stages import PreparedNetwork
from models.errors import PhotomarkerError
from plugin.settings import Settings, load_settings
from workers.analysis import PhotoRequest, RequestedKind, analyse_photos


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options every per-photo benchmark takes."""
    parser.add_argument("--photos", type=int, default=12)
    parser.add_argument("--size", default="4032x3024", help="each photo's WIDTHxHEIGHT in pixels")
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--tta-views", type=int, default=None, help="test-time views per photo (default: the setting's)"
    )
    parser.add_argument("--json", action="store_true")


def settings_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Settings:
    """The settings, with the benchmark's options over them."""
    overrides: dict[str, object] = {}
    if args.device:
        overrides["device"] = args.device
    if args.threads is not None:
        overrides["inference_threads"] = args.threads
    if args.tta_views is not None:
        if args.tta_views < 1:
            parser.error("--tta-views is at least 1")
        overrides["inference_tta_views"] = args.tta_views
    return load_settings().model_copy(update=overrides)


def photo_size(args: argparse.Namespace) -> tuple[int, int]:
    width, height = (int(v) for v in args.size.lower().split("x"))
    return width, height


class ForwardClock:
    """Seconds spent inside the forward passes of every member of every prepared model."""

    def __init__(self, cuda: bool) -> None:
        self.seconds = 0.0
        self._cuda = cuda
        self._began: float | None = None
        self._attached: set[int] = set()

    def attach(self) -> None:
        """Hook every member prepared so far (the pipelines load and prepare on the first photo)."""
        for network in (o for o in gc.get_objects() if isinstance(o, PreparedNetwork)):
            for member in network.runners:
                if id(member) not in self._attached:
                    member.register_forward_pre_hook(self._before)
                    member.register_forward_hook(self._after)
                    self._attached.add(id(member))

    def _sync(self) -> None:
        if self._cuda:
            torch.cuda.synchronize()

    def _before(self, *_: object) -> None:
        self._sync()
        self._began = time.perf_counter()

    def _after(self, *_: object) -> None:
        self._sync()
        if self._began is not None:
            self.seconds += time.perf_counter() - self._began
            self._began = None


def time_photos(data: list[bytes], kind: RequestedKind, settings: Settings) -> dict[str, Any]:
    """Each photo alone, then all as one batch, through ``analyse_photos`` as a worker runs it.

    Only photos that went through the models are timed: a refusal is fast and would flatter.
    """
    clock = ForwardClock(cuda=settings.device == "cuda")
    began = time.perf_counter()
    (first,) = analyse_photos([PhotoRequest(data[0], kind)], settings)
    first_s = time.perf_counter() - began
    if isinstance(first, PhotomarkerError):
        raise SystemExit(f"the benchmark photo was refused: {first.code}")
    if not first.report.quality.acceptable:
        raise SystemExit(f"the benchmark photo failed the quality gate: {first.report.quality.failed}")

    clock.attach()
    single, shares = [], []
    answering: Counter[str] = Counter()
    for item in data:
        clock.seconds = 0.0
        began = time.perf_counter()
        (outcome,) = analyse_photos([PhotoRequest(item, kind)], settings)
        seconds = time.perf_counter() - began
        if isinstance(outcome, PhotomarkerError) or not outcome.report.quality.acceptable:
            answering["(refused or failed the quality gate: not timed)"] += 1
            continue
        single.append(seconds)
        shares.append(clock.seconds / seconds)
        answering.update(model.name for model, _ in outcome.report.model_results)
        answering.update(f"not performed: {missing.analysis}" for missing in outcome.report.not_performed)
    began = time.perf_counter()
    analyse_photos([PhotoRequest(item, kind) for item in data], settings)
    batch_s = time.perf_counter() - began

    if not single:
        raise SystemExit("no photo passed the quality gate; nothing to time")
    single.sort()
    share = statistics.median(shares)
    return {
        "photos": len(data),
        "photos_timed": len(single),
        "photo_jpeg_mb": round(statistics.median(len(d) for d in data) / 1e6, 2),
        "models_answering_first_photo": [model.name for model, _ in first.report.model_results],
        "photos_each_model_answered": dict(answering),
        "first_photo_s_including_model_load": round(first_s, 3),
        "per_photo_median_s": round(statistics.median(single), 3),
        "per_photo_p95_s": round(single[min(len(single) - 1, int(0.95 * len(single)))], 3),
        "batch_photos_per_s": round(len(data) / batch_s, 2),
        "forward_share": round(share, 3),
        "whole_to_forward_ratio": round(1 / share, 2) if share else None,
        "device": settings.device,
        "tta": settings.inference_tta,
        "tta_views": settings.inference_tta_views if settings.inference_tta else 1,
        "heatmaps": settings.inference_heatmaps,
    }


def show(figures: Mapping[str, Any], *, as_json: bool) -> None:
    """Figures as JSON, or one aligned line each."""
    if as_json:
        print(json.dumps(figures, indent=2))
        return
    for key, value in figures.items():
        print(f"{key:<40} {value}")
