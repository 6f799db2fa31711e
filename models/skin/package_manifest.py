"""What a trained skin package's manifest says: its task, input, network, data, figures and limits.

The training-data line is built from the generator's provenance (``photomarker generate skin``
and ``models.skin.real_lesions``), so the card cites the real lesions pasted in and says how
many photos hold one, without anyone typing it.
"""

from __future__ import annotations

import numpy as np

from models.manifest import (
    AbstentionPolicy,
    ArchitectureSpec,
    Calibration,
    Evaluation,
    InputSpec,
    ModelManifest,
    OutputSpec,
    StartingWeights,
    TrainingData,
    TtaSpec,
    WeightsSpec,
)
from models.registry import PENDING_SHA256, PackageRequest
from models.skin.labels import key_of
from models.skin.task_data import TaskData
from models.skin.tasks import LESION_CROP, TaskSpec, tta_views


def skin_manifest(
    spec: TaskSpec,
    request: PackageRequest,
    data: TaskData,
    n_train: int,
    n_validation: int,
    calibration: Calibration,
    abstention: AbstentionPolicy,
    metrics: dict[str, float],
    members: int,
    starting: StartingWeights | None = None,
) -> ModelManifest:
    reference = data.source == "synthetic"
    counted = label_counts(spec, data)
    # Real lesions pasted into the generated photos (models.skin.real_lesions): cited, and said.
    real = data.generated.get("real_lesions") if data.generated else None
    real_part = real if isinstance(real, dict) else None
    pasted = (
        f"; {real_part['pasted']} of them hold a real {real_part['source']} lesion cut-out "
        f"({real_part['images']} images of {real_part['patients']} patients; held out: "
        f"{real_part['held_out']}), {real_part['licence']}"
        if real_part
        else ""
    )
    plaques = data.generated.get("plaques") if data.generated else None
    if isinstance(plaques, int) and plaques > 0:  # models.skin.real_lesions pastes into half of them
        pasted += f"; {plaques} more show a painted eczema plaque, about half with a real cut-out beside it"
    return ModelManifest(
        name=request.name,
        version=request.version,
        display_name=f"{spec.description}{' (reference — not for clinical use)' if reference else ''}",
        task=spec.registry_task,
        task_description=spec.description,
        output=OutputSpec(kind=spec.objective, levels=spec.levels),
        labels=data.labels,
        input=InputSpec(
            size=spec.serving_size,
            trained_size=spec.input_size if spec.serving_size != spec.input_size else None,
            normalisation=spec.normalisation,
            resize="squash",
            region="lesion" if spec.sees == LESION_CROP else "photo",
        ),
        architecture=ArchitectureSpec(
            name=spec.architecture,
            params=dict(spec.params),
            ensemble_size=members,
            cam_layer=spec.cam_layer or "blocks.2",
        ),
        weights=WeightsSpec(sha256=PENDING_SHA256),
        starting_weights=starting,
        training_data=TrainingData(
            summary=f"{len(data.rows)} photos from {request.data_description} ({counted})"
            + (f"; generated with `{data.generated['command']}`" if data.generated else "")
            + pasted
            + f"; trained with `{request.command}`",
            source=("mixed" if real_part else "synthetic") if reference else "real",
            n_train=n_train,
            n_validation=n_validation,
            citations=(str(real_part["citation"]),) if real_part else (),
        ),
        evaluation=Evaluation(
            metrics=metrics,
            split="patient-grouped validation split (the photos also used for calibration)",
            n=n_validation,
            command=request.command,
        ),
        intended_use=(
            "Reference model for exercising and testing the Photomarker skin pipeline on generated photos"
            + (" and on real lesions pasted into them" if real_part else "")
            + ". Not for clinical use: trained "
            + (
                "mostly on generated cartoons of skin disease"
                if real_part
                else "only on generated cartoons of skin disease"
            )
            + "."
            if reference
            else f"Research evaluation of {spec.description.lower()} on the site's own photos."
        ),
        limitations=(
            (
                "Generated photos, with real lesion cut-outs pasted into some; real skin around a lesion, "
                "cameras, light and rashes look different. Real lesions are scored only as cut-outs pasted "
                "into generated photos, never in whole real photos."
                if real_part
                else "Generated photos only; real skin, cameras and diseases look different. Figures measure "
                "whether the pipeline learns what was planted, not clinical performance."
            )
            if reference
            else ""
        ),
        reference_only=reference,
        calibration=calibration,
        abstention=abstention,
        # The segmenter too sees all eight square symmetries: what it finds on a photo must not
        # depend on how the phone was held (the eczema-plaque candidate's did).
        tta=TtaSpec(views=tta_views(spec), jitter=0.0),
    )


def label_counts(spec: TaskSpec, data: TaskData) -> str:
    if spec.task == "lesion":
        with_lesion = int((data.targets.flatten(1) > 0).any(1).sum())
        return f"{with_lesion} with lesions, {len(data.rows) - with_lesion} without"
    if spec.task == "tis":
        totals = data.targets.sum(1)
        mean = float(totals.float().mean())
        return f"TIS total mean {mean:.1f}, range {int(totals.min())}–{int(totals.max())}"
    counts = np.bincount(data.targets.numpy(), minlength=len(data.labels))
    return ", ".join(f"{key_of(label)} {count}" for label, count in zip(data.labels, counts, strict=True))
