"""Scoring the lesion extractor on real lesions: PAD-UFES-20 cut-outs, bare and pasted into generated scenes.

Each held-out cut-out (:mod:`models.skin.real_lesions`) is scored three ways:

- **bare**: the cut-out itself, the lesion on black, as a phone would send it (a JPEG); the
  worker reads a black surround as transparency (:mod:`models.cut_out`), so a recognised cut-out
  goes to the tumour classifier whole, as one cut out on transparency does;
- **skin**: the lesion pasted into a generated skin photo (``generate_scene`` with no lesion of
  its own), its longest side 5–40 % of the photo's short side, its centre on skin;
- **background**: the same into a generated photo of no skin at all (a table, fabric, a wall).

A lesion counts as **detected** when one lesion the extractor returns (a region the pipeline
would crop) overlaps the pasted lesion with IoU ≥ 0.3 on the segmenter's map; **as a growth**
when that region's kind is "tumour" (only growths go to the tumour classifier); **scored** when
the skin-tumour analysis, run as the worker runs it (body part → lesions → tumour classifier),
returned a tumour assessment with that lesion among its crops. Every other region found in the
photo is a false finding (the generated scenes hold no lesion of their own). **Cut-out** counts
the photos read as a cut-out on black: all bare ones should be, no pasted one; **gate** those the
worker's quality gate (default thresholds, asked for skin) lets through to the models.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final, Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from models.cut_out import as_cut_out
from models.engine.options import EngineOptions
from models.errors import DatasetError, ModelNotInstalled
from models.evaluation import MetricValue, bootstrap
from models.intake import DecodedPhoto, IntakeLimits, decode_photo
from models.model_stages import execution_for
from models.quality import QualityThresholds, assess_quality
from models.registry import LoadedModel, registry_for
from models.results import TumourAssessment
from models.skin.crops import CropModel
from models.skin.findings import BodyPartClassifier, SkinFinder
from models.skin.labels import BODY_PART_KEYS, NOT_SKIN
from models.skin.lesions import FoundLesion, LesionExtractor
from models.skin.pipeline import BODY_PART_TASK, SkinAnalysisPipeline
from models.skin.real_lesions import LESION_SHARE, CutOut, EmptyCutOut, held_out, load_cut_out, paste
from models.skin.synthetic import SkinScene, generate_scene
from models.tumour.dataset import TumourSample, load_samples

Condition = Literal["bare", "skin", "background"]
CONDITIONS: Final[tuple[Condition, ...]] = ("bare", "skin", "background")
# Every metric of this evaluation starts so: it lives beside the generated figures in a manifest.
METRIC_PREFIX: Final = "pad_"
SCENE_SIZE: Final = 512
DETECTION_IOU: Final = 0.3
# Scenes and placements of the evaluation (each image's own stream, see _case_rng).
EVALUATION_SEED: Final = 0
Progress = Callable[[int, int], None]


@dataclass(frozen=True, eq=False)
class RealCase:
    """One photo made from one PAD-UFES-20 lesion, and where the lesion is in it."""

    sample: TumourSample
    condition: Condition
    pixels: NDArray[np.uint8]
    truth: NDArray[np.bool_]
    share: float  # the lesion's longest side / the photo's short side


def _case_rng(seed: int, sample: TumourSample, condition: Condition) -> np.random.Generator:
    """The same image gets the same scene and placement in whichever subset it is scored."""
    name = f"{sample.img_id or sample.path.name}|{condition}"
    key = int(hashlib.sha256(name.encode()).hexdigest()[:12], 16)
    return np.random.default_rng([seed, key])


def case_scene(
    sample: TumourSample, condition: Condition, seed: int
) -> tuple[SkinScene, np.random.Generator]:
    """The generated photo a pasted condition starts from, and the stream that then places the lesion."""
    rng = _case_rng(seed, sample, condition)
    parts = [part for part in BODY_PART_KEYS if part != NOT_SKIN]
    part = NOT_SKIN if condition == "background" else parts[int(rng.integers(len(parts)))]
    return generate_scene(rng, size=SCENE_SIZE, body_part=part, condition=None), rng


def make_case(sample: TumourSample, condition: Condition, seed: int, cut: CutOut | None = None) -> RealCase:
    """The photo for one condition: the bare cut-out, or the lesion pasted into a generated scene."""
    cut = cut or load_cut_out(sample.path)
    if condition == "bare":
        rows, cols = np.nonzero(cut.mask)
        extent = max(rows.max() - rows.min(), cols.max() - cols.min()) + 1
        return RealCase(sample, condition, cut.pixels, cut.mask, extent / min(cut.mask.shape))
    scene, rng = case_scene(sample, condition, seed)
    where = scene.skin_mask if condition == "skin" else None
    pixels, truth = paste(scene.image, cut, rng, where)
    rows, cols = np.nonzero(truth)
    extent = max(rows.max() - rows.min(), cols.max() - cols.min()) + 1
    return RealCase(sample, condition, pixels, truth, extent / SCENE_SIZE)


def as_photo(pixels: NDArray[np.uint8], quality: int = 92) -> DecodedPhoto:
    """The pixels as a phone would send them (a JPEG), through the service's own intake."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return decode_photo(buffer.getvalue(), limits=IntakeLimits())


