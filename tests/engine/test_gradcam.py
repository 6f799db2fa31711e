"""Grad-CAM: taken from the prediction's own forward pass, and it points at what drove the answer."""

from __future__ import annotations

import io
import math

import pytest
import torch
from PIL import Image

from models.engine.execution import Execution
from models.engine.gradcam import ActivationMap, grad_cam, render_overlay
from models.engine.stages import Predict
from models.registry import LoadedModel
from tests.engine.conftest import reference_pipeline, skin_photo


@pytest.mark.parametrize(
    "where", [(0.22, 0.25), (0.75, 0.3), (0.5, 0.78)], ids=["top-left", "top-right", "bottom"]
)
def test_the_map_peaks_on_the_planted_marker(
    reference: LoadedModel, cpu: Execution, where: tuple[float, float]
) -> None:
    size = 192
    photo = skin_photo(21, size=size, marker_at=where)
    (prediction,) = reference_pipeline(reference, cpu)([photo])
    explanation = prediction.explanation
    assert explanation is not None
    side = reference.manifest.input.size
    assert explanation.cam.shape == (side, side)
    assert explanation.cam.min() >= 0 and explanation.cam.max() == pytest.approx(1.0)
    assert explanation.box == (0, 0, size, size)
    x, y = explanation.peak()
    # The last block's map is 8×8, so "on the marker" means within about one cell (24 px here).
    assert math.dist((x, y), (where[0] * size, where[1] * size)) < 0.15 * size


def test_the_map_comes_from_the_same_forward_pass(reference: LoadedModel, cpu: Execution) -> None:
    pipeline = reference_pipeline(reference, cpu)
    predict = pipeline.stages[1]
    assert isinstance(predict, Predict)
    calls = []
    handles = [
        member.register_forward_pre_hook(lambda *_: calls.append(1)) for member in predict.network.members
    ]
    try:
        (prediction,) = pipeline([skin_photo(2, marker_at=(0.4, 0.4))])
    finally:
        for handle in handles:
            handle.remove()
    assert prediction.explanation is not None
    assert len(calls) == len(predict.network.members)  # one forward per member, no second pass


def test_without_heatmaps_there_is_no_backward_and_no_map(reference: LoadedModel, cpu: Execution) -> None:
    (prediction,) = reference_pipeline(reference, cpu, heatmaps=False)([skin_photo(3)])
    assert prediction.explanation is None


def test_grad_cam_weights_channels_by_their_mean_gradient() -> None:
    activation = torch.zeros(1, 2, 4, 4)
    activation[0, 0, 1, 2] = 5.0  # channel 0 fires at (1, 2)
    activation[0, 1, 3, 0] = 5.0  # channel 1 fires at (3, 0)
    gradient = torch.zeros(1, 2, 4, 4)
    gradient[0, 0] = 1.0  # only channel 0 raises the score
    gradient[0, 1] = -1.0
    cam = grad_cam(activation, gradient)
    assert cam.shape == (1, 4, 4)
    assert divmod(int(cam[0].argmax()), 4) == (1, 2)
    assert float(cam[0, 3, 0]) == 0.0  # negative evidence is clipped, as Grad-CAM's ReLU does


def test_the_overlay_is_a_png_the_size_of_a_preview() -> None:
    photo = Image.new("RGB", (1600, 1200), (200, 150, 120))
    cam = torch.zeros(64, 64)
    cam[10:20, 40:50] = 1.0
    png = render_overlay(photo, ActivationMap(cam.numpy(), (200, 0, 1400, 1200)))
    assert png.startswith(b"\x89PNG")
    overlay = Image.open(io.BytesIO(png))
    assert overlay.size == (512, 384)
    # Outside the square the network saw, the photo is dimmed; inside the hot spot it is coloured.
    assert overlay.getpixel((10, 200))[0] < 100  # type: ignore[index]
    hot = overlay.getpixel((64 + int(45 / 64 * 384), int(15 / 64 * 384)))
    assert hot[0] > hot[2]  # type: ignore[index]
