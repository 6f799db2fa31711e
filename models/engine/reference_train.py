"""Train, calibrate and evaluate the reference model, and write its package. Reference only.

    .venv/bin/python -m models.engine.reference_train [--out models/weights/reference-marker]

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
from models.engine.calibration import (
    averaged_probabilities,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    quantile_threshold,
)
from models.engine.ensemble import aggregate_classifier, fit_feature_gaussian, mahalanobis_score
from models.engine.execution import resolve_execution
from models.engine.gradcam import ActivationCapture
from models.engine.network import ensemble_state_dict
from models.engine.options import EngineOptions
from models.engine.reference_data import (
    LABEL_PRESENT,
    ReferenceSet,
    Uint8Image,
    as_photo,
    ood_photo,
    reference_set,
)
from models.engine.stages import PostProcess, Predict, Prediction, PreProcess, RawOutputs, photo_array
from models.engine.tta import apply_geometry
from models.evaluation.metrics import accuracy, auroc
from models.manifest import (
    ALL_TTA_VIEWS,
    AbstentionPolicy,
    ArchitectureSpec,
    Calibration,
    Evaluation,
    InputSpec,
    LabelSpec,
    ModelManifest,
    Normalisation,
    OutputSpec,
    TrainingData,
    TtaSpec,
    WeightsSpec,
)
from models.model_stages import model_stages
from models.registry import PENDING_SHA256, ModelRegistry, save_model_package
from models.results import ModelInfo

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
# Abstention thresholds: this quantile of the validation photos' scores (≈1 % abstain per test) …
ABSTAIN_QUANTILE: Final = 0.99
# … but a spread threshold never below this: views that agree within 5 probability points agree.
MIN_SPREAD_THRESHOLD: Final = 0.05
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


# --- calibration and evaluation through the engine -----------------------------------------------


def raw_outputs(stages: tuple[PreProcess, Predict, PostProcess], images: Uint8Image) -> RawOutputs:
    """Pre-process and predict ``images`` in chunks; outputs joined along the photo axis."""
    pre, predict, _ = stages
    parts = [
        predict(pre([as_photo(image) for image in images[start : start + 32]]))
        for start in range(0, len(images), 32)
    ]
    return RawOutputs(
        outputs=torch.cat([part.outputs for part in parts], dim=2),
        features=torch.cat([part.features for part in parts], dim=1),
        cams=None,
        boxes=tuple(box for part in parts for box in part.boxes),
    )


def engine_stages(directory: Path) -> tuple[PreProcess, Predict, PostProcess]:
    """The package as the registry loads it (hash checked), through the engine's composition."""
    loaded = ModelRegistry([directory.parent]).load(directory.name)
    options = EngineOptions(device="cpu", heatmaps=False)
    pre, predict, post = model_stages(loaded, resolve_execution("cpu"), options)
    if not (isinstance(pre, PreProcess) and isinstance(predict, Predict) and isinstance(post, PostProcess)):
        raise TypeError("model_stages no longer returns pre_process, predict, post_process")
    return pre, predict, post


def calibrate(directory: Path, validation: ReferenceSet) -> tuple[Calibration, AbstentionPolicy]:
    pre, predict, post = engine_stages(directory)
    raw = raw_outputs((pre, predict, post), validation.images)
    labels = torch.from_numpy(validation.labels)
    fit = fit_temperature(raw.outputs, labels)
    spread = aggregate_classifier(raw.outputs, fit.temperature).spread.numpy()
    if post.ood is None:
        raise ValueError("the package has no OOD statistics to calibrate")
    ood = mahalanobis_score(raw.features, *post.ood).numpy()
    described = f"validation set ({len(labels)} generated patches, seed {SEEDS['validation']}), all TTA views"
    calibration = Calibration(
        temperature=round(fit.temperature, 6),
        fitted_on=described,
        nll_before=round(fit.nll_before, 6),
        nll_after=round(fit.nll_after, 6),
    )
    policy = AbstentionPolicy(
        max_spread=round(max(quantile_threshold(spread, ABSTAIN_QUANTILE), MIN_SPREAD_THRESHOLD), 6),
        max_ood=round(quantile_threshold(ood, ABSTAIN_QUANTILE), 6),
        ood_method="feature-mahalanobis",
        rule=f"each threshold is the {ABSTAIN_QUANTILE:.0%} quantile of that score on the {described} "
        f"(the spread threshold at least {MIN_SPREAD_THRESHOLD:g})",
    )
    return calibration, policy


