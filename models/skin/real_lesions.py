"""Real lesions for the lesion extractor: PAD-UFES-20 cut-outs, the patient split, pasting, training sets.

PAD-UFES-20 ships here as lesion cut-outs: one real lesion photographed with a phone, everything
around it set to black (``../shared/data/pad-ufes-20/README.md``). :func:`load_cut_out` finds
the lesion on the black; :func:`paste` puts it into another photo at a random scale and place.

Patients are split once, by a hash of ``patient_id``: a quarter, plus the patients of the
repository's test subset (``tests/data/pad-ufes-20``), are **held out**; only the rest may be
pasted into training photos (:func:`write_pasted_set`), and the evaluation
(:mod:`models.skin.real_lesion_scoring`) scores held-out patients only, so its figures are on
lesions the extractor never saw.

Run as a module to write the training set::

    python -m models.skin.real_lesions --pad ../shared/data/pad-ufes-20/labels.csv \
        --out build/skin-lesion-pad --count 3000 --pasted 3000 --seed 1
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageFilter

from models.cut_out import inside_black_surround
from models.errors import DatasetError
from models.skin.dataset import COLUMNS, GENERATED_MARKER, MASK_TUMOUR, components, write_generated_set
from models.skin.labels import BODY_PART_KEYS, NOT_SKIN
from models.skin.plaques import paint_plaque
from models.skin.synthetic import generate_scene
from models.skin.synthetic_lesions import TUMOUR
from models.tumour.dataset import load_samples

PAD_CITATION: Final = (
    "Pacheco A.G.C. et al., PAD-UFES-20: a skin lesion dataset composed of patient data and clinical "
    "images collected from smartphones, Data in Brief 32:106221 (2020); Mendeley Data, DOI "
    "10.17632/zr7vgbcyr2.1; CC BY 4.0 (modified: lesion cut-outs, pasted into generated photos)"
)
PAD_LICENCE: Final = "CC BY 4.0"
# The pasted lesion's longest side as a share of the photo's short side.
LESION_SHARE: Final = (0.05, 0.40)
# Held out: sha256(patient_id) % 4 == 0, and the patients of the repository's test subset
# (tests/data/pad-ufes-20), so tests and the subset's figures are on patients never trained on.
HELD_OUT_BUCKETS: Final = 4
SKIN_PARTS: Final = tuple(part for part in BODY_PART_KEYS if part != NOT_SKIN)
TEST_SUBSET_PATIENTS: Final = frozenset(
    {
        "PAT_104",
        "PAT_106",
        "PAT_107",
        "PAT_109",
        "PAT_113",
        "PAT_115",
        "PAT_118",
        "PAT_120",
        "PAT_126",
        "PAT_131",
        "PAT_150",
        "PAT_155",
        "PAT_163",
        "PAT_164",
        "PAT_166",
        "PAT_173",
        "PAT_176",
        "PAT_194",
        "PAT_201",
        "PAT_220",
        "PAT_233",
        "PAT_270",
        "PAT_29",
        "PAT_345",
        "PAT_61",
    }
)


def held_out(patient_id: str) -> bool:
    """Whether this PAD-UFES-20 patient is kept out of every lesion-extractor training set."""
    if patient_id in TEST_SUBSET_PATIENTS:
        return True
    return int(hashlib.sha256(patient_id.encode()).hexdigest(), 16) % HELD_OUT_BUCKETS == 0


def is_pad_layout(csv_path: Path) -> bool:
    """A CSV in PAD-UFES-20's layout (``file``, ``img_id``, ``diagnostic``, ``patient_id``)."""
    try:
        with csv_path.open(newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError):
        return False
    return {"file", "img_id", "diagnostic", "patient_id"} <= set(header) and "image" not in header


