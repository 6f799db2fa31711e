"""The skin analysis as the worker runs it, top to bottom:

1. **body part** — the body-part classifier on the whole photo (a ``Media.bodySite`` the sender
   gave still wins when the Observation is written); "not skin" stops the skin analyses;
2. **lesion extraction** — the lesion segmenter on the whole photo: each connected region of
   "rash" or "tumour-like growth" becomes a square crop at the photo's full decoded resolution,
   so a lesion photographed from across the room is cut out as well as a close-up (the Tohoku
   lesion extraction); no region → "no lesion found", never a score of healthy skin;
3. per crop, the task's network: TIS (three ordinal 0–3 heads), AD vs complications, the
   N-class diagnosis, and the skin-tumour classifier (tumour-like crops only);
4. **aggregation to the photo** — TIS: the most severe lesion (highest expected total), as a
   dermatologist scores TIS on the worst representative lesion; classifier panels: the mean of
   the lesions' probabilities weighted by lesion area; tumour: the most suspicious lesion.

Steps 1–2 run once per photo however many skin analyses ask for them (a small cache keyed by
the photo object). Each analysis is served only when its packages are installed; otherwise the
worker reports it as not performed.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final, Literal

import numpy as np
import torch
from PIL import Image, ImageFilter

from models.engine.execution import Execution, autocast, synchronise
from models.engine.gradcam import ActivationMap
from models.engine.options import EngineOptions
from models.engine.stages import (
    PostProcess,
    Predict,
    Prediction,
    PreparedNetwork,
    PreProcess,
    RawOutputs,
    StageTimings,
)
from models.engine.tta import IDENTITY_ONLY, plan_from
from models.intake import DecodedPhoto
from models.manifest import LabelSpec, ModelManifest
from models.pipelines import (
    AnalysisOutcome,
    abstention_limits,
    build_model_pipeline,
    execution_for,
)
from models.registry import LoadedModel, registry_for
from models.results import (
    Abstention,
    AnalysisName,
    AnalysisNotPerformed,
    ClassProbability,
    ConditionProbabilities,
    ModelInfo,
    TisScore,
    TumourAssessment,
)
from models.skin.dataset import components, square_box
from models.skin.labels import NOT_SKIN
from models.skin.training import NORMALISATION

LesionKind = Literal["rash", "tumour"]
# A photo cut out on transparency is one lesion the sender chose: every lesion analysis scores it.
FoundKind = Literal["rash", "tumour", "cut-out"]
Box = tuple[int, int, int, int]
# Registry tasks of the skin packages (the analyses' names where the package serves one).
BODY_PART_TASK: Final = "skin-body-part"
LESION_TASK: Final = "skin-lesion"
# A region smaller than this share of the segmenter's map is noise, not a lesion (~9 px at 96²).
MIN_LESION_SHARE: Final = 0.001
# ...or one the segmenter is unsure of (mean probability of its class). Chosen on a separate
# generated validation set (`photomarker generate skin --out build/skin-synthetic/val --count 400
# --seed 3`): 0.6 raised "no lesion" on healthy skin from 0.87 to 0.92 for detection 0.944 → 0.931.
MIN_LESION_CONFIDENCE: Final = 0.6
MAX_LESIONS: Final = 8
_CACHE_SIZE: Final = 64


@dataclass(frozen=True)
class FoundLesion:
    kind: FoundKind
    box: Box  # square crop box in photo pixels
    area: float  # share of the photo the region covers
    crop: DecodedPhoto


@dataclass(frozen=True)
class SkinFindings:
    body_part: LabelSpec | None  # None: no body-part model installed
    body_part_probability: float | None
    lesions: tuple[FoundLesion, ...]

    @property
    def not_skin(self) -> bool:
        return self.body_part is not None and self.body_part.group == NOT_SKIN

    def of_kind(self, kind: LesionKind) -> tuple[FoundLesion, ...]:
        return tuple(lesion for lesion in self.lesions if lesion.kind in (kind, "cut-out"))


# --- steps 1–2: body part and lesion extraction ------------------------------------------------------


class LesionExtractor:
    """The segmenter on whole photos → lesion regions → full-resolution square crops."""

    def __init__(self, loaded: LoadedModel, execution: Execution, *, tta: bool) -> None:
        manifest = loaded.manifest
        self.manifest = manifest
        self.network = PreparedNetwork(loaded.network(), execution)
        self.execution = execution
        self.size = manifest.input.size
        self.tta = tta
        self._mean = torch.tensor(NORMALISATION.mean).view(1, 3, 1, 1)
        self._std = torch.tensor(NORMALISATION.std).view(1, 3, 1, 1)

    def probabilities(self, photos: Sequence[DecodedPhoto]) -> torch.Tensor:
        """(N, C, S, S) class probabilities, members (and a mirror view) averaged."""
        arrays = [
            np.asarray(_rgb(photo).resize((self.size, self.size), Image.Resampling.BILINEAR))
            for photo in photos
        ]
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(255)
        x = ((x - self._mean) / self._std).to(self.execution.device)
        views = [x, x.flip(-1)] if self.tta else [x]
        total: torch.Tensor | None = None
        with torch.inference_mode(), autocast(self.execution):
            for index, view in enumerate(views):
                for output in self.network.forward_only(view):
                    probabilities = torch.softmax(output.float(), dim=1)
                    probabilities = probabilities.flip(-1) if index == 1 else probabilities
                    total = probabilities if total is None else total + probabilities
        if total is None:  # a package always has at least one member
            raise RuntimeError("the lesion model has no members")
        return (total / (len(views) * len(self.network.runners))).cpu()

    def __call__(self, photos: Sequence[DecodedPhoto]) -> list[tuple[FoundLesion, ...]]:
        maps = self.probabilities(photos).numpy()
        return [self._lesions(photo, classes) for photo, classes in zip(photos, maps, strict=True)]

    def _lesions(self, photo: DecodedPhoto, probabilities: np.ndarray) -> tuple[FoundLesion, ...]:
        if photo.alpha is not None:
            return (self._cut_out_lesion(photo, photo.alpha),)
        size = probabilities.shape[-1]
        width, height = photo.pixels.size
        found: list[FoundLesion] = []
        for region in lesion_regions(probabilities):
            rows, cols = np.nonzero(region.mask)
            box = (
                int(cols.min() * width / size),
                int(rows.min() * height / size),
                int(np.ceil((cols.max() + 1) * width / size)),
                int(np.ceil((rows.max() + 1) * height / size)),
            )
            square = square_box(box, (width, height))
            # A growth is handed over as a cut-out (its surround transparent), the way the tumour
            # classifier's training photos (PAD-UFES-20) show lesions; a rash keeps its
            # surroundings, which its models were trained with.
            alpha = _cut_out(region.mask, (width, height), square) if region.kind == "tumour" else None
            found.append(FoundLesion(region.kind, square, region.share, _crop(photo, square, alpha)))
        found.sort(key=lambda lesion: lesion.area, reverse=True)
        return tuple(found[:MAX_LESIONS])

    def _cut_out_lesion(self, photo: DecodedPhoto, cut: Image.Image) -> FoundLesion:
        """A photo cut out on transparency (a lesion cut-out) is one lesion: the opaque part.

        Its kind is not asked of the segmenter (trained on whole photos, it has never seen a
        cut-out): the sender chose the lesion, and each lesion analysis scores it.
        """
        width, height = photo.pixels.size
        box = cut.getbbox() or (0, 0, width, height)
        square = square_box(box, (width, height), margin=0.05)
        opaque = np.asarray(cut) >= 128
        share = float(opaque.mean()) if opaque.any() else 1.0
        return FoundLesion("cut-out", square, share, _crop(photo, square, cut.crop(square)))


@dataclass(frozen=True, eq=False)
class Region:
    """One lesion the segmenter marked, on its own (map-sized) grid."""

    kind: LesionKind
    mask: np.ndarray  # bool (S, S)
    share: float  # of the map
    confidence: float  # mean probability of its class over its pixels


def lesion_regions(probabilities: np.ndarray) -> list[Region]:
    """The connected regions of each lesion class that are big and sure enough to be lesions.

    Shared by the pipeline and ``photomarker evaluate lesion``, so the figures describe what runs.
    """
    winner = probabilities.argmax(0)
    size = winner.shape[0]
    regions: list[Region] = []
    kinds: tuple[tuple[int, LesionKind], ...] = ((1, "rash"), (2, "tumour"))
    for index, kind in kinds:
        labels, count = components(winner == index)
        for component in range(1, count + 1):
            mask = labels == component
            share = float(mask.sum()) / (size * size)
            confidence = float(probabilities[index][mask].mean())
            if share >= MIN_LESION_SHARE and confidence >= MIN_LESION_CONFIDENCE:
                regions.append(Region(kind, mask, share, confidence))
    return regions


def _rgb(photo: DecodedPhoto) -> Image.Image:
    if photo.alpha is None:
        return photo.pixels
    canvas = Image.new("RGB", photo.pixels.size, (128, 128, 128))
    canvas.paste(photo.pixels, mask=photo.alpha)
    return canvas


def _cut_out(region: np.ndarray, size: tuple[int, int], box: Box) -> Image.Image:
    """The region (a map-sized boolean mask) as an 'L' alpha over the crop box, a little dilated."""
    mask = Image.fromarray(region.astype(np.uint8) * 255).resize(size, Image.Resampling.BILINEAR).crop(box)
    # Dilate by ~3 % of the crop's side: the segmenter's edge is coarse, the lesion's border matters.
    reach = max(3, (max(mask.size) // 32) | 1)
    return mask.point(lambda v: 255 if v >= 128 else 0).filter(ImageFilter.MaxFilter(reach))


def _crop(photo: DecodedPhoto, box: Box, alpha: Image.Image | None = None) -> DecodedPhoto:
    pixels = _rgb(photo).crop(box)
    return DecodedPhoto(
        pixels=pixels,
        alpha=alpha,
        format=photo.format,
        content_type=photo.content_type,
        original_size=pixels.size,
        sha256=photo.sha256,
        lossless=photo.lossless,
    )


class BodyPartClassifier:
    def __init__(self, loaded: LoadedModel, execution: Execution, options: EngineOptions) -> None:
        self.manifest = loaded.manifest
        # The body part needs no heat map: it is not a result of its own.
        self.stages = build_model_pipeline(loaded, execution, replace(options, heatmaps=False))

    def __call__(self, photos: Sequence[DecodedPhoto]) -> list[tuple[LabelSpec, float]]:
        out = []
        for prediction in self.stages(photos):
            probabilities = prediction.probabilities or ()
            best = int(np.argmax(probabilities))
            out.append((self.manifest.labels[best], float(probabilities[best])))
        return out


class SkinFinder:
    """Steps 1–2 for a batch, each photo once (results kept while the photo object lives)."""

    def __init__(self, extractor: LesionExtractor, body_parts: BodyPartClassifier | None) -> None:
        self.extractor = extractor
        self.body_parts = body_parts
        self._cache: OrderedDict[int, tuple[weakref.ref[DecodedPhoto], SkinFindings]] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, photos: Sequence[DecodedPhoto]) -> list[SkinFindings]:
        known: dict[int, SkinFindings] = {}
        with self._lock:
            for photo in photos:
                entry = self._cache.get(id(photo))
                if entry is not None and entry[0]() is photo:
                    known[id(photo)] = entry[1]
        todo = [photo for photo in photos if id(photo) not in known]
        if todo:
            lesions = self.extractor(todo)
            parts = self._body_parts(todo)
            with self._lock:
                for photo, found, (part, probability) in zip(todo, lesions, parts, strict=True):
                    findings = SkinFindings(part, probability, found)
                    known[id(photo)] = findings
                    self._cache[id(photo)] = (weakref.ref(photo), findings)
                    while len(self._cache) > _CACHE_SIZE:
                        self._cache.popitem(last=False)
        return [known[id(photo)] for photo in photos]

    def _body_parts(self, photos: Sequence[DecodedPhoto]) -> list[tuple[LabelSpec | None, float | None]]:
        """The body part of each whole photo; a cut-out on transparency shows none (unknown)."""
        parts: list[tuple[LabelSpec | None, float | None]] = [(None, None)] * len(photos)
        whole = [index for index, photo in enumerate(photos) if photo.alpha is None]
        if self.body_parts is not None and whole:
            for index, answer in zip(whole, self.body_parts([photos[i] for i in whole]), strict=True):
                parts[index] = answer
        return parts


# --- step 3–4: the per-analysis pipelines ----------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SkinAnalysisPipeline:
    """One skin analysis: findings → crops of one kind → the task's network → one result per photo."""

    analysis: AnalysisName
    model: ModelInfo
    finder: SkinFinder
    crops: CropModel
    lesion_kind: LesionKind

    def run(
        self, photos: Sequence[DecodedPhoto], timings: StageTimings | None = None
    ) -> list[AnalysisOutcome]:
        findings = self.finder(photos)
        crops: list[DecodedPhoto] = []
        owners: list[int] = []
        outcomes: list[AnalysisOutcome | None] = [None] * len(photos)
        for index, found in enumerate(findings):
            lesions = found.of_kind(self.lesion_kind)
            if found.not_skin:
                outcomes[index] = AnalysisOutcome(
                    self._not_performed("the body-part model found no skin in the photo")
                )
            elif not lesions:
                what = "eczema or rash lesion" if self.lesion_kind == "rash" else "tumour-like lesion"
                outcomes[index] = AnalysisOutcome(self._not_performed(f"no {what} was found in the photo"))
            else:
                crops.extend(lesion.crop for lesion in lesions)
                owners.extend([index] * len(lesions))
        predictions = self.crops.predict(crops) if crops else []
        for index, found in enumerate(findings):
            if outcomes[index] is not None:
                continue
            lesions = found.of_kind(self.lesion_kind)
            mine = [p for p, owner in zip(predictions, owners, strict=True) if owner == index]
            outcomes[index] = self.crops.aggregate(found, lesions, mine)
        return [outcome for outcome in outcomes if outcome is not None]

    def _not_performed(self, why: str) -> AnalysisNotPerformed:
        return AnalysisNotPerformed(
            analysis=self.analysis, reason=f"{why[0].upper()}{why[1:]}; no score was produced."
        )


