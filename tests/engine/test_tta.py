"""Test-time augmentation and ensembles: views are exact, a symmetric photo gives one answer,
and the spread is the spread."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from models.engine.ensemble import aggregate_classifier, aggregate_regressor
from models.engine.execution import Execution
from models.engine.options import DEFAULT_TTA_VIEWS, EngineOptions
from models.engine.reference_data import as_photo
from models.engine.stages import Predict, PreProcess
from models.engine.tta import (
    IDENTITY_ONLY,
    VIEW_ORDER,
    TtaPlan,
    View,
    apply_geometry,
    expand,
    invert_geometry,
    invert_maps,
    plan_from,
)
from models.errors import SettingsError
from models.manifest import ALL_TTA_VIEWS, TtaSpec, TtaView
from models.registry import LoadedModel
from plugin.settings import load_settings
from tests.engine.conftest import reference_pipeline, skin_photo

GEOMETRIES: tuple[TtaView, ...] = (
    "identity",
    "hflip",
    "vflip",
    "rot90",
    "rot180",
    "rot270",
    "transpose",
    "antitranspose",
)


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_every_view_is_undone_exactly(geometry: TtaView) -> None:
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).view(2, 3, 5, 5)
    assert torch.equal(invert_geometry(apply_geometry(x, geometry), geometry), x)


def test_maps_from_views_come_back_in_the_photos_orientation() -> None:
    plan = TtaPlan(tuple(View(g) for g in GEOMETRIES))
    maps = torch.rand(3, 6, 6)  # three photos
    per_view = torch.cat([apply_geometry(maps, view.geometry) for view in plan.views])  # what a net would see
    restored = invert_maps(per_view, plan)
    assert restored.shape == (len(plan), 3, 6, 6)
    for index in range(len(plan)):
        assert torch.equal(restored[index], maps)


def test_the_plan_starts_untouched_and_adds_colour_jitter_last() -> None:
    plan = plan_from(TtaSpec(views=("identity", "rot90", "hflip"), jitter=0.05))
    assert plan.views[0] == View()
    # The manifest's order does not matter: the mirror image comes before the 90° turn.
    assert [v.geometry for v in plan.views] == ["identity", "hflip", "rot90", "identity", "identity"]
    assert (plan.views[3].brightness, plan.views[4].brightness) == (0.05, -0.05)
    assert plan_from(TtaSpec(), views=1) == IDENTITY_ONLY


def test_the_view_order_covers_every_view_once() -> None:
    assert sorted(VIEW_ORDER) == sorted(ALL_TTA_VIEWS) and VIEW_ORDER[0] == "identity"


@pytest.mark.parametrize("count", [1, 2, 4, 8])
def test_every_power_of_two_prefix_of_the_dihedral_plan_is_a_group(count: int) -> None:
    """The mean over such a prefix is unchanged when the photo is flipped or turned by one of its views."""
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
    chosen = VIEW_ORDER[:count]
    images = {geometry: apply_geometry(x, geometry) for geometry in chosen}
    for first in chosen:
        for second in chosen:
            composed = apply_geometry(apply_geometry(x, first), second)
            assert any(torch.equal(composed, image) for image in images.values()), (first, second)


def test_a_rotations_only_manifest_puts_the_half_turn_second() -> None:
    plan = plan_from(TtaSpec(views=("identity", "rot90", "rot180", "rot270"), jitter=0.0))
    assert [v.geometry for v in plan.views] == ["identity", "rot180", "rot90", "rot270"]


def test_a_view_count_takes_the_first_views_capped_at_the_plan() -> None:
    spec = TtaSpec(views=ALL_TTA_VIEWS, jitter=0.05)
    full = plan_from(spec)
    assert len(full) == 10
    assert plan_from(spec, views=None) == full
    assert plan_from(spec, views=100) == full
    for count in range(1, 11):
        assert plan_from(spec, views=count).views == full.views[:count]
    assert [v.geometry for v in plan_from(spec, views=2).views] == ["identity", "hflip"]
    assert full.prefix(3) == TtaPlan(full.views[:3])
    with pytest.raises(ValueError, match="at least one view"):
        full.prefix(0)


def test_engine_options_count_views_and_refuse_fewer_than_one() -> None:
    assert EngineOptions().view_count == DEFAULT_TTA_VIEWS
    assert EngineOptions(tta_views=3).view_count == 3
    assert EngineOptions(tta=False, tta_views=3).view_count == 1  # TTA off: the photo alone
    with pytest.raises(ValueError, match="at least 1"):
        EngineOptions(tta_views=0)


def test_the_views_setting_parses_validates_and_reaches_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.inference_tta_views == DEFAULT_TTA_VIEWS
    assert EngineOptions.from_settings(settings).view_count == DEFAULT_TTA_VIEWS
    monkeypatch.setenv("PHOTOMARKER_INFERENCE_TTA_VIEWS", "2")
    assert EngineOptions.from_settings(load_settings()).view_count == 2
    monkeypatch.setenv("PHOTOMARKER_INFERENCE_TTA", "false")
    assert EngineOptions.from_settings(load_settings()).view_count == 1
    for bad in ("0", "-1", "two"):
        monkeypatch.setenv("PHOTOMARKER_INFERENCE_TTA_VIEWS", bad)
        with pytest.raises(SettingsError, match="PHOTOMARKER_INFERENCE_TTA_VIEWS"):
            load_settings()


def test_the_pipeline_runs_on_the_views_asked_for(reference: LoadedModel, cpu: Execution) -> None:
    for count, expected in ((1, 1), (4, 4), (DEFAULT_TTA_VIEWS, 10)):
        pre = reference_pipeline(reference, cpu, heatmaps=False, tta_views=count).stages[0]
        assert isinstance(pre, PreProcess) and len(pre.plan) == expected
        assert pre.plan == plan_from(reference.manifest.tta).prefix(expected)


def test_expand_is_view_major() -> None:
    x = torch.rand(2, 3, 4, 4)
    plan = TtaPlan((View(), View("rot90")))
    out = expand(x, plan)
    assert out.shape == (4, 3, 4, 4)
    assert torch.equal(out[:2], x) and torch.equal(out[2:], x.rot90(1, (-2, -1)))


def symmetric_photo(size: int) -> Image.Image:
    """Concentric rings centred on the pixel grid: every flip and 90° rotation leaves it unchanged.

    Made at the network's input size: Pillow's two-pass resampling rounds rows and columns in a
    fixed order, so a resized copy would only be symmetric to within one grey level.
    """
    image = Image.new("RGB", (size, size), (205, 150, 120))
    draw = ImageDraw.Draw(image)
    for fraction, colour in ((0.4, (190, 135, 105)), (0.23, (40, 90, 210)), (0.09, (215, 160, 130))):
        radius = fraction * size
        draw.ellipse(
            (size / 2 - radius, size / 2 - radius, size / 2 + radius - 1, size / 2 + radius - 1), fill=colour
        )
    pixels = np.asarray(image)
    # Symmetrise exactly: averaging over all eight dihedral images leaves a D4-invariant array.
    views = [np.rot90(pixels, k) for k in range(4)] + [np.rot90(pixels[:, ::-1], k) for k in range(4)]
    return Image.fromarray(np.mean(views, axis=0).round().astype(np.uint8))


def test_a_rotation_invariant_photo_gets_the_same_output_in_every_view(
    reference: LoadedModel, cpu: Execution
) -> None:
    pipeline = reference_pipeline(reference, cpu, heatmaps=False)
    pre, predict = pipeline.stages[0], pipeline.stages[1]
    assert isinstance(pre, PreProcess) and isinstance(predict, Predict)
    geometric = TtaPlan(tuple(View(g) for g in GEOMETRIES))
    pre_geometric = PreProcess(pre.spec, geometric, cpu)
    raw = predict(pre_geometric([as_photo(symmetric_photo(pre.spec.size))]))
    outputs = raw.outputs[:, :, 0, :]  # (members, views, classes)
    # Each member says the same thing in all eight views (float rounding aside) …
    assert torch.allclose(outputs, outputs[:, :1, :].expand_as(outputs), atol=1e-4)
    aggregate = aggregate_classifier(raw.outputs, reference.manifest.calibration.temperature)
    # … so the only spread left is between members.
    members_only = aggregate_classifier(raw.outputs[:, :1], reference.manifest.calibration.temperature)
    assert float(aggregate.spread[0]) == pytest.approx(float(members_only.spread[0]), abs=1e-5)


def test_the_full_pipeline_agrees_with_itself_on_rotated_copies(
    reference: LoadedModel, cpu: Execution
) -> None:
    """The Ehime problem: a rotated photo must not get a different answer after TTA."""
    photo = skin_photo(11, marker_at=(0.25, 0.7))
    rotated = as_photo(photo.pixels.transpose(Image.Transpose.ROTATE_90))
    first, second = reference_pipeline(reference, cpu, heatmaps=False)([photo, rotated])
    assert first.probabilities is not None and second.probabilities is not None
    # The jitter views are not rotated with the photo, so agreement is close rather than exact.
    assert np.allclose(first.probabilities, second.probabilities, atol=0.02)
    assert first.spread == pytest.approx(second.spread, abs=0.02)


def test_classifier_spread_is_the_population_std_of_the_winning_class() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(3, 4, 5, 2)).astype(np.float32)  # members, views, photos, classes
    temperature = 1.7
    aggregate = aggregate_classifier(torch.from_numpy(logits), temperature)
    probs = np.exp(logits / temperature) / np.exp(logits / temperature).sum(-1, keepdims=True)
    flat = probs.reshape(12, 5, 2)
    mean = flat.mean(0)
    top = mean.argmax(-1)
    expected = np.array([flat[:, n, top[n]].std(ddof=0) for n in range(5)])
    np.testing.assert_allclose(aggregate.probabilities.numpy(), mean, atol=1e-6)
    np.testing.assert_allclose(aggregate.spread.numpy(), expected, atol=1e-6)
    assert aggregate.top.tolist() == top.tolist()


def test_regressor_spread_is_the_std_over_members_and_views() -> None:
    values = torch.tensor([[[[10.0], [12.0]], [[11.0], [12.0]]], [[[13.0], [12.0]], [[10.0], [12.0]]]])
    aggregate = aggregate_regressor(values)  # (2 members, 2 views, 2 photos, 1)
    assert aggregate.value.tolist() == pytest.approx([11.0, 12.0])
    assert aggregate.spread.tolist() == pytest.approx([float(np.std([10, 11, 13, 10])), 0.0])
