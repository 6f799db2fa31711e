"""Skin analysis time per photo, end to end, with the shipped (or given) skin packages.

    .venv/bin/python bench/skin.py [--photos N] [--side PX] [--device cpu|cuda] [--threads N] [--json]

Generated photos (JPEG, ``--side`` square, eczema on varied body parts and distances)
go through what a worker does: decode at working size → quality gate → body part and lesion
extraction → TIS, AD vs complications, diagnosis and tumour on the lesion crops (with TTA and
Grad-CAM, as configured by the settings) → overlays rendered. Printed: the median and 95th
percentile seconds per photo one at a time, and photos/s for the batch of all of them, plus
the time of the first photo (model loading) on its own. Figures are the machine's, shared or
not: re-run on an idle machine to compare.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from PIL import Image

from models.errors import PhotomarkerError
from models.pipelines import ANALYSES_BY_KIND
from models.skin.synthetic import generate_scene
from plugin.settings import load_settings
from workers.analysis import PhotoRequest, analyse_photos


def photos(count: int, side: int) -> list[bytes]:
    rng = np.random.default_rng(2024)
    out = []
    for index in range(count):
        # Drawn at full size: an upscaled photo is soft and the quality gate (rightly) refuses it.
        zoom = 1.0 + (index % 4) * 0.4
        scene = generate_scene(rng, size=side, condition="atopic-dermatitis", zoom=zoom, blur=0)
        image = Image.fromarray(scene.image)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=12)
    parser.add_argument("--side", type=int, default=1024, help="side of each (square) photo, pixels")
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    overrides: dict[str, object] = {}
    if args.device:
        overrides["device"] = args.device
    if args.threads is not None:
        overrides["inference_threads"] = args.threads
    settings = load_settings().model_copy(update=overrides)
    data = photos(args.photos, args.side)

    began = time.perf_counter()
    (first,) = analyse_photos([PhotoRequest(data[0], "skin")], settings)
    first_s = time.perf_counter() - began
    if isinstance(first, PhotomarkerError):
        raise SystemExit(f"the benchmark photo was refused: {first.code}")
    if not first.report.quality.acceptable:
        raise SystemExit(f"the benchmark photo failed the quality gate: {first.report.quality.failed}")
    analyses = [model.name for model, _ in first.report.model_results]

    single = []
    for item in data:
        began = time.perf_counter()
        analyse_photos([PhotoRequest(item, "skin")], settings)
        single.append(time.perf_counter() - began)
    began = time.perf_counter()
    analyse_photos([PhotoRequest(item, "skin") for item in data], settings)
    batch_s = time.perf_counter() - began

    single.sort()
    figures = {
        "photos": len(data),
        "photo_pixels": f"{args.side}x{args.side}",
        "analyses": list(ANALYSES_BY_KIND["skin"]),
        "models_answering": analyses,
        "first_photo_s_including_model_load": round(first_s, 3),
        "per_photo_median_s": round(statistics.median(single), 3),
        "per_photo_p95_s": round(single[min(len(single) - 1, int(0.95 * len(single)))], 3),
        "batch_photos_per_s": round(len(data) / batch_s, 2),
        "device": settings.device,
        "tta": settings.inference_tta,
        "heatmaps": settings.inference_heatmaps,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    for key, value in figures.items():
        print(f"{key:<40} {value}")


if __name__ == "__main__":
    main()