class CropModel:
    """A crop network served through the engine's stages (TTA, calibration, abstention, Grad-CAM)."""

    def __init__(
        self, analysis: AnalysisName, loaded: LoadedModel, execution: Execution, options: EngineOptions
    ) -> None:
        self.analysis = analysis
        self.manifest = loaded.manifest
        self.execution = execution
        manifest = loaded.manifest
        network = PreparedNetwork(loaded.network(), execution)
        plan = plan_from(manifest.tta, enabled=options.tta) if options.tta else IDENTITY_ONLY
        self.pre = PreProcess(manifest.input, plan, execution)
        self.predict_stage = Predict(network, manifest, explain=options.heatmaps)
        self.limits = abstention_limits(manifest, options)
        self.post = (
            PostProcess(manifest, self.limits, network.ood) if manifest.output.kind == "classifier" else None
        )
        self.batch_size = options.batch_size

    def predict(self, crops: Sequence[DecodedPhoto]) -> list[CropPrediction]:
        out: list[CropPrediction] = []
        for start in range(0, len(crops), self.batch_size):
            chunk = crops[start : start + self.batch_size]
            raw = self.predict_stage(self.pre(chunk))
            if self.post is not None:
                out.extend(CropPrediction(p, None) for p in self.post(raw))
            else:
                out.extend(self._ordinal(raw))
        synchronise(self.execution)
        return out

    def _ordinal(self, raw: RawOutputs) -> list[CropPrediction]:
        manifest = self.manifest
        levels = manifest.output.levels or 4
        items = len(manifest.labels)
        m, k, n, _ = raw.outputs.shape
        probabilities = torch.softmax(
            raw.outputs.view(m, k, n, items, levels) / manifest.calibration.temperature, -1
        )
        scale = torch.arange(levels, dtype=torch.float32)
        expected_total = (probabilities * scale).sum(-1).sum(-1)  # (M, K, N)
        mean = probabilities.mean(dim=(0, 1))  # (N, items, levels)
        spread = expected_total.reshape(m * k, n).std(0, unbiased=False)
        out = []
        for index in range(n):
            explanation = (
                ActivationMap(raw.cams[index].numpy(), raw.boxes[index]) if raw.cams is not None else None
            )
            abstention = None
            limit = self.limits.max_spread
            if limit is not None and float(spread[index]) > limit:
                abstention = Abstention(
                    reason="the rotated and flipped views (and ensemble members) disagree "
                    f"(threshold {limit:.3g})",
                    spread=float(spread[index]),
                )
            prediction = Prediction(
                probabilities=tuple(float(p) for p in mean[index].flatten()),
                value=float(expected_total.mean(dim=(0, 1))[index]),
                spread=float(spread[index]),
                ood_score=None,
                abstention=abstention,
                explanation=explanation,
            )
            out.append(CropPrediction(prediction, mean[index].numpy()))
        return out

    def aggregate(
        self, findings: SkinFindings, lesions: Sequence[FoundLesion], predictions: Sequence[CropPrediction]
    ) -> AnalysisOutcome:
        site = (
            findings.body_part.concept() if findings.body_part is not None and not findings.not_skin else None
        )
        if self.analysis == "tis":
            return self._tis(site, lesions, predictions)
        weights = np.array([lesion.area for lesion in lesions], dtype=np.float64)
        probabilities = np.array([p.prediction.probabilities or () for p in predictions], dtype=np.float64)
        if self.analysis == "skin-tumour":
            malignant = np.array([label.group == "malignant" for label in self.manifest.labels])
            worst = int(np.argmax(probabilities[:, malignant].sum(1)))
            chosen = probabilities[worst]
            explanation = _in_photo(predictions[worst].prediction.explanation, lesions[worst].box)
            classes = _classes(self.manifest, chosen)
            result: TumourAssessment | ConditionProbabilities = TumourAssessment(
                malignancy_probability=float(chosen[malignant].sum()),
                types=classes,
                abstention=predictions[worst].prediction.abstention,
                body_site=site,
                lesion_count=len(lesions),
            )
            return AnalysisOutcome(result, explanation)
        mean = (probabilities * weights[:, None]).sum(0) / weights.sum()
        largest = int(np.argmax(weights))
        panel: Literal["skin-condition", "skin-diagnosis"] = (
            "skin-diagnosis" if self.analysis == "skin-diagnosis" else "skin-condition"
        )
        result = ConditionProbabilities(
            classes=_classes(self.manifest, mean),
            abstention=predictions[largest].prediction.abstention,
            body_site=site,
            panel=panel,
            lesion_count=len(lesions),
        )
        return AnalysisOutcome(
            result, _in_photo(predictions[largest].prediction.explanation, lesions[largest].box)
        )

    def _tis(
        self, site: object, lesions: Sequence[FoundLesion], predictions: Sequence[CropPrediction]
    ) -> AnalysisOutcome:
        worst = int(np.argmax([p.prediction.value or 0.0 for p in predictions]))
        levels = predictions[worst].levels
        items = [int(np.argmax(row)) for row in levels] if levels is not None else [0, 0, 0]
        score = TisScore(
            erythema=items[0],
            oedema_papulation=items[1],
            excoriation=items[2],
            body_site=site,  # type: ignore[arg-type]
            lesion_count=len(lesions),
            abstention=predictions[worst].prediction.abstention,
        )
        return AnalysisOutcome(
            score, _in_photo(predictions[worst].prediction.explanation, lesions[worst].box)
        )


