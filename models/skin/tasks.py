"""What each skin task trains: its input, network, outputs, registry task and package name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from models.engine.pretrained import INPUT_NORMALISATION
from models.manifest import ALL_TTA_VIEWS, LabelSpec, Normalisation, TtaView
from models.skin.dataset import SkinTask
from models.skin.labels import AD_COMPLICATIONS, BODY_PARTS
from models.skin.networks import PRETRAINED_LESION_ARCHITECTURE, PRETRAINED_LESION_CAM_LAYER
from models.skin.pipeline import BODY_PART_TASK, LESION_TASK
from models.skin.training import NORMALISATION, Objective

WHOLE_PHOTO: Final = "whole photo"
LESION_CROP: Final = "lesion crop"


@dataclass(frozen=True)
class TaskSpec:
    task: SkinTask
    registry_task: str  # the manifest's task (an analysis name where the package serves one)
    description: str
    objective: Objective
    input_size: int
    sees: str  # WHOLE_PHOTO or LESION_CROP
    architecture: str
    cam_layer: str | None
    default_name: str
    labels: tuple[LabelSpec, ...] = ()  # empty: taken from the manifest's column (diagnosis)
    levels: int | None = None
    dihedral: bool = True
    params: tuple[tuple[str, str], ...] = ()  # the architecture's parameters (the manifest keeps them)
    # The ImageNet encoder training starts from (models.engine.pretrained), None: from scratch.
    pretrained: str | None = None
    learning_rate: float | None = None  # None: SkinTrainingConfig's
    # How pixels reach the network (the manifest keeps it). An EfficientNet-Lite classifier sees
    # them as ImageNet training did; the lesion U-Net converts inside, so keeps the skin default.
    normalisation: Normalisation = NORMALISATION
    # The side the analysis feeds a fully convolutional network, where larger than the training
    # side (models.manifest.InputSpec.trained_size); None: served at ``input_size``.
    served_size: int | None = None

    @property
    def serving_size(self) -> int:
        return self.served_size or self.input_size


# Every classifier is timm's EfficientNet-Lite0 fine-tuned from ImageNet (models.engine.pretrained).
PRETRAINED_CLASSIFIER: Final = "efficientnet_lite0"
# Grad-CAM at stride 16 (6×6 on a 96-px input): the last stage (blocks.6) is 3×3 there.
PRETRAINED_CAM_LAYER: Final = "blocks.4"
FROM_IMAGENET: Final[dict[str, Any]] = {
    "pretrained": PRETRAINED_CLASSIFIER,
    "learning_rate": 1e-3,
    "normalisation": INPUT_NORMALISATION,
}

LESION_LABELS: Final = (
    LabelSpec(code="no-lesion", display="No lesion"),
    LabelSpec(code="rash-lesion", display="Rash (inflammatory) lesion"),
    LabelSpec(code="tumour-lesion", display="Tumour-like growth"),
)
TIS_LABELS: Final = (
    LabelSpec(code="tis-erythema", display="Erythema (0–3)"),
    LabelSpec(code="tis-oedema-papulation", display="Oedema/papulation (0–3)"),
    LabelSpec(code="tis-excoriation", display="Excoriation (0–3)"),
)

TASKS: Final[dict[SkinTask, TaskSpec]] = {
    "body-part": TaskSpec(
        "body-part",
        BODY_PART_TASK,
        "Body part shown in a skin photo (or no skin)",
        "classifier",
        96,
        WHOLE_PHOTO,
        PRETRAINED_CLASSIFIER,
        PRETRAINED_CAM_LAYER,
        "skin-body-part-reference",
        BODY_PARTS,
        dihedral=False,
        **FROM_IMAGENET,
    ),
    "lesion": TaskSpec(
        "lesion",
        LESION_TASK,
        "Lesion extraction: rash lesions and tumour-like growths, per pixel",
        "segmenter",
        128,  # not 96: a lesion 5 % of the photo's side is 6 pixels across on the map
        WHOLE_PHOTO,
        PRETRAINED_LESION_ARCHITECTURE,
        PRETRAINED_LESION_CAM_LAYER,
        "skin-lesion-reference",
        LESION_LABELS,
        params=(("encoder", "efficientnet_lite0"),),
        pretrained="efficientnet_lite0",
        learning_rate=1e-3,
        # Served at 160: a lesion 5 % of the side spans 8 map pixels, not 6. On held-out PAD patients'
        # small lesions pasted into skin, found 0.84 at 128 px and 0.92 at 160 (same weights, 2.1.0).
        served_size=160,
    ),
    "tis": TaskSpec(
        "tis",
        "tis",
        "Three Item Severity items (erythema, oedema/papulation, excoriation, 0–3) of an eczema lesion",
        "ordinal",
        96,  # not 64: papules and scratch marks are a few pixels across in a crop
        LESION_CROP,
        # Still the small CNN from scratch: fine-tuned from ImageNet (`--epochs 20 --members 1`)
        # it scored the total better (r 0.64 vs 0.59) but erythema worse (MAE 0.47 vs 0.25) on the
        # held-out generated photos, so it was not adopted.
        "reference-cnn",
        None,
        "skin-tis-reference",
        TIS_LABELS,
        levels=4,
    ),
    "ad-complications": TaskSpec(
        "ad-complications",
        "skin-condition",
        "Atopic dermatitis vs its complications (impetigo, eczema herpeticum, mycosis fungoides) on a lesion",
        "classifier",
        96,  # not 64: an ImageNet encoder's last map would be 2×2
        LESION_CROP,
        PRETRAINED_CLASSIFIER,
        PRETRAINED_CAM_LAYER,
        "skin-ad-complications-reference",
        AD_COMPLICATIONS,
        **FROM_IMAGENET,
    ),
    "diagnosis": TaskSpec(
        "diagnosis",
        "skin-diagnosis",
        "N-class skin-disease diagnosis of a lesion (top-1/3/5)",
        "classifier",
        96,
        LESION_CROP,
        PRETRAINED_CLASSIFIER,
        PRETRAINED_CAM_LAYER,
        "skin-diagnosis-reference",
        **FROM_IMAGENET,
    ),
}


def tta_views(spec: TaskSpec) -> tuple[TtaView, ...]:
    return ALL_TTA_VIEWS if spec.dihedral else ("identity", "hflip")
