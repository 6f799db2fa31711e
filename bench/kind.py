"""How well ``--kind auto`` tells skin photos from eyelid photos.

    .venv/bin/python bench/kind.py [--skin N] [--strips N] [--json]

Skin: ``N`` generated skin photos (every condition, body part, tone and distance; seed 2024,
none of them "not skin"). Eyelid: the first ``N`` CP-AnemiC conjunctiva strips (real,
pre-cropped on transparency) from ``../shared/data/cp-anemic``, and the example eyelid photo.
Each goes through the worker's own decision (colour gate, then the conjunctiva network when
colour says "conjunctiva"); printed: the share of each set given the right kind.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from PIL import Image

from models.intake import IntakeLimits
from models.quality import QualityThresholds
from models.skin.labels import BODY_PART_KEYS, NOT_SKIN
from models.skin.synthetic import generate_scene
from plugin.settings import load_settings
from workers.analysis import PhotoRequest, _decode_and_gate

ROOT = Path(__file__).resolve().parent.parent
CP_ANEMIC = ROOT.parent / "shared" / "data" / "cp-anemic"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skin", type=int, default=300)
    parser.add_argument("--strips", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    settings = load_settings()
    limits, thresholds = IntakeLimits.from_settings(settings), QualityThresholds.from_settings(settings)

    def kind(data: bytes) -> str:
        return _decode_and_gate(PhotoRequest(data), limits, thresholds).kind

    rng = np.random.default_rng(2024)
    parts = [part for part in BODY_PART_KEYS if part != NOT_SKIN]
    skin_right = 0
    for index in range(args.skin):
        scene = generate_scene(rng, size=512, body_part=parts[index % len(parts)])
        buffer = io.BytesIO()
        Image.fromarray(scene.image).save(buffer, format="JPEG", quality=90)
        skin_right += kind(buffer.getvalue()) == "skin"
    strips = sorted(CP_ANEMIC.rglob("*.png"))[: args.strips]
    strip_right = sum(kind(path.read_bytes()) == "conjunctiva" for path in strips)
    figures = {
        "skin_photos": args.skin,
        "skin_called_skin": round(skin_right / max(args.skin, 1), 3),
        "conjunctiva_strips": len(strips),
        "strips_called_conjunctiva": round(strip_right / max(len(strips), 1), 3),
        "example_eyelid": kind((ROOT / "examples" / "eyelid.png").read_bytes()),
        "example_forearm": kind((ROOT / "examples" / "forearm-eczema.jpg").read_bytes()),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    for key, value in figures.items():
        print(f"{key:<28} {value}")


if __name__ == "__main__":
    main()