# --- matching what was found with what was pasted --------------------------------------------------


def on_map(truth: NDArray[np.bool_], size: int) -> NDArray[np.bool_]:
    """A photo-sized mask on the segmenter's (size × size) map: pixels at least half covered."""
    coverage = np.asarray(
        Image.fromarray(truth.astype(np.uint8) * 255).resize((size, size), Image.Resampling.BOX)
    )
    small = coverage >= 128
    if not small.any():  # smaller than a map pixel: its best-covered pixel
        small = coverage == coverage.max()
    return small


@dataclass(frozen=True)
class Match:
    """The found lesion that best overlaps the pasted one (by IoU on the map), and the others."""

    iou: float
    lesion: FoundLesion | None
    others: int  # found lesions that do not touch the pasted one

    @property
    def detected(self) -> bool:
        return self.lesion is not None and self.iou >= DETECTION_IOU


def match(found: Sequence[FoundLesion], truth: NDArray[np.bool_]) -> Match:
    best: tuple[float, FoundLesion | None] = (0.0, None)
    others = 0
    for lesion in found:
        if lesion.region is None:  # a cut-out on transparency: the whole photo is the lesion
            best = max(best, (1.0, lesion), key=lambda pair: pair[0])
            continue
        small = on_map(truth, lesion.region.shape[0])
        overlap = int((lesion.region & small).sum())
        if overlap == 0:
            others += 1
            continue
        iou = overlap / int((lesion.region | small).sum())
        if iou > best[0]:
            best = (iou, lesion)
    return Match(best[0], best[1], others)


# --- the evaluation --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseResult:
    image: str  # the cut-out's file name
    patient_id: str
    diagnosis: str
    fitzpatrick: int | None
    condition: Condition
    share: float
    iou: float
    detected: bool
    as_growth: bool
    scored: bool
    not_skin: bool
    others: int
    malignancy: float | None  # the photo's tumour assessment, when one was made
    cut_out: bool  # read as a cut-out on black (its surround as transparency)
    gate: bool  # the quality gate (default thresholds, asked for skin) let it through


@dataclass(frozen=True, eq=False)
class RealLesionRunner:
    """The installed packages as the worker composes them, for the skin-tumour analysis."""

    finder: SkinFinder
    pipeline: SkinAnalysisPipeline | None  # None: no tumour package installed
    lesion_model: LoadedModel

    def run(self, cases: Sequence[RealCase]) -> list[CaseResult]:
        # As the worker's gate does: a cut-out on black is analysed as one on transparency.
        photos = [as_cut_out(as_photo(case.pixels)) for case in cases]
        findings = self.finder(photos)
        outcomes = self.pipeline.run(photos) if self.pipeline is not None else [None] * len(photos)
        out = []
        for case, photo, found, outcome in zip(cases, photos, findings, outcomes, strict=True):
            best = match(found.lesions, case.truth)
            growth = best.detected and best.lesion is not None and best.lesion.kind in ("tumour", "cut-out")
            result = outcome.result if outcome is not None else None
            assessed = isinstance(result, TumourAssessment)
            malignancy = result.malignancy_probability if isinstance(result, TumourAssessment) else None
            out.append(
                CaseResult(
                    image=case.sample.path.name,
                    patient_id=case.sample.patient_id,
                    diagnosis=case.sample.diagnosis,
                    fitzpatrick=case.sample.fitzpatrick,
                    condition=case.condition,
                    share=case.share,
                    iou=best.iou,
                    detected=best.detected,
                    as_growth=growth,
                    # The analysis scores every growth it was handed: this one was among them.
                    scored=growth and assessed,
                    not_skin=found.not_skin,
                    others=best.others,
                    malignancy=malignancy,
                    cut_out=photo.alpha is not None,
                    gate=assess_quality(photo, QualityThresholds(), expected="skin").acceptable,
                )
            )
        return out


def runner_for(options: EngineOptions, lesion_model: str | None = None) -> RealLesionRunner:
    """The lesion package (``lesion_model`` or the one analyses use), the body-part and tumour ones."""
    registry = registry_for(options.model_dir)
    options = replace(options, heatmaps=False)  # a heat map changes no score; it only costs time
    execution = execution_for(options)
    if lesion_model is None:
        packages = registry.for_task("skin-lesion")
        if not packages:
            raise ModelNotInstalled("no skin-lesion model package is installed")
        lesion_model = packages[0].name
    loaded = registry.load(lesion_model)
    if loaded.manifest.task != "skin-lesion":
        raise ModelNotInstalled(f"{lesion_model} is a {loaded.manifest.task} model, not skin-lesion")
    extractor = LesionExtractor(loaded, execution, views=options.view_count)
    body_packages = registry.for_task(BODY_PART_TASK)
    body = None
    if body_packages:
        body = BodyPartClassifier(registry.load(body_packages[0].name), execution, options)
    finder = SkinFinder(extractor, body)
    tumour_packages = [p for p in registry.for_task("skin-tumour") if p.manifest.input.region == "lesion"]
    pipeline = None
    if tumour_packages:
        tumour = registry.load(tumour_packages[0].name)
        crops = CropModel("skin-tumour", tumour, execution, options)
        pipeline = SkinAnalysisPipeline("skin-tumour", tumour.info, finder, crops, "tumour")
    return RealLesionRunner(finder, pipeline, loaded)