@dataclass(frozen=True, eq=False)
class CropPrediction:
    prediction: Prediction
    levels: np.ndarray | None  # ordinal: (items, levels) mean probabilities


def _classes(manifest: ModelManifest, probabilities: np.ndarray) -> tuple[ClassProbability, ...]:
    pairs = [
        ClassProbability(label.concept(), float(p))
        for label, p in zip(manifest.labels, probabilities, strict=True)
    ]
    return tuple(sorted(pairs, key=lambda c: c.probability, reverse=True))


def _in_photo(explanation: ActivationMap | None, crop_box: Box) -> ActivationMap | None:
    """A crop's Grad-CAM placed on the whole photo: the map's box shifted by the crop's corner."""
    if explanation is None:
        return None
    left, top, right, bottom = explanation.box
    x0, y0 = crop_box[0], crop_box[1]
    return ActivationMap(explanation.cam, (left + x0, top + y0, right + x0, bottom + y0))


# --- what is installed -------------------------------------------------------------------------------

_PACKAGE_TASK: Final[dict[AnalysisName, str]] = {
    "tis": "tis",
    "skin-condition": "skin-condition",
    "skin-diagnosis": "skin-diagnosis",
    "skin-tumour": "skin-tumour",
}
_FINDERS: dict[EngineOptions, SkinFinder | None] = {}
_FINDERS_LOCK = threading.Lock()


