"""Execution: CPU works everywhere, CUDA only when present, and the settings decide."""

from __future__ import annotations

import pytest
import torch

from models.engine.execution import autocast, available_cores, prepare_module, resolve_execution, to_device
from models.errors import DeviceUnavailable, SettingsError
from plugin.settings import load_settings

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


def test_cpu_runs_fp32_with_the_configured_threads() -> None:
    execution = resolve_execution("cpu", threads=1)
    assert execution.device.type == "cpu" and not execution.is_cuda
    assert execution.autocast_dtype is None and execution.channels_last
    assert torch.get_num_threads() == 1
    assert "1 threads" in execution.describe()
    assert resolve_execution("cpu").threads == available_cores()


def test_auto_uses_cuda_only_when_present() -> None:
    execution = resolve_execution("auto")
    assert execution.is_cuda == torch.cuda.is_available()
    if execution.is_cuda:
        assert execution.autocast_dtype == torch.bfloat16 and execution.channels_last and execution.pin_memory


@no_cuda
def test_cuda_requested_without_a_gpu_is_a_clear_error() -> None:
    with pytest.raises(DeviceUnavailable) as refused:
        resolve_execution("cuda")
    assert refused.value.code == "device-unavailable"
    assert "PHOTOMARKER_DEVICE=cuda" in refused.value.message


@no_cuda
def test_cuda_requested_without_a_gpu_stops_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHOTOMARKER_DEVICE", "cuda")
    with pytest.raises(SettingsError, match=r"PHOTOMARKER_DEVICE: .*no CUDA device"):
        load_settings()


def test_cpu_path_needs_nothing_from_a_gpu() -> None:
    execution = resolve_execution("cpu")
    module = prepare_module(torch.nn.Conv2d(3, 4, 3), execution)
    assert not any(p.requires_grad for p in module.parameters())
    batch = torch.zeros(2, 3, 8, 8)
    assert to_device(batch, execution) is batch
    with autocast(execution):
        assert module(batch).dtype == torch.float32


def test_engine_settings_have_sane_defaults() -> None:
    settings = load_settings()
    assert settings.inference_batch_size == 8 and settings.inference_threads == 0
    assert settings.inference_tta and settings.inference_heatmaps and not settings.inference_compile
    assert settings.abstain_max_spread is None and settings.abstain_max_ood is None