def evaluate(directory: Path, test: ReferenceSet, ood: dict[str, Uint8Image]) -> dict[str, float]:
    stages = engine_stages(directory)
    raw = raw_outputs(stages, test.images)
    predictions = stages[2](raw)
    labels = test.labels
    probs = np.array([p.probabilities for p in predictions], dtype=np.float64)
    abstained = np.array([p.abstention is not None for p in predictions])
    predicted = probs.argmax(1)
    uncalibrated = averaged_probabilities(raw.outputs).numpy()
    metrics = {
        "test_accuracy": float(accuracy(labels.astype(np.float64), predicted.astype(np.float64))),
        "test_auroc": float(auroc((labels == LABEL_PRESENT).astype(np.float64), probs[:, LABEL_PRESENT])),
        "test_nll": negative_log_likelihood(torch.from_numpy(probs), torch.from_numpy(labels)),
        "test_ece": expected_calibration_error(probs, labels),
        "test_ece_before_temperature": expected_calibration_error(uncalibrated, labels),
        "test_abstention_rate": float(abstained.mean()),
        "test_accuracy_when_not_abstaining": float(
            accuracy(labels[~abstained].astype(np.float64), predicted[~abstained].astype(np.float64))
        ),
        "test_mean_tta_spread": float(np.mean([p.spread for p in predictions])),
    }
    for kind, images in ood.items():
        ood_predictions: list[Prediction] = stages[2](raw_outputs(stages, images))
        metrics[f"ood_{kind}_abstention_rate"] = float(
            np.mean([p.abstention is not None for p in ood_predictions])
        )
    return {key: round(value, 4) for key, value in metrics.items()}


# --- the model card ------------------------------------------------------------------------------


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def model_card(manifest: ModelManifest) -> str:
    info: ModelInfo = manifest.model_info()
    metrics = "\n".join(f"| `{key}` | {value:g} |" for key, value in manifest.evaluation.metrics.items())
    calibration, policy = manifest.calibration, manifest.abstention
    spec = manifest.architecture
    architecture = (
        f"`{spec.name}` {spec.params}, ensemble of {spec.ensemble_size}; Grad-CAM on `{spec.cam_layer}`"
    )
    return f"""# {manifest.display_name}

> **Reference — not for clinical use.** Trained only on generated images. It answers a
> non-clinical question and Photomarker never turns its output into an Observation.

| | |
|---|---|
| Name / version | `{info.name}` {info.version} |
| Task | {manifest.task_description} |
| Weights | `{manifest.weights.file}`, {manifest.weights.parameters} values, SHA-256 `{info.weights_sha256}` |
| Architecture | {architecture} |
| Input | {manifest.input.size}×{manifest.input.size} px, {manifest.input.resize}, ImageNet normalisation |

## Intended use
{manifest.intended_use}

## Training data
{manifest.training_data.summary}. Train {manifest.training_data.n_train}, validation
{manifest.training_data.n_validation}, test {manifest.training_data.n_test}. No photo of a person was used.

## Calibration and abstention
Temperature {calibration.temperature:g}, fitted on the {calibration.fitted_on}
(NLL {_number(calibration.nll_before)} → {_number(calibration.nll_after)}).
Test-time views: {", ".join(manifest.tta.views)}, plus colour jitter ±{manifest.tta.jitter:g}.
The engine abstains when the spread over members × views exceeds {_number(policy.max_spread)} or the
out-of-distribution score ({policy.ood_method}) exceeds {_number(policy.max_ood)}; {policy.rule}.

## Metrics ({manifest.evaluation.split}, n = {manifest.evaluation.n})
| Metric | Value |
|---|---|
{metrics}

`ood_noise` is RGB noise and `ood_wall` blank painted walls (white, grey, beige, pale blue), never
seen in training. Reproduce with `{manifest.evaluation.command}`.

## Limitations
{manifest.limitations}
"""


# --- the whole run -------------------------------------------------------------------------------


def trained_state(manifest: ModelManifest, train: ReferenceSet) -> dict[str, Tensor]:
    """Train the members and fit the OOD Gaussian; one state dict for the package."""
    x01 = network_inputs(train.images, manifest.input)
    labels = torch.from_numpy(train.labels)
    members = [train_member(1000 + index, x01, labels) for index in range(MEMBERS)]
    gaussians = [fit_feature_gaussian(training_features(m, x01), labels, 2) for m in members]
    ood_stats = (torch.stack([g[0] for g in gaussians]), torch.stack([g[1] for g in gaussians]))
    return ensemble_state_dict([m.state_dict() for m in members], ood_stats)


def build(out: Path, *, retrain: bool = True) -> ModelManifest:
    """Train (or, with ``retrain=False``, reuse the package's weights), calibrate, evaluate, write."""
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
    save_model_package(out, manifest, state, model_card)
    calibration, policy = calibrate(out, sets["validation"])
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
    parser.add_argument(
        "--recalibrate",
        action="store_true",
        help="keep the weights already in --out; redo calibration, evaluation, manifest and card",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    if args.out.name != NAME:
        parser.error(f"the package directory must be named {NAME}")
    build(args.out, retrain=not args.recalibrate)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