def skin_finder(options: EngineOptions) -> SkinFinder | None:
    """Body part + lesion extraction from the installed packages (one per process and options)."""
    with _FINDERS_LOCK:
        if options in _FINDERS:
            return _FINDERS[options]
    registry = registry_for(options.model_dir)
    lesion_packages = registry.for_task(LESION_TASK)
    finder = None
    if lesion_packages:
        execution = execution_for(options)
        extractor = LesionExtractor(registry.load(lesion_packages[0].name), execution, tta=options.tta)
        body_packages = registry.for_task(BODY_PART_TASK)
        body = (
            BodyPartClassifier(registry.load(body_packages[0].name), execution, options)
            if body_packages
            else None
        )
        finder = SkinFinder(extractor, body)
    with _FINDERS_LOCK:
        return _FINDERS.setdefault(options, finder)


def skin_pipeline(analysis: AnalysisName, options: EngineOptions) -> SkinAnalysisPipeline | None:
    """The analysis on lesion crops, or None when the lesion model or the task's model is missing."""
    finder = skin_finder(options)
    if finder is None:
        return None
    registry = registry_for(options.model_dir)
    packages = registry.for_task(_PACKAGE_TASK[analysis])  # a site's own directory first
    # The first package decides: a whole-photo classifier (region "photo") is left to the
    # generic path, which shows it the whole photo it was trained on.
    if not packages or packages[0].manifest.input.region != "lesion":
        return None
    loaded = registry.load(packages[0].name)
    crops = CropModel(analysis, loaded, execution_for(options), options)
    kind: LesionKind = "tumour" if analysis == "skin-tumour" else "rash"
    return SkinAnalysisPipeline(analysis, loaded.info, finder, crops, kind)


def tis_pipeline_factory(options: EngineOptions) -> SkinAnalysisPipeline | None:
    return skin_pipeline("tis", options)


def condition_pipeline_factory(options: EngineOptions) -> SkinAnalysisPipeline | None:
    return skin_pipeline("skin-condition", options)


def diagnosis_pipeline_factory(options: EngineOptions) -> SkinAnalysisPipeline | None:
    return skin_pipeline("skin-diagnosis", options)


def tumour_pipeline_factory(options: EngineOptions) -> SkinAnalysisPipeline | None:
    return skin_pipeline("skin-tumour", options)


def clear_skin_cache() -> None:
    with _FINDERS_LOCK:
        _FINDERS.clear()
