"""Mottled eczema plaques for the lesion extractor's training set, and the set that holds them."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from models.manifest import AbstentionPolicy, Calibration
from models.registry import PackageRequest
from models.skin.dataset import GENERATED_MARKER
from models.skin.package_manifest import skin_manifest
from models.skin.plaques import paint_plaque
from models.skin.real_lesions import held_out, write_pasted_set
from models.skin.synthetic import generate_scene
from models.skin.task_data import load_task_data
from models.skin.tasks import TASKS
from tests.datasets import PAD_UFES_SUBSET


def test_a_plaque_is_painted_on_skin_redder_than_the_skin_around_it() -> None:
    rng = np.random.default_rng(4)
    scene = generate_scene(rng, size=128, body_part="upper-limb", condition=None)
    assert scene.skin_mask is not None
    pixels, mask = paint_plaque(scene.image, scene.skin_mask, rng)
    assert mask.any() and not (mask & ~scene.skin_mask).any()
    changed = np.any(pixels != scene.image, axis=-1)
    assert not changed[~scene.skin_mask].any()  # nothing off the skin
    redness = pixels[..., 0].astype(float) - pixels[..., 1]
    before = scene.image[..., 0].astype(float) - scene.image[..., 1]
    assert redness[mask].mean() > before[mask].mean() + 8


def test_no_skin_no_plaque() -> None:
    rng = np.random.default_rng(1)
    image = np.full((64, 64, 3), 120, dtype=np.uint8)
    pixels, mask = paint_plaque(image, np.zeros((64, 64), dtype=bool), rng)
    assert not mask.any() and np.array_equal(pixels, image)


def _training_pad_csv(folder: Path) -> Path:
    """Two subset cut-outs under made-up patients that the split lets into training."""
    (folder / "images").mkdir(parents=True)
    with (PAD_UFES_SUBSET / "labels.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))[:2]
    free = (f"PAT_{n}" for n in range(5000, 6000) if not held_out(f"PAT_{n}"))
    for row in rows:
        shutil.copy(PAD_UFES_SUBSET / row["file"], folder / row["file"])
        row["patient_id"] = next(free)
    with (folder / "labels.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder / "labels.csv"


def _digest(folder: Path, rows: list[dict[str, str]]) -> list[str]:
    return [hashlib.sha256((folder / row["image"]).read_bytes()).hexdigest() for row in rows]


def test_the_training_set_adds_plaques_labelled_rash_and_keeps_the_rest_as_it_was(tmp_path: Path) -> None:
    pad = _training_pad_csv(tmp_path / "pad")
    without = write_pasted_set(tmp_path / "without", pad, count=3, pasted=3, seed=2, size=96)
    with_plaques = write_pasted_set(tmp_path / "with", pad, count=3, pasted=3, seed=2, size=96, plaques=6)
    before = list(csv.DictReader(without.open(newline="")))
    after = list(csv.DictReader(with_plaques.open(newline="")))
    assert len(after) == len(before) + 6
    # The generated and pasted photos are the same files: a set without plaques is reproduced.
    assert _digest(tmp_path / "without", before) == _digest(tmp_path / "with", after[: len(before)])
    plaques = after[len(before) :]
    assert all(row["image"].startswith("plaques/images/") for row in plaques)
    classes = [set(np.unique(np.asarray(Image.open(tmp_path / "with" / row["mask"])))) for row in plaques]
    assert all(1 in found for found in classes)  # every plaque is marked rash...
    assert any(2 in found for found in classes)  # ...and some have a real growth beside them
    provenance = json.loads((tmp_path / "with" / GENERATED_MARKER).read_text())
    assert provenance["plaques"] == 6 and "--plaques 6" in provenance["command"]


def test_the_card_says_how_many_photos_hold_a_real_lesion_and_how_many_a_plaque(tmp_path: Path) -> None:
    pad = _training_pad_csv(tmp_path / "pad")
    labels = write_pasted_set(tmp_path / "set", pad, count=3, pasted=3, seed=2, size=64, plaques=4)
    spec = TASKS["lesion"]
    data = load_task_data(spec, labels, None)
    request = PackageRequest(tmp_path / "pkg", "pkg", "0.0.1", "photomarker train lesion", "a test set")
    manifest = skin_manifest(spec, request, data, 8, 2, Calibration(), AbstentionPolicy(), {}, 1)
    summary = manifest.training_data.summary
    assert "10 photos" in summary and "3 of them hold a real PAD-UFES-20 lesion cut-out" in summary
    assert "4 more show a painted eczema plaque" in summary
    assert manifest.training_data.source == "mixed" and manifest.reference_only
