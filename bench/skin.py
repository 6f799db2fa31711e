"""Skin analysis time per photo, end to end, with the shipped (or given) skin packages.

    .venv/bin/python bench/skin.py [--photos N] [--size WxH] [--device cpu|cuda] [--threads N]
                                   [--tta-views N] [--json]

Generated photos — by default phone-sized 12 MP JPEGs (4032×3024), eczema on varied body parts
and distances — go through what a worker does: decode at working size → quality gate → body
part and lesion extraction → TIS, AD vs complications, diagnosis and tumour on the lesion crops
(with TTA and Grad-CAM, as configured by the settings; ``--tta-views`` overrides
``PHOTOMARKER_INFERENCE_TTA_VIEWS``) → overlays rendered. Printed: the median
and 95th percentile seconds per photo one at a time, photos/s for the batch of all of them, the
time of the first photo (model loading) on its own, and ``forward_share``: the median, over
photos, of the time spent inside the networks' forward passes (every member of every model,
Grad-CAM's included) divided by the whole analysis — the rest is decoding, the gate, cropping,
calibration and rendering. Figures are the machine's, shared or not: re-run on an idle machine
to compare.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch
from PIL import Image, ImageFilter

from models.engine.stages import PreparedNetwork
from models.errors import PhotomarkerError
from models.pipelines import ANALYSES_BY_KIND
from models.skin.synthetic import generate_scene
from plugin.settings import load_settings
from workers.analysis import PhotoRequest, analyse_photos

# The scene generator draws squares; larger photos are a drawn scene cropped to the photo's
# aspect and scaled up.
DRAWN_SIDE = 1024


def photos(count: int, size: tuple[int, int]) -> list[bytes]:
    rng = np.random.default_rng(2024)
    width, height = size
    out = []
    for index in range(count):
        zoom = 1.0 + (index % 4) * 0.4
        side = min(DRAWN_SIDE, max(size))
        scene = generate_scene(rng, size=side, condition="atopic-dermatitis", zoom=zoom, blur=0)
        image = Image.fromarray(scene.image)
        if (width, height) != (side, side):
            # Crop the square to the photo's aspect, then scale it up to the photo's size.
            crop_h = round(side * min(1.0, height / width))
            crop_w = round(side * min(1.0, width / height))
            top, left = (side - crop_h) // 2, (side - crop_w) // 2
            image = image.crop((left, top, left + crop_w, top + crop_h)).resize(
                size, Image.Resampling.BICUBIC
            )
            # Sharpened at the scale the worker decodes it (1/4), or the upscaled drawing is soft
            # and the quality gate (rightly strict) refuses it.
            image = image.filter(ImageFilter.UnsharpMask(radius=6, percent=160, threshold=0))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=12)
    parser.add_argument("--size", default="4032x3024", help="each photo's WIDTHxHEIGHT in pixels")
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--tta-views", type=int, default=None, help="test-time views per photo (default: the setting's)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    overrides: dict[str, object] = {}
    if args.device:
        overrides["device"] = args.device
    if args.threads is not None:
        overrides["inference_threads"] = args.threads
    if args.tta_views is not None:
        if args.tta_views < 1:
            parser.error("--tta-views is at least 1")
        overrides["inference_tta_views"] = args.tta_views
    settings = load_settings().model_copy(update=overrides)
    width, height = (int(v) for v in args.size.lower().split("x"))
    data = photos(args.photos, (width, height))
    clock = ForwardClock(cuda=settings.device == "cuda")

    began = time.perf_counter()
    (first,) = analyse_photos([PhotoRequest(data[0], "skin")], settings)
    first_s = time.perf_counter() - began
    if isinstance(first, PhotomarkerError):
        raise SystemExit(f"the benchmark photo was refused: {first.code}")
    if not first.report.quality.acceptable:
        raise SystemExit(f"the benchmark photo failed the quality gate: {first.report.quality.failed}")
    analyses = [model.name for model, _ in first.report.model_results]

    clock.attach()
    single, shares = [], []
    answering: Counter[str] = Counter()
    for item in data:
        clock.seconds = 0.0
        began = time.perf_counter()
        (outcome,) = analyse_photos([PhotoRequest(item, "skin")], settings)
        seconds = time.perf_counter() - began
        if isinstance(outcome, PhotomarkerError) or not outcome.report.quality.acceptable:
            answering["(refused or failed the quality gate: not timed)"] += 1
            continue
        # Only photos that went through the models count: a refusal is fast and would flatter.
        single.append(seconds)
        shares.append(clock.seconds / seconds)
        answering.update(model.name for model, _ in outcome.report.model_results)
    began = time.perf_counter()
    analyse_photos([PhotoRequest(item, "skin") for item in data], settings)
    batch_s = time.perf_counter() - began

    if not single:
        raise SystemExit("no photo passed the quality gate; nothing to time")
    single.sort()
    figures = {
        "photos": len(data),
        "photos_timed": len(single),
        "photo_pixels": f"{width}x{height}",
        "photo_jpeg_mb": round(statistics.median(len(d) for d in data) / 1e6, 2),
        "analyses": list(ANALYSES_BY_KIND["skin"]),
        "models_answering_first_photo": analyses,
        "photos_each_model_answered": dict(answering),
        "first_photo_s_including_model_load": round(first_s, 3),
        "per_photo_median_s": round(statistics.median(single), 3),
        "per_photo_p95_s": round(single[min(len(single) - 1, int(0.95 * len(single)))], 3),
        "batch_photos_per_s": round(len(data) / batch_s, 2),
        "forward_share": round(statistics.median(shares), 3),
        "whole_to_forward_ratio": round(1 / statistics.median(shares), 2)
        if statistics.median(shares)
        else None,
        "device": settings.device,
        "tta": settings.inference_tta,
        "tta_views": settings.inference_tta_views if settings.inference_tta else 1,
        "heatmaps": settings.inference_heatmaps,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    for key, value in figures.items():
        print(f"{key:<40} {value}")


if __name__ == "__main__":
    main()
