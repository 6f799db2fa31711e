"""Where and how networks run: CUDA when present (bf16 autocast, channels_last, pinned transfers,
optional ``torch.compile``), the CPU otherwise (fp32, channels_last, an explicit thread count).

No code path needs a GPU. ``PHOTOMARKER_DEVICE=cuda`` on a machine without one is refused with
:class:`~models.errors.DeviceUnavailable` rather than silently falling back, because a GPU
worker that quietly runs on CPU misses its latency budget without anyone knowing why.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from models.errors import DeviceUnavailable

log = logging.getLogger(__name__)

DeviceChoice = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True)
class Execution:
    """One resolved execution target; build it with :func:`resolve_execution`."""

    device: torch.device
    # bf16 on CUDA: same exponent range as fp32 (no loss scaling), ~2x faster matmuls on tensor cores.
    autocast_dtype: torch.dtype | None
    channels_last: bool
    compile: bool
    pin_memory: bool
    threads: int

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def describe(self) -> str:
        if self.is_cuda:
            name = torch.cuda.get_device_name(self.device)
            return f"cuda ({name}, bf16 autocast, channels_last, compile={self.compile})"
        return f"cpu ({self.threads} threads, fp32, channels_last)"


def available_cores() -> int:
    """Cores this process may use (respects taskset/cgroup CPU affinity, unlike os.cpu_count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_execution(device: DeviceChoice = "auto", *, threads: int = 0, compile: bool = False) -> Execution:
    """``threads=0`` means one per available core; only the CPU path uses it for math."""
    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise DeviceUnavailable(
            "PHOTOMARKER_DEVICE=cuda but no CUDA device is available "
            "(no GPU, no driver, or a CPU-only torch build); use 'auto' or 'cpu'"
        )
    use_cuda = cuda and device != "cpu"
    count = threads or available_cores()
    _set_threads(count)
    if use_cuda:
        return Execution(torch.device("cuda"), torch.bfloat16, True, compile, True, count)
    # channels_last on the CPU too: oneDNN's NHWC convolutions ran ~15 % faster on the reference net.
    return Execution(torch.device("cpu"), None, True, compile, False, count)


def _set_threads(count: int) -> None:
    if torch.get_num_threads() != count:
        # More intra-op threads than cores only adds contention on a shared worker node.
        torch.set_num_threads(count)
        log.debug("torch intra-op threads set to %d", count)


def prepare_module(module: nn.Module, execution: Execution) -> nn.Module:
    """Move to the device in eval mode with gradients off for parameters (Grad-CAM needs none)."""
    module = module.to(execution.device).eval()
    module.requires_grad_(False)
    if execution.channels_last:
        module = module.to(memory_format=torch.channels_last)
    return module


def maybe_compile(module: nn.Module, execution: Execution) -> nn.Module:
    if not execution.compile:
        return module
    # "reduce-overhead" uses CUDA graphs, which pay off for the small fixed batches a worker sees.
    mode = "reduce-overhead" if execution.is_cuda else "default"
    return torch.compile(module, mode=mode, dynamic=False)  # type: ignore[return-value]


def to_device(batch: Tensor, execution: Execution) -> Tensor:
    """Host → device; pinned memory lets the copy overlap with the previous batch's compute."""
    if not execution.is_cuda:
        return batch
    if execution.pin_memory:
        batch = batch.pin_memory()
    return batch.to(execution.device, non_blocking=True)


@contextlib.contextmanager
def autocast(execution: Execution) -> Iterator[None]:
    if execution.autocast_dtype is None:
        yield
        return
    with torch.autocast(device_type=execution.device.type, dtype=execution.autocast_dtype):
        yield


def synchronise(execution: Execution) -> None:
    """Wait for queued GPU work (for honest timings); nothing to do on the CPU."""
    if execution.is_cuda:
        torch.cuda.synchronize(execution.device)
