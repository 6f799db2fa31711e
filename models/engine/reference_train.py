"""Train, calibrate and evaluate the reference model, and write its package. Reference only.

    .venv/bin/python -m models.engine.reference_train [--out models/weights/reference-marker]
        [--recalibrate | --re-evaluate]

The reference model answers a non-clinical question with exact generated ground truth — is
there a blue marker dot on this skin patch? (``models.engine.reference_data``) — so that the
engine (registry, stages, TTA, ensemble, calibration, abstention, Grad-CAM) can be exercised end
to end without pretending to diagnose anything. Its task is not an analysis, so it can never
produce a TIS, skin-condition, tumour or Hb Observation.

Steps, all from fixed seeds: generate train/validation/test/OOD sets; train three small CNNs
(a deep ensemble: same data, different seeds); fit the training-feature Gaussian for the OOD
score; write the package; load it back through the registry and run the engine's own stages on
the validation set to fit the temperature and the abstention thresholds; then run them on the
test and OOD sets for the metrics that go into the manifest and the card. Nothing is typed in
by hand. Takes a few minutes on a laptop CPU.

Calibration and evaluation through the engine are in ``models.engine.reference_evaluation``; the
model card is written by ``models.engine.reference_card``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np
import torch
from safetensors.torch import load_file
from torch import Tensor
from torch.nn import functional

from models.engine.architectures import ReferenceCnn
from models.engine.ensemble import fit_feature_gaussian
from models.engine.execution import resolve_execution
from models.engine.gradcam import ActivationCapture
from models.engine.network import ensemble_state_dict
from models.engine.reference_card import model_card
from models.engine.reference_data import ReferenceSet, Uint8Image, as_photo, ood_photo, reference_set
from models.engine.reference_evaluation import calibrate, evaluate
from models.engine.stages import photo_array
from models.engine.tta import apply_geometry
from models.manifest import (
    ALL_TTA_VIEWS,
    ArchitectureSpec,
    Evaluation,
    InputSpec,
    LabelSpec,
    ModelManifest,
    Normalisation,
    OutputSpec,
    TrainingData,
    TtaSpec,
    WeightsSpec,
    load_manifest,
)
from models.registry import PENDING_SHA256, save_model_package

log = logging.getLogger("photomarker.reference_train")

NAME: Final = "reference-marker"
VERSION: Final = "1.0.0"
DEFAULT_OUT: Final = Path(__file__).resolve().parents[1] / "weights" / NAME
COMMAND: Final = f".venv/bin/python -m models.engine.reference_train --out models/weights/{NAME}"
PHOTO_SIZE: Final = 96  # generated photos; the engine resizes them to INPUT_SIZE like any photo
INPUT_SIZE: Final = 64
WIDTHS: Final = (12, 24, 32)
MEMBERS: Final = 3
EPOCHS: Final = 6
BATCH: Final = 64
SEEDS: Final = {"train": 101, "validation": 202, "test": 303, "ood": 404}
COUNTS: Final = {"train": 2400, "validation": 600, "test": 600, "ood": 200}
OOD_KINDS: Final = ("noise", "wall")
_GEOMETRIES: Final = ALL_TTA_VIEWS
IMAGENET: Final = Normalisation(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def base_manifest() -> ModelManifest:
    """Everything but the fitted and measured parts, which the steps below fill in."""
    return ModelManifest(
        name=NAME,
        version=VERSION,
        display_name="Reference marker-dot detector (reference — not for clinical use)",
        task="reference-marker",
        task_description="Reference task: is there a blue marker dot on a skin patch (not clinical)",
        output=OutputSpec(kind="classifier"),
        labels=(
            LabelSpec(code="reference-marker-absent", display="No blue marker dot"),
            LabelSpec(code="reference-marker-present", display="Blue marker dot present"),
        ),
        input=InputSpec(size=INPUT_SIZE, normalisation=IMAGENET, resize="center-crop"),
        architecture=ArchitectureSpec(
            name="reference-cnn", params={"widths": list(WIDTHS)}, ensemble_size=MEMBERS, cam_layer="blocks.2"
        ),
        weights=WeightsSpec(sha256=PENDING_SHA256),
        training_data=TrainingData(
            summary=f"{COUNTS['train']} generated {PHOTO_SIZE}-px skin patches (light to very dark tones, "
            "blotches, pores, grain, hairs, brown moles), half with a blue marker dot (bold to small and "
            "faded), half of all patches with a purple-grey decoy blot; models.engine.reference_data, seeds "
            + ", ".join(f"{split} {seed}" for split, seed in SEEDS.items()),
            source="synthetic",
            n_train=COUNTS["train"],
            n_validation=COUNTS["validation"],
            n_test=COUNTS["test"],
        ),
        evaluation=Evaluation(metrics={}, split="not yet evaluated", n=0, command=COMMAND),
        intended_use="Exercising and testing Photomarker's inference engine end to end (registry, "
        "TTA, ensembles, calibration, abstention, Grad-CAM) and its benchmark. Reference — not for "
        "clinical use; it answers no clinical question and produces no Observation.",
        limitations="Trained and evaluated on generated images only; real photos of skin with a real "
        "sticker were never seen. Its metrics say the engine works, not that anything is detected "
        "in patients.",
        reference_only=True,
        tta=TtaSpec(views=_GEOMETRIES, jitter=0.05),
    )


# --- training ------------------------------------------------------------------------------------


def network_inputs(images: Uint8Image, spec: InputSpec) -> Tensor:
    """(N, 3, S, S) in 0–1, made by the engine's own pre-processing so training sees what serving sees."""
    arrays = [photo_array(as_photo(image), spec)[0] for image in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255)


