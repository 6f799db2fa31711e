"""The conjunctiva segmenter's package: its manifest and the model card written beside it.

Every figure in the manifest and the card comes from the training run that calls
:func:`save_segmenter_package` (``photomarker train hb-localiser``): the strip split, the
validation table the confidence rule was chosen on and the held-out scores. ``photomarker
evaluate hb-localiser --record`` (:func:`record_evaluation`) scores the shipped weights on the
same held-out composites again and writes those figures, with their CIs, in their place.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Final, Protocol

from models.engine.network import ensemble_state_dict
from models.hb.dataset import STRICT_GROUPING_RULE
from models.hb.package import CITATION
from models.hb.segmenter import (
    ARCHITECTURE,
    CAM_LAYER,
    INPUT_WIDTH,
    MIN_CONFIDENCE,
    TASK,
    WIDTHS,
    ConjunctivaUNet,
)
from models.hb.segmenter_composites import POSITIVE_SHARE, SEEDS, StripSplit
from models.hb.segmenter_scores import RuleChoice, SegmenterReport
from models.manifest import (
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
    card_date,
    save_manifest,
)
from models.registry import PENDING_SHA256, PackageRequest, save_model_package

REFERENCE_LABEL: Final = "reference — trained on generated composites"


class _CardConfig(Protocol):
    """The training settings the manifest and card report (satisfied by ``SegmenterConfig``).

    A protocol rather than ``SegmenterConfig`` itself: that lives in
    ``models.hb.segmenter_training``, which imports this module.
    """

    @property
    def epochs(self) -> int: ...

    @property
    def batch(self) -> int: ...

    @property
    def train_scenes(self) -> int: ...

    @property
    def held_out_scenes(self) -> int: ...

    @property
    def validation_scenes(self) -> int: ...


def save_segmenter_package(
    request: PackageRequest,
    network: ConjunctivaUNet,
    report: SegmenterReport,
    rule: RuleChoice,
    split: StripSplit,
    config: _CardConfig,
) -> ModelManifest:
    manifest = ModelManifest(
        name=request.name,
        version=request.version,
        display_name=f"Conjunctiva segmenter, tiny U-Net ({REFERENCE_LABEL})",
        task=TASK,
        task_description="Finds the palpebral conjunctiva in a whole photo of a pulled-down lower eyelid",
        output=OutputSpec(kind="classifier"),
        labels=(
            LabelSpec(code="background", display="Not conjunctiva"),
            LabelSpec(code="palpebral-conjunctiva", display="Palpebral conjunctiva"),
        ),
        input=InputSpec(
            size=INPUT_WIDTH,
            normalisation=Normalisation(mean=(0.5, 0.5, 0.5), std=(1.0, 1.0, 1.0)),
            resize="squash",
        ),
        architecture=ArchitectureSpec(
            name=ARCHITECTURE, params={"widths": list(WIDTHS)}, ensemble_size=1, cam_layer=CAM_LAYER
        ),
        weights=WeightsSpec(sha256=PENDING_SHA256),
        training_data=TrainingData(
            summary=f"{config.train_scenes} generated eyelid composites ({POSITIVE_SHARE:.0%} with a real "
            f"CP-AnemiC strip pasted in as the conjunctiva, the rest without any) from {len(split.train)} "
            f"strips in {split.groups_train} groups of {request.data_description}; models.hb.scenes, seed "
            f"{SEEDS['train']}",
            source="mixed",
            n_train=config.train_scenes,
            n_validation=0,
            n_test=config.held_out_scenes,
            citations=(CITATION,),
        ),
        evaluation=Evaluation(
            metrics=manifest_metrics(report),
            split=f"{config.held_out_scenes} held-out composites (seed {SEEDS['held-out']}) made from "
            f"{len(split.held_out)} strips in {split.groups_held_out} CV groups that training never saw",
            n=config.held_out_scenes,
            command=request.command,
        ),
        intended_use="Finding the palpebral conjunctiva in a whole eyelid photo so the Hb estimator reads "
        f"only the tissue. {REFERENCE_LABEL[0].upper()}{REFERENCE_LABEL[1:]} — not for clinical use; when it "
        "is not confident the conjunctiva counts as not found and the photo is to be retaken.",
        limitations="Never trained or scored on a real whole-eyelid photo: the tissue is real but the eye, "
        "lid, skin, lashes and light around it are drawn. How it does on real phone photos is unknown. "
        "Photos are squashed to 96×128, so portrait photos distort the eyelid's shape.",
        reference_only=True,
        tta=TtaSpec(views=("identity",), jitter=0.0),
    )
    tensors = ensemble_state_dict([network.state_dict()])
    return save_model_package(
        request.directory, manifest, tensors, lambda final: render_card(final, report, rule, split, config)
    )


def manifest_metrics(report: SegmenterReport) -> dict[str, float]:
    """The held-out figures (CIs as ``…_low`` / ``…_high``) and the confidence rule, for the manifest."""
    metrics = {
        f"{method.replace('+', '_')}_{key}": float(value)
        for method, score in report.scores.items()
        for key, value in score.items()
    }
    metrics["min_confidence"] = MIN_CONFIDENCE
    return metrics


def record_evaluation(
    directory: Path,
    manifest: ModelManifest,
    report: SegmenterReport,
    rule: RuleChoice,
    split: StripSplit,
    config: _CardConfig,
    command: str,
) -> ModelManifest:
    """Put re-scored held-out figures (``photomarker evaluate hb-localiser --record``) into the package.

    The weights are untouched. The manifest keeps the training command first and adds ``command``
    below it; the card is written again, dated as before, and says which figures the evaluation gave.
    """
    training_command = manifest.evaluation.command.split("\n")[0]
    updated = manifest.model_copy(
        update={
            "evaluation": manifest.evaluation.model_copy(
                update={"metrics": manifest_metrics(report), "command": f"{training_command}\n{command}"}
            )
        }
    )
    save_manifest(updated, directory)
    card_path = directory / updated.card
    card_path.write_text(
        render_card(updated, report, rule, split, config, card_date(card_path)), encoding="utf-8"
    )
    return updated


def render_card(
    manifest: ModelManifest,
    report: SegmenterReport,
    rule: RuleChoice,
    split: StripSplit,
    config: _CardConfig,
    generated_on: date | None = None,
) -> str:
    training_command, *evaluation_commands = manifest.evaluation.command.split("\n")
    made = f"on {(generated_on or date.today()).isoformat()}"
    provenance = (
        f"Trained by `{training_command}` {made}. The held-out figures and their CIs are the shipped "
        f"weights' as scored by `{evaluation_commands[-1]}`; every other figure comes from the training run."
        if evaluation_commands
        else f"Generated by `{training_command}` {made}; every figure below comes from that run."
    )
    return "\n".join(
        [
            f"# {manifest.display_name} — `{manifest.name}` {manifest.version}",
            "",
            "> **Reference — trained on generated composites; not for clinical use.** The tissue is real "
            "(CP-AnemiC strips); everything around it is drawn.",
            "",
            provenance,
            "",
            "## Intended use",
            "",
            manifest.intended_use,
            "",
            "## What it does",
            "",
            "Finds the palpebral conjunctiva in a whole photo of a pulled-down lower eyelid, for the Hb "
            "estimator (`hb-conjunctiva`) to read. The photo is squashed to 96×128; the largest component "
            "with probability > 0.5 is kept when it covers ≥ 1 % of the frame and its mean probability is "
            f'≥ {MIN_CONFIDENCE:g}; otherwise the network\'s answer is "not found". The classical colour '
            "localiser (`models.hb.localise`) is the fallback when no segmenter is installed; it is not "
            "asked when the network is unsure (see the validation table below). A photo whose "
            "conjunctiva is not found gets a photo-quality result that says so (retake) and no Hb "
            "value. Pre-cropped strips (transparent background) skip both methods.",
            "",
            "## Training data and model",
            "",
            f"- {CITATION}",
            f"- {split.rows} labelled rows → {len(split.train) + len(split.held_out)} distinct strips "
            f"(the Hb training's duplicate rule), split by whole CV groups ({STRICT_GROUPING_RULE}): "
            f"{len(split.train)} strips / {split.groups_train} groups for training, "
            f"{len(split.held_out)} strips / {split.groups_held_out} groups held out.",
            f"- {config.train_scenes} training composites (`models.hb.scenes`, seed {SEEDS['train']}): "
            f"{POSITIVE_SHARE:.0%} with a strip scaled, rotated and mirrored into a drawn eyelid scene (skin "
            "tones very light to very dark, eyeball and iris above, lid margin and lashes below, fingers, "
            "walls, red skin blotches, colour casts, gradients, vignetting, blur, noise, JPEG; a third "
            "are close-ups with a thick lining cut off at the frame's sides); the rest without "
            "conjunctiva (an eye with the lid not pulled down, red skin, a limb with eczema in front "
            "of a wall, walls). The strip's alpha channel is the ground-truth mask.",
            f"- Tiny U-Net, widths {list(WIDTHS)}, {manifest.weights.parameters} parameters; Dice + BCE, "
            f"AdamW with a one-cycle schedule, {config.epochs} epochs, batch {config.batch}, mirror images, "
            "one CPU thread.",
            "- Starting weights: none; trained from random initialisation.",
            f"- Weights SHA-256 `{manifest.weights.sha256}`.",
            "",
            "## Choosing the confidence threshold and the fallback rule",
            "",
            f"On {config.validation_scenes} validation composites (seed {SEEDS['validation']}) made from the "
            '*training* strips, so the held-out figures below stay untouched by the choice. "With '
            'fallback" hands every unsure photo (a component ≥ 1 % of the frame below the threshold) to '
            f"the classical localiser. Shipped: threshold {MIN_CONFIDENCE:g}, no fallback on low "
            "confidence.",
            "",
            "```",
            rule.format_table(),
            "```",
            "",
            "## Held-out composites",
            "",
            manifest.evaluation.split + "; the classical localiser scored on the same photos, and the "
            "localiser as deployed (`network+fallback`: the classical method only when no network is "
            "installed, so equal to the network here). Detected = IoU ≥ 0.5 with the true mask (a miss "
            "counts as IoU 0); false on neg. = any mask on a photo without conjunctiva.",
            "",
            "```",
            report.format_table(),
            "```",
            "",
            "## Limitations",
            "",
            manifest.limitations,
            "",
            "## Reproduce",
            "",
            "```",
            training_command,
            f"photomarker evaluate hb-localiser --data PATH/labels.csv --model {manifest.name}",
            "```",
            "",
        ]
    )