def held_out_samples(csv_path: Path) -> list[TumourSample]:
    samples = [s for s in load_samples(csv_path) if held_out(s.patient_id)]
    if not samples:
        raise DatasetError(f"{csv_path}: no row belongs to a held-out patient (see models.skin.real_lesions)")
    return samples


def score_cases(
    samples: Sequence[TumourSample],
    runner: RealLesionRunner,
    *,
    seed: int = 0,
    batch: int = 8,
    progress: Progress | None = None,
) -> list[CaseResult]:
    """Every sample under every condition, in batches (each cut-out read once)."""
    results: list[CaseResult] = []
    for start in range(0, len(samples), batch):
        chunk = samples[start : start + batch]
        cases = []
        for sample in chunk:
            try:
                cut = load_cut_out(sample.path)
            except EmptyCutOut:  # all black: nothing to find (counted by the caller)
                continue
            cases += [make_case(sample, condition, seed, cut) for condition in CONDITIONS]
        if cases:
            results += runner.run(cases)
        if progress is not None:
            progress(start + len(chunk), len(samples))
    return results


def _share(values: NDArray[np.float64], _: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.asarray(np.mean(values, axis=-1))


def summarise(
    results: Sequence[CaseResult], n_resamples: int = 2000
) -> tuple[dict[str, MetricValue], dict[str, int], dict[int, tuple[int, MetricValue]], dict[str, int]]:
    """Per condition: detection, as a growth, scored, not skin, false findings; by diagnosis and size.

    Returns the metrics (patient-bootstrap 95 % CIs), the photos behind each, the skin condition's
    detection per Fitzpatrick type (with counts), and the counts of lesions, patients and photos.
    """
    metrics: dict[str, MetricValue] = {}
    sizes: dict[str, int] = {}

    def rate(name: str, rows: Sequence[CaseResult], values: Sequence[float]) -> None:
        array = np.asarray(values, dtype=np.float64)
        groups = [r.patient_id for r in rows]
        metrics[name] = bootstrap({"m": _share}, array, array, groups=groups, n_resamples=n_resamples)["m"]
        sizes[name] = len(rows)

    for condition in CONDITIONS:
        rows = [r for r in results if r.condition == condition]
        if not rows:
            continue
        name = f"{METRIC_PREFIX}{condition}"
        rate(f"{name}_detection_rate", rows, [r.detected for r in rows])
        rate(f"{name}_growth_rate", rows, [r.as_growth for r in rows])
        rate(f"{name}_scored_rate", rows, [r.scored for r in rows])
        rate(f"{name}_not_skin_rate", rows, [r.not_skin for r in rows])
        rate(f"{name}_false_finding_rate", rows, [r.others > 0 for r in rows])
        rate(f"{name}_iou", rows, [r.iou for r in rows])
        rate(f"{name}_cut_out_rate", rows, [r.cut_out for r in rows])
        rate(f"{name}_gate_pass_rate", rows, [r.gate for r in rows])
    skin = [r for r in results if r.condition == "skin"]
    for diagnosis in sorted({r.diagnosis for r in skin}):
        rows = [r for r in skin if r.diagnosis == diagnosis]
        rate(f"{METRIC_PREFIX}skin_detection_rate_{diagnosis.lower()}", rows, [r.detected for r in rows])
    low, high = LESION_SHARE
    for label, (lo, hi) in (("small", (low, 0.15)), ("large", (0.15, high + 0.01))):
        rows = [r for r in skin if lo <= r.share < hi]
        if rows:
            rate(f"{METRIC_PREFIX}skin_detection_rate_{label}", rows, [r.detected for r in rows])
    per_fitzpatrick: dict[int, tuple[int, MetricValue]] = {}
    for fitz in sorted({r.fitzpatrick for r in skin if r.fitzpatrick is not None}):
        rows = [r for r in skin if r.fitzpatrick == fitz]
        array = np.asarray([r.detected for r in rows], dtype=np.float64)
        groups = [r.patient_id for r in rows]
        value = bootstrap({"m": _share}, array, array, groups=groups, n_resamples=n_resamples)["m"]
        per_fitzpatrick[fitz] = (len(rows), value)
    counts = {
        "cut_outs": len({r.image for r in results}),
        "patients": len({r.patient_id for r in results}),
        "photos": len(results),
    }
    return metrics, sizes, per_fitzpatrick, counts
