"""Real lesions through lesion extraction: PAD-UFES-20 cut-outs pasted into generated photos.

The shipped packages (lesion extractor, body part, tumour classifier) run as the worker composes
them; the cut-outs come from the repository's subset, whose patients no lesion extractor was
trained on (``models.skin.real_lesions.TEST_SUBSET_PATIENTS``).
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.engine.options import EngineOptions
from models.evaluation import MetricValue
from models.manifest import load_manifest
from models.pipelines import clear_pipeline_cache
from models.registry import SHIPPED_MODEL_DIR
from models.results import TumourAssessment
from models.skin.evaluate import evaluate_skin
from models.skin.evaluation_result import SkinEvaluation
from models.skin.package import record_evaluation
from models.skin.pipeline import skin_pipeline
from models.skin.real_lesion_scoring import (
    CONDITIONS,
    EVALUATION_SEED,
    as_photo,
    case_scene,
    make_case,
    match,
)
from models.skin.real_lesions import (
    TEST_SUBSET_PATIENTS,
    EmptyCutOut,
    held_out,
    is_pad_layout,
    load_cut_out,
    paste,
)
from models.skin.tasks import TASKS
from models.skin.training import SkinTrainingConfig
from models.tumour.dataset import TumourSample, load_samples
from tests.datasets import PAD_UFES_SUBSET

# A melanoma of a held-out patient, pasted at 23 % of the photo's short side onto a generated
# forearm (the evaluation's own scene and placement for it: seed 0).
IMAGE = "PAT_109_868_113.jpg"


@pytest.fixture(autouse=True)
def _fresh_pipelines() -> None:
    clear_pipeline_cache()


def _sample(name: str = IMAGE) -> TumourSample:
    return next(s for s in load_samples(PAD_UFES_SUBSET / "labels.csv") if s.path.name == name)


def test_a_real_lesion_pasted_into_a_skin_photo_is_extracted_there_and_scored() -> None:
    case = make_case(_sample(), "skin", EVALUATION_SEED)
    photo = as_photo(case.pixels)
    pipeline = skin_pipeline("skin-tumour", EngineOptions(threads=1))
    assert pipeline is not None  # the shipped lesion, body-part and tumour packages
    (findings,) = pipeline.finder([photo])
    assert not findings.not_skin
    growths = findings.of_kind("tumour")
    best = match(growths, case.truth)
    # Found where it was pasted, as a growth (what the tumour classifier is handed)...
    assert best.detected and best.iou >= 0.3, (best, [(g.kind, g.box) for g in findings.lesions])
    rows, cols = np.nonzero(case.truth)
    left, top, right, bottom = best.lesion.box  # type: ignore[union-attr]
    assert left <= cols.mean() <= right and top <= rows.mean() <= bottom
    # ...and scored by it.
    (outcome,) = pipeline.run([photo])
    assert isinstance(outcome.result, TumourAssessment), outcome.result
    assert 0.0 <= outcome.result.malignancy_probability <= 1.0 and outcome.result.types
    assert outcome.explanation is not None


def test_the_same_scene_without_the_lesion_has_no_growth_there() -> None:
    """The control: the extractor marks the pasted lesion, not the place or the scene around it."""
    case = make_case(_sample(), "skin", EVALUATION_SEED)
    scene, _ = case_scene(_sample(), "skin", EVALUATION_SEED)
    assert np.array_equal(scene.image[~dilated(case.truth)], case.pixels[~dilated(case.truth)])
    pipeline = skin_pipeline("skin-tumour", EngineOptions(threads=1))
    assert pipeline is not None
    (findings,) = pipeline.finder([as_photo(scene.image)])
    assert not match(findings.of_kind("tumour"), case.truth).detected


def dilated(mask: np.ndarray, reach: int = 3) -> np.ndarray:
    out = mask.copy()
    for axis in (0, 1):
        for shift in range(1, reach + 1):
            out |= np.roll(mask, shift, axis) | np.roll(mask, -shift, axis)
    return out


def test_cut_outs_give_their_lesion_and_pasting_puts_it_where_the_mask_says() -> None:
    cut = load_cut_out(_sample().path)
    lesion, mask = cut.tight()
    assert mask.mean() > 0.5 and lesion.shape[:2] == mask.shape
    scene = np.full((300, 400, 3), 200, dtype=np.uint8)
    where = np.zeros((300, 400), dtype=bool)
    where[100:200, 150:250] = True
    pixels, truth = paste(scene, cut, np.random.default_rng(3), where, share=(0.2, 0.2))
    rows, cols = np.nonzero(truth)
    assert where[int(rows.mean()), int(cols.mean())]
    assert 0.18 * 300 <= max(np.ptp(rows), np.ptp(cols)) + 1 <= 0.21 * 300
    assert np.abs(pixels[truth].astype(int) - 200).mean() > 20  # the lesion, not the scene
    changed = np.any(pixels != scene, axis=-1)
    assert not (changed & ~dilated(truth)).any()  # nothing beyond a feathered rim


def test_the_subset_is_held_out_and_the_split_is_by_patient() -> None:
    samples = load_samples(PAD_UFES_SUBSET / "labels.csv")
    assert all(held_out(s.patient_id) for s in samples)
    assert {s.patient_id for s in samples} <= TEST_SUBSET_PATIENTS
    with (PAD_UFES_SUBSET / "labels.csv").open(newline="") as handle:
        assert len(list(csv.DictReader(handle))) == len(samples)
    others = [f"PAT_{n}" for n in range(2000, 2400)]
    share = np.mean([held_out(p) for p in others])
    assert 0.18 < share < 0.32  # a quarter by hash
    assert is_pad_layout(PAD_UFES_SUBSET / "labels.csv")


def test_evaluate_lesion_on_a_pad_csv_scores_real_lesions(tmp_path: Path) -> None:
    """``photomarker evaluate lesion --data <PAD-UFES-20 CSV>``: every condition, figures and counts."""
    source = PAD_UFES_SUBSET / "labels.csv"
    with source.open(newline="") as handle:
        rows = list(csv.DictReader(handle))[:2]
    (tmp_path / "images").mkdir()
    for row in rows:
        shutil.copy(PAD_UFES_SUBSET / row["file"], tmp_path / row["file"])
    with (tmp_path / "labels.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    evaluation = evaluate_skin("lesion", tmp_path / "labels.csv", EngineOptions(threads=1), n_resamples=100)
    assert evaluation.real_lesions and evaluation.n == 2
    for condition in CONDITIONS:
        for metric in ("detection_rate", "growth_rate", "scored_rate"):
            value = evaluation.metrics[f"pad_{condition}_{metric}"].value
            assert 0.0 <= value <= 1.0
            assert evaluation.sizes[f"pad_{condition}_{metric}"] == 2
    assert evaluation.counts["photos"] == 2 * len(CONDITIONS)
    # The bare cut-outs are read as cut-outs on black, as the worker reads them; a pasted lesion never.
    assert evaluation.metrics["pad_bare_cut_out_rate"].value == 1.0
    assert evaluation.metrics["pad_skin_cut_out_rate"].value == 0.0
    assert evaluation.metrics["pad_background_cut_out_rate"].value == 0.0
    assert 0.0 <= evaluation.metrics["pad_bare_gate_pass_rate"].value <= 1.0


def test_real_lesion_figures_sit_beside_the_generated_ones_in_the_card(tmp_path: Path) -> None:
    package = tmp_path / "skin-lesion-reference"
    shutil.copytree(SHIPPED_MODEL_DIR / "skin-lesion-reference", package)
    before = load_manifest(package).evaluation
    real = SkinEvaluation(
        task="lesion",
        model="skin-lesion-reference",
        version="x",
        reference_only=True,
        n=5,
        metrics={"pad_skin_detection_rate": MetricValue(0.9, 0.8, 1.0)},
        sizes={"pad_skin_detection_rate": 5},
        split="real lesions",
        real_lesions=True,
    )
    command = "photomarker evaluate lesion --data ../shared/data/pad-ufes-20/labels.csv"
    spec, config = TASKS["lesion"], SkinTrainingConfig()
    after = record_evaluation(package, real, command, spec, config).evaluation
    generated = {k: v for k, v in before.metrics.items() if not k.startswith(("pad_", "n_pad_"))}
    assert {k: after.metrics[k] for k in generated} == generated
    assert after.metrics["pad_skin_detection_rate"] == 0.9 and after.metrics["n_pad_skin_detection_rate"] == 5
    card = (package / "MODEL_CARD.md").read_text()
    assert "### Real lesions (PAD-UFES-20)" in card and command in card
    assert before.command.split("\n")[0] in card
    # Recording generated figures again keeps the real ones.
    again = SkinEvaluation(
        task="lesion",
        model="skin-lesion-reference",
        version="x",
        reference_only=True,
        n=7,
        metrics={"detection_rate": MetricValue(0.5, 0.4, 0.6)},
    )
    final = record_evaluation(package, again, "photomarker evaluate lesion --data t.csv", spec, config)
    assert final.evaluation.metrics["pad_skin_detection_rate"] == 0.9
    assert (
        final.evaluation.metrics["detection_rate"] == 0.5 and "lesion_recall" not in final.evaluation.metrics
    )
    assert final.evaluation.command.split("\n") == ["photomarker evaluate lesion --data t.csv", command]


def test_a_black_cut_out_has_no_lesion(tmp_path: Path) -> None:
    path = tmp_path / "black.jpg"
    Image.new("RGB", (64, 64)).save(path)
    with pytest.raises(EmptyCutOut):
        load_cut_out(path)
