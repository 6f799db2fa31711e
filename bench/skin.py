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
import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from PIL import Image, ImageFilter

from bench.timing import add_options, photo_size, settings_from, show, time_photos
from models.pipelines import ANALYSES_BY_KIND
from models.skin.synthetic import generate_scene

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_options(parser)
    args = parser.parse_args()
    settings = settings_from(args, parser)
    size = photo_size(args)
    figures = time_photos(photos(args.photos, size), "skin", settings)
    figures = {"photo_pixels": "{}x{}".format(*size), "analyses": list(ANALYSES_BY_KIND["skin"]), **figures}
    show(figures, as_json=args.json)


if __name__ == "__main__":
    main()