def _normalise(x01: Tensor) -> Tensor:
    mean = torch.tensor(IMAGENET.mean).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET.std).view(1, 3, 1, 1)
    return (x01 - mean) / std


def _augment(x01: Tensor, generator: torch.Generator) -> Tensor:
    """A random dihedral view per batch and colour jitter per photo: what TTA will show at test time."""
    pick = int(torch.randint(len(_GEOMETRIES), (1,), generator=generator))
    x01 = apply_geometry(x01, _GEOMETRIES[pick])
    n = x01.shape[0]
    gain = 1 + (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.2
    saturation = 1 + (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.2
    grey = x01.mean(1, keepdim=True)
    return ((grey + (x01 - grey) * saturation) * gain).clamp(0, 1)


def train_member(seed: int, x01: Tensor, labels: Tensor) -> ReferenceCnn:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    network = ReferenceCnn(2, WIDTHS)
    steps = EPOCHS * ((len(labels) + BATCH - 1) // BATCH)
    optimiser = torch.optim.AdamW(network.parameters(), lr=4e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=4e-3, total_steps=steps)
    network.train()
    for epoch in range(EPOCHS):
        order = torch.randperm(len(labels), generator=generator)
        total = 0.0
        for start in range(0, len(labels), BATCH):
            index = order[start : start + BATCH]
            loss = functional.cross_entropy(
                network(_normalise(_augment(x01[index], generator))), labels[index]
            )
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(index)
        log.info("member seed %d epoch %d: loss %.4f", seed, epoch + 1, total / len(labels))
    return network.eval()


def training_features(member: ReferenceCnn, x01: Tensor) -> Tensor:
    """Pooled ``blocks.2`` features of the untouched training photos (what the OOD score compares with)."""
    capture = ActivationCapture(member.blocks[2])
    capture.mode = "capture"
    pooled = []
    with torch.inference_mode():
        for start in range(0, len(x01), 256):
            member(_normalise(x01[start : start + 256]))
            pooled.append(capture.take().mean(dim=(2, 3)))
    capture.remove()
    return torch.cat(pooled)


# --- the whole run -------------------------------------------------------------------------------


def trained_state(manifest: ModelManifest, train: ReferenceSet) -> dict[str, Tensor]:
    """Train the members and fit the OOD Gaussian; one state dict for the package."""
    x01 = network_inputs(train.images, manifest.input)
    labels = torch.from_numpy(train.labels)
    members = [train_member(1000 + index, x01, labels) for index in range(MEMBERS)]
    gaussians = [fit_feature_gaussian(training_features(m, x01), labels, 2) for m in members]
    ood_stats = (torch.stack([g[0] for g in gaussians]), torch.stack([g[1] for g in gaussians]))
    return ensemble_state_dict([m.state_dict() for m in members], ood_stats)


def build(out: Path, *, retrain: bool = True, recalibrate: bool = True) -> ModelManifest:
    """Train (or, with ``retrain=False``, reuse the package's weights), calibrate, evaluate, write.

    ``recalibrate=False`` (only without ``retrain``) keeps the package's calibration and
    abstention thresholds too, and only evaluates again.
    """
    if retrain and not recalibrate:
        raise ValueError("new weights need a new calibration")
    started = time.perf_counter()
    execution = resolve_execution("cpu")  # sets the thread count; training is CPU-sized on purpose
    log.info("generating data (%s threads)", execution.threads)
    splits = ("train", "validation", "test") if retrain else ("validation", "test")
    sets = {split: reference_set(SEEDS[split], COUNTS[split], PHOTO_SIZE) for split in splits}
    rng = np.random.default_rng(SEEDS["ood"])
    half = COUNTS["ood"] // 2
    ood = {kind: np.stack([ood_photo(rng, PHOTO_SIZE, kind) for _ in range(half)]) for kind in OOD_KINDS}
    manifest = base_manifest()
    state = trained_state(manifest, sets["train"]) if retrain else load_file(out / manifest.weights.file)
    if recalibrate:
        save_model_package(out, manifest, state, model_card)
        calibration, policy = calibrate(out, sets["validation"], SEEDS["validation"])
    else:
        kept = load_manifest(out)
        calibration, policy = kept.calibration, kept.abstention
    manifest = manifest.model_copy(update={"calibration": calibration, "abstention": policy})
    save_model_package(out, manifest, state, model_card)
    metrics = evaluate(out, sets["test"], ood)
    evaluation = Evaluation(
        metrics=metrics,
        split=f"generated test set (seed {SEEDS['test']}) and OOD set (seed {SEEDS['ood']})",
        n=COUNTS["test"],
        command=COMMAND,
    )
    final = save_model_package(out, manifest.model_copy(update={"evaluation": evaluation}), state, model_card)
    log.info("wrote %s in %.0f s: %s", out, time.perf_counter() - started, metrics)
    return final


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="package directory to write")
    keep = parser.add_mutually_exclusive_group()
    keep.add_argument(
        "--recalibrate",
        action="store_true",
        help="keep the weights already in --out; redo calibration, evaluation, manifest and card",
    )
    keep.add_argument(
        "--re-evaluate",
        action="store_true",
        help="keep the weights, calibration and thresholds already in --out; redo evaluation and card",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    if args.out.name != NAME:
        parser.error(f"the package directory must be named {NAME}")
    keep_weights = args.recalibrate or args.re_evaluate
    build(args.out, retrain=not keep_weights, recalibrate=not args.re_evaluate)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
