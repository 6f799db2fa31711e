"""Test-time views as a setting (``PHOTOMARKER_INFERENCE_TTA_VIEWS``) through the shipped skin and
Hb pipelines: one view or the default, each run gives the same results every time.

Uses the shipped packages in ``models/weights`` and photos generated on the spot.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.engine.execution import resolve_execution
from models.engine.options import DEFAULT_TTA_VIEWS, EngineOptions
from models.engine.tta import IDENTITY_ONLY
from models.hb.pipeline import HB_TTA, HbPreProcess, hb_pipeline_factory
from models.intake import IntakeLimits, decode_photo
from models.pipelines import clear_pipeline_cache
from models.registry import SHIPPED_MODEL_DIR, ModelRegistry
from models.skin.crops import CropModel
from models.skin.lesions import LesionExtractor, _rgb
from models.skin.pipeline import skin_pipeline
from models.skin.synthetic import generate_scene
from models.skin.training import NORMALISATION
from plugin.settings import Settings, load_settings
from workers.analysis import analyse_photo

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(autouse=True)
def _fresh_pipelines() -> None:
    clear_pipeline_cache()


def eczema_photo(seed: int = 101) -> bytes:
    scene = generate_scene(
        np.random.default_rng(seed),
        size=512,
        blur=0.0,
        body_part="upper-limb",
        condition="atopic-dermatitis",
        tis=(3, 2, 3),
        zoom=1.6,
    )
    out = io.BytesIO()
    Image.fromarray(scene.image).save(out, format="JPEG", quality=92)
    return out.getvalue()


def analysed(data: bytes, settings: Settings, kind: str = "skin") -> tuple[list[object], list[bytes]]:
    report = analyse_photo(data, settings, requested=kind)  # type: ignore[arg-type]
    results = [result for _, result in report.report.model_results]
    return [*results, *report.report.not_performed], [heatmap.png for heatmap in report.heatmaps]


def test_the_skin_pipeline_takes_the_views_from_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHOTOMARKER_INFERENCE_TTA_VIEWS", "1")
    one = skin_pipeline("tis", EngineOptions.from_settings(load_settings()))
    assert one is not None and len(one.crops.pre.plan) == 1 and len(one.finder.extractor.plan) == 1
    clear_pipeline_cache()
    default = skin_pipeline("tis", EngineOptions(device="cpu"))
    assert default is not None
    assert len(default.crops.pre.plan) == 8  # the TIS package's eight flips and turns: all of them
    assert len(default.finder.extractor.plan) == 8  # the lesion package lists all eight too (2.0.0 on)


@pytest.mark.parametrize("views", [1, DEFAULT_TTA_VIEWS])
def test_a_skin_photo_gets_the_same_results_every_time(views: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHOTOMARKER_INFERENCE_TTA_VIEWS", str(views))
    settings = load_settings()
    data = eczema_photo()
    first = analysed(data, settings)
    clear_pipeline_cache()  # rebuilt from the packages: still the same
    second = analysed(data, settings)
    assert first == second
    kinds = {type(result).__name__ for result in first[0]}
    assert {"TisScore", "ConditionProbabilities"} <= kinds  # scored, not skipped, with one view too


def test_one_view_and_the_default_read_the_photo_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    data = eczema_photo()
    monkeypatch.setenv("PHOTOMARKER_INFERENCE_TTA_VIEWS", "1")
    one, _ = analysed(data, load_settings())
    clear_pipeline_cache()
    monkeypatch.delenv("PHOTOMARKER_INFERENCE_TTA_VIEWS")
    default, _ = analysed(data, load_settings())
    assert [type(r) for r in one] == [type(r) for r in default]
    assert one != default  # more views, a different mean (were they equal, the setting did nothing)


def test_the_lesion_maps_average_the_photo_and_its_mirror_image() -> None:
    loaded = ModelRegistry([SHIPPED_MODEL_DIR]).load("skin-lesion-reference")
    cpu = resolve_execution("cpu")
    photo = decode_photo(eczema_photo(7), limits=IntakeLimits())
    two = LesionExtractor(loaded, cpu, views=2).probabilities([photo])
    one = LesionExtractor(loaded, cpu, views=1).probabilities([photo])
    size = loaded.manifest.input.size
    x = torch.from_numpy(np.asarray(_rgb(photo).resize((size, size), Image.Resampling.BILINEAR)).copy())
    x = x.permute(2, 0, 1)[None].float().div(255)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (NORMALISATION.mean, NORMALISATION.std))
    x = (x - mean) / std
    network = loaded.network().members[0].eval()
    with torch.inference_mode():
        plain = torch.softmax(network(x).float(), 1)
        mirrored = torch.softmax(network(x.flip(-1)).float(), 1).flip(-1)
    assert torch.allclose(one, plain, atol=1e-5)
    assert torch.allclose(two, (plain + mirrored) / 2, atol=1e-5)


def test_crop_models_abstain_on_spread_only_with_something_to_spread() -> None:
    loaded = ModelRegistry([SHIPPED_MODEL_DIR]).load("tumour-padufes")  # one member
    cpu = resolve_execution("cpu")

    def limit(views: int) -> float | None:
        options = EngineOptions(device="cpu", tta_views=views, max_spread=1e-9)
        return CropModel("skin-tumour", loaded, cpu, options).limits.max_spread

    assert limit(1) is None  # one view of one member: nothing to disagree
    assert limit(2) == 1e-9


def test_hb_runs_on_the_photo_alone_with_one_view_and_deterministically(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    eyelid = (EXAMPLES / "eyelid.png").read_bytes()
    for views, plan in ((1, IDENTITY_ONLY), (DEFAULT_TTA_VIEWS, HB_TTA)):
        pipeline = hb_pipeline_factory(EngineOptions(device="cpu", tta_views=views))
        assert pipeline is not None
        pre = pipeline.stages.stages[0]
        assert isinstance(pre, HbPreProcess) and pre.plan == plan
        monkeypatch.setenv("PHOTOMARKER_INFERENCE_TTA_VIEWS", str(views))
        clear_pipeline_cache()
        settings = load_settings()
        assert analysed(eyelid, settings, "conjunctiva") == analysed(eyelid, settings, "conjunctiva")
