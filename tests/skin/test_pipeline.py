"""The shipped skin pipeline on whole generated photos: it finds what was planted and says so in FHIR.

These use the reference packages in ``models/weights`` (trained on generated photos by
``photomarker train``); the photos here come from other seeds than their training set.
"""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from PIL import Image

from models.pipelines import clear_pipeline_cache
from models.results import AnalysisNotPerformed, ConditionProbabilities, TisScore, TumourAssessment
from models.skin.synthetic import generate_scene
from plugin.settings import load_settings
from tests.datasets import PAD_UFES_SUBSET as PAD_UFES
from workers.analysis import analyse_photo


@pytest.fixture(autouse=True)
def _fresh_pipelines() -> None:
    clear_pipeline_cache()


def jpeg(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="JPEG", quality=92)
    return out.getvalue()


def scene_photo(seed: int, **planted: object) -> tuple[bytes, object]:
    scene = generate_scene(np.random.default_rng(seed), size=512, blur=0.0, **planted)  # type: ignore[arg-type]
    return jpeg(scene.image), scene


def results_of(report: object) -> dict[str, object]:
    out: dict[str, object] = {}
    for _, result in report.model_results:  # type: ignore[attr-defined]
        key = result.panel if isinstance(result, ConditionProbabilities) else type(result).__name__
        out[key] = result
    for missing in report.not_performed:  # type: ignore[attr-defined]
        out[missing.analysis] = missing
    return out


def test_an_eczema_photo_gets_tis_condition_and_diagnosis_with_body_site_and_heat_maps() -> None:
    data, _ = scene_photo(101, body_part="upper-limb", condition="atopic-dermatitis", tis=(3, 2, 3), zoom=1.6)
    analysed = analyse_photo(data, load_settings(), requested="skin")
    found = results_of(analysed.report)
    tis = found["TisScore"]
    assert isinstance(tis, TisScore) and tis.total >= 4
    assert tis.body_site is not None
    condition = found["skin-condition"]
    assert isinstance(condition, ConditionProbabilities)
    assert abs(sum(c.probability for c in condition.classes) - 1) < 1e-3
    diagnosis = found["skin-diagnosis"]
    assert isinstance(diagnosis, ConditionProbabilities) and len(diagnosis.top_k(5)) == 5
    assert all(model.reference_only for model, _ in analysed.report.model_results)
    assert {heatmap.analysis for heatmap in analysed.heatmaps} >= {"tis", "skin-condition", "skin-diagnosis"}
    # No tumour-like lesion was planted: the tumour analysis says so rather than scoring eczema.
    tumour = found.get("skin-tumour")
    assert isinstance(tumour, AnalysisNotPerformed) or tumour is None


def test_healthy_skin_is_not_scored_as_eczema() -> None:
    data, _ = scene_photo(202, body_part="lower-limb", condition=None, zoom=1.4, fitzpatrick=3)
    found = results_of(analyse_photo(data, load_settings(), requested="skin").report)
    tis = found["tis"]
    assert isinstance(tis, AnalysisNotPerformed)
    assert "no eczema or rash lesion was found" in tis.reason.lower()


def test_the_pipeline_recovers_the_planted_severity() -> None:
    """Evidence that it learned what was planted (generated photos, not a clinical claim).

    Forty photos, of which the quality gate passes about thirty: a dozen made the correlation
    hang on two or three photos (behind the lesion extractor 2.0.0 it fell to 0.38 on them). The
    whole held-out set (`photomarker evaluate tis`, 200 photos, every body part) gives r 0.58
    [0.48, 0.67] end to end.
    """
    rng = np.random.default_rng(303)
    planted, predicted = [], []
    for seed in range(40):
        items = (int(rng.integers(0, 4)), int(rng.integers(0, 4)), int(rng.integers(0, 4)))
        if sum(items) == 0:
            continue
        data, _ = scene_photo(
            400 + seed,
            body_part="trunk-back",
            condition="atopic-dermatitis",
            tis=items,
            zoom=1.5,
            lesion_count=1,
        )
        found = results_of(analyse_photo(data, load_settings(), requested="skin").report)
        tis = found.get("TisScore")
        if isinstance(tis, TisScore):
            planted.append(sum(items))
            predicted.append(tis.total)
    assert len(planted) >= 20
    assert float(np.corrcoef(planted, predicted)[0, 1]) > 0.4


def _pad_crop(diagnosis: str) -> Image.Image:
    with (PAD_UFES / "labels.csv").open(newline="") as handle:
        row = next(r for r in csv.DictReader(handle) if r["diagnostic"] == diagnosis)
    with Image.open(PAD_UFES / row["file"]) as image:
        return image.convert("RGB")


def test_a_lesion_on_a_whole_photo_is_cut_out_and_fed_to_the_tumour_classifier() -> None:
    """A real PAD-UFES-20 lesion cut-out pasted small into a generated arm photo (a phone photo from afar)."""
    scene = generate_scene(
        np.random.default_rng(505),
        size=512,
        body_part="upper-limb",
        condition=None,
        fitzpatrick=2,
        zoom=0.9,
        blur=0,
    )
    photo = Image.fromarray(scene.image)
    side = 80
    disc = np.hypot(*np.meshgrid(np.arange(side) - (side - 1) / 2, np.arange(side) - (side - 1) / 2))
    feather = Image.fromarray(np.clip((side / 2 - 2 - disc) * 12, 0, 255).astype(np.uint8))
    photo.paste(_pad_crop("NEV").resize((side, side)), (256 - side // 2, 256 - side // 2), feather)
    analysed = analyse_photo(jpeg(np.asarray(photo)), load_settings(), requested="skin")
    found = results_of(analysed.report)
    tumour = found.get("TumourAssessment")
    assert isinstance(tumour, TumourAssessment), found.get("skin-tumour")
    assert tumour.lesion_count == 1 and 0.0 <= tumour.malignancy_probability <= 1.0 and tumour.types
    # The growth is not eczema: the rash analyses say no rash lesion was found.
    assert isinstance(found["tis"], AnalysisNotPerformed)
    heatmap = next(h for h in analysed.heatmaps if h.analysis == "skin-tumour")
    assert heatmap.png.startswith(b"\x89PNG")