# --- cut-outs and pasting -------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CutOut:
    """One lesion from a cut-out file: the whole file's pixels, and the lesion's mask in them."""

    pixels: NDArray[np.uint8]  # (H, W, 3) the file as it is
    mask: NDArray[np.bool_]  # (H, W) the lesion

    def tight(self) -> tuple[NDArray[np.uint8], NDArray[np.bool_]]:
        """The lesion's bounding box: its pixels and mask."""
        rows, cols = np.nonzero(self.mask)
        box = slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1)
        return self.pixels[box], self.mask[box]


class EmptyCutOut(DatasetError):
    """A cut-out file that is black all over: there is no lesion to paste or find."""


def load_cut_out(path: Path) -> CutOut:
    """The lesion of a cut-out on black: its largest bright region, holes (dark spots) filled."""
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read image {path.name}: {type(exc).__name__}") from None
    pixels = np.asarray(rgb)
    filled = inside_black_surround(pixels)
    if not filled.any():
        raise EmptyCutOut(f"{path.name}: no lesion on the black surround")
    # The largest region, found on a small copy (labelling 512² pixels is slow without SciPy).
    small = 128
    reduced = np.asarray(Image.fromarray(filled.astype(np.uint8) * 255).resize((small, small))) >= 128
    labels, count = components(reduced)
    if count > 1:
        largest = labels == int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
        keep = Image.fromarray(largest.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(5))
        filled &= np.asarray(keep.resize(rgb.size, Image.Resampling.NEAREST)) > 0
    return CutOut(pixels, filled)


def paste(
    scene: NDArray[np.uint8],
    cut: CutOut,
    rng: np.random.Generator,
    where: NDArray[np.bool_] | None = None,
    share: tuple[float, float] = LESION_SHARE,
) -> tuple[NDArray[np.uint8], NDArray[np.bool_]]:
    """``cut``'s lesion into ``scene`` at a random scale and place; returns the photo and its mask.

    Its longest side is ``share`` (uniform) of the scene's short side; its centre lies on a
    ``where`` pixel (anywhere when None or empty), the lesion wholly inside the photo. The edge is
    feathered over ~2 % of the lesion's side, as a real lesion's border is never a cut.
    """
    height, width = scene.shape[:2]
    lesion, mask = cut.tight()
    side = rng.uniform(*share) * min(height, width)
    scale = side / max(lesion.shape[:2])
    w = int(np.clip(round(lesion.shape[1] * scale), 2, width))
    h = int(np.clip(round(lesion.shape[0] * scale), 2, height))
    # The cut-out's own edge is dark (JPEG ringing into the black): trim it, and resize with the
    # colour weighted by the mask so no black bleeds into the lesion's border.
    trimmed = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.MinFilter(3)))
    weight = (trimmed if trimmed.any() else mask.astype(np.uint8) * 255).astype(np.float32) / 255
    premultiplied = np.concatenate([lesion.astype(np.float32) * weight[..., None], weight[..., None]], axis=2)
    resized = np.stack(
        [
            np.asarray(Image.fromarray(premultiplied[..., c]).resize((w, h), Image.Resampling.BILINEAR))
            for c in range(4)
        ],
        axis=2,
    )
    coverage = np.clip(resized[..., 3], 0, 1)
    pixels = resized[..., :3] / np.maximum(coverage, 1e-3)[..., None]
    feather = max(0.5, 0.02 * max(w, h))
    blurred = Image.fromarray(np.rint(coverage * 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(feather)
    )
    alpha = np.minimum(np.asarray(blurred, dtype=np.float32) / 255, coverage * 2)  # no halo outside
    # Allowed centres: lesion wholly inside, on ``where`` when it has any such pixel.
    allowed = np.zeros((height, width), dtype=bool)
    allowed[h // 2 : height - (h - h // 2) + 1, w // 2 : width - (w - w // 2) + 1] = True
    if where is not None and (allowed & where).any():
        allowed &= where
    ys, xs = np.nonzero(allowed)
    pick = int(rng.integers(len(ys)))
    top, left = int(ys[pick]) - h // 2, int(xs[pick]) - w // 2
    out = scene.astype(np.float32)
    window = out[top : top + h, left : left + w]
    window *= 1 - alpha[..., None]
    window += alpha[..., None] * pixels
    truth = np.zeros((height, width), dtype=bool)
    truth[top : top + h, left : left + w] = coverage >= 0.5
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), truth


# --- the training set: generated photos plus real lesions pasted into more of them -----------------


def write_pasted_set(
    out_dir: Path,
    pad_csv: Path,
    *,
    count: int,
    pasted: int,
    seed: int,
    size: int = 256,
    bare_share: float = 0.1,
    background_share: float = 0.1,
    plaques: int = 0,
    log: Callable[[str], None] | None = None,
) -> Path:
    """A skin training manifest: ``count`` generated photos (``generated/``, exactly as
    ``photomarker generate skin`` writes them) and ``pasted`` photos (``pasted/``) each holding one
    real lesion of a training patient (mask class "tumour-like growth"): ``bare_share`` as the bare
    cut-out, ``background_share`` pasted into a photo of no skin, the rest onto generated skin — half
    of those with the generator's own lesions beside it. Then ``plaques`` photos (``plaques/``) of
    generated skin with a mottled eczema plaque painted in (:mod:`models.skin.plaques`, mask class
    rash), half of them with a real lesion pasted beside it. Returns ``OUT/labels.csv``.
    """
    began = time.perf_counter()
    generated_csv = write_generated_set(out_dir / "generated", count, seed, size)
    samples = [s for s in load_samples(pad_csv) if not held_out(s.patient_id)]
    if not samples:
        raise DatasetError(f"{pad_csv}: every patient is held out; nothing to paste")
    rng = np.random.default_rng([seed, 1])
    for folder in ("pasted", "plaques"):
        (out_dir / folder / "images").mkdir(parents=True, exist_ok=True)
        (out_dir / folder / "masks").mkdir(parents=True, exist_ok=True)
    manifest = out_dir / "labels.csv"
    cuts: dict[Path, CutOut] = {}
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        with generated_csv.open(newline="", encoding="utf-8") as source:
            for record in csv.DictReader(source):
                record["image"] = f"generated/{record['image']}"
                record["mask"] = f"generated/{record['mask']}" if record["mask"] else ""
                writer.writerow([record[column] for column in COLUMNS])
        order = rng.permutation(len(samples))
        empty: set[Path] = set()

        def cut_of(path: Path) -> CutOut | None:
            """The cut-out's lesion, loaded once; None for a cut-out with no lesion on it."""
            if path in empty:
                return None
            if path not in cuts:
                try:
                    cuts[path] = load_cut_out(path)
                except EmptyCutOut:
                    empty.add(path)
                    return None
            return cuts[path]

        turn = 0
        for index in range(pasted):
            while True:  # a cut-out with no lesion on it (PAD-UFES-20 has two all-black files) is passed over
                sample = samples[int(order[turn % len(samples)])]
                turn += 1
                found = cut_of(sample.path)
                if found is not None:
                    break
            cut = found
            draw = rng.uniform()
            body_part = ""
            fitzpatrick: int | str = ""
            if draw < bare_share:
                canvas = np.zeros((size, size, 3), dtype=np.uint8)
                pixels, truth = paste(canvas, cut, rng, share=(0.3, 0.95))
                classes = np.where(truth, MASK_TUMOUR, 0)
            else:
                not_skin = draw < bare_share + background_share
                condition = None if not_skin or rng.uniform() < 0.5 else "random"
                scene = generate_scene(
                    rng, size=size, body_part=NOT_SKIN if not_skin else None, condition=condition
                )
                where = None if not_skin else scene.skin_mask
                pixels, truth = paste(scene.image, cut, rng, where)
                own_class = MASK_TUMOUR if scene.condition == TUMOUR else 1
                own = np.where(scene.lesion_mask, own_class, 0)
                classes = np.where(truth, MASK_TUMOUR, own)
                body_part, fitzpatrick = scene.body_part, scene.fitzpatrick
            # The PAD patient is the group: one patient's lesions never straddle the split.
            _write_row(
                writer,
                out_dir,
                "pasted",
                index,
                pixels,
                classes,
                f"pad-{sample.patient_id}",
                fitzpatrick,
                body_part,
            )
            if log is not None and (index + 1) % 500 == 0:
                log(f"pasted {index + 1}/{pasted} ({time.perf_counter() - began:.0f} s)")
        plaque_rng = np.random.default_rng([seed, 2])
        for index in range(plaques):
            part = SKIN_PARTS[int(plaque_rng.integers(len(SKIN_PARTS)))]
            scene = generate_scene(plaque_rng, size=size, body_part=part, condition=None)
            skin = scene.skin_mask if scene.skin_mask is not None else np.zeros(scene.image.shape[:2], bool)
            pixels, plaque = paint_plaque(scene.image, skin, plaque_rng)
            classes = np.where(plaque, 1, 0)
            group = f"plaque-{index}"
            if plaque_rng.uniform() < 0.5:
                sample = samples[int(plaque_rng.integers(len(samples)))]
                beside = cut_of(sample.path)
                if beside is not None:
                    pixels, truth = paste(pixels, beside, plaque_rng, skin & ~plaque)
                    classes = np.where(truth, MASK_TUMOUR, classes)
                    group = f"pad-{sample.patient_id}"
            _write_row(writer, out_dir, "plaques", index, pixels, classes, group, scene.fitzpatrick, part)
    command = (
        f"python -m models.skin.real_lesions --pad {pad_csv} --out {out_dir} --count {count} "
        f"--pasted {pasted} --seed {seed} --size {size}" + (f" --plaques {plaques}" if plaques else "")
    )
    provenance = {
        "generator": "models.skin.real_lesions",
        "command": command,
        "count": count + pasted + plaques,
        "plaques": plaques,
        "seed": seed,
        "size": size,
        "real_lesions": {
            "source": "PAD-UFES-20",
            "citation": PAD_CITATION,
            "licence": PAD_LICENCE,
            "patients": len({s.patient_id for s in samples}),
            "images": len(samples),
            "pasted": pasted,
            "held_out": f"sha256(patient_id) % {HELD_OUT_BUCKETS} == 0 and the test subset's patients",
        },
    }
    (out_dir / GENERATED_MARKER).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    return manifest


def _write_row(
    writer: Any,
    out_dir: Path,
    folder: str,
    index: int,
    pixels: NDArray[np.uint8],
    classes: NDArray[np.integer[Any]],
    group: str,
    fitzpatrick: int | str,
    body_part: str,
) -> None:
    name = f"{index:06d}"
    Image.fromarray(pixels).save(out_dir / folder / "images" / f"{name}.jpg", quality=92)
    Image.fromarray(classes.astype(np.uint8)).save(out_dir / folder / "masks" / f"{name}.png")
    row = [f"{folder}/images/{name}.jpg", f"{folder}/masks/{name}.png", group, fitzpatrick, body_part]
    writer.writerow(row + [""] * (len(COLUMNS) - len(row)))


def _say(line: str) -> None:
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--pad", type=Path, required=True, help="PAD-UFES-20 labels.csv")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count", type=int, default=3000, help="generated photos")
    parser.add_argument("--pasted", type=int, default=2000, help="photos with a real lesion")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--plaques", type=int, default=0, help="photos with a mottled eczema plaque")
    args = parser.parse_args(argv)
    manifest = write_pasted_set(
        args.out,
        args.pad,
        count=args.count,
        pasted=args.pasted,
        seed=args.seed,
        size=args.size,
        plaques=args.plaques,
        log=_say,
    )
    sys.stdout.write(f"{manifest}\n")


if __name__ == "__main__":
    main()
