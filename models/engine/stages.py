"""The three stages every model runs — ``pre_process → predict → post_process`` — each on a batch.

- :class:`PreProcess`: decoded photos → one normalised tensor on the device, every TTA view of
  every photo (view-major), and where on each photo the network's square input came from.
- :class:`Predict`: one forward per ensemble member over that tensor; the last conv block's
  activations (for Grad-CAM and the OOD score) are caught by hooks in the same pass.
- :class:`PostProcess`: calibrated mean and spread, OOD score, abstention — one
  :class:`Prediction` per photo.

:class:`Pipeline` runs a list of stages in order, in chunks of photos, timing each stage; the
lists themselves are written out in ``models.pipelines``, where the data path reads top to bottom.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torch.nn import functional

from models.engine.ensemble import aggregate_classifier, aggregate_regressor, mahalanobis_score
from models.engine.execution import Execution, autocast, maybe_compile, prepare_module, to_device
from models.engine.gradcam import ActivationCapture, ActivationMap, CaptureMode, grad_cam, normalise_maps
from models.engine.network import ModelEnsemble
from models.engine.tta import TtaPlan, expand, invert_maps
from models.intake import DecodedPhoto
from models.manifest import InputSpec, ModelManifest
from models.results import Abstention

Box = tuple[int, int, int, int]
In = TypeVar("In", contravariant=True)
Out = TypeVar("Out", covariant=True)


class Stage(Protocol[In, Out]):
    """One step of a pipeline: a batch in, a batch out."""

    name: str

    def __call__(self, batch: In, /) -> Out: ...


@dataclass
class StageTimings:
    """Seconds spent per stage (summed over chunks) and photos seen, for the benchmark."""

    seconds: dict[str, float] = field(default_factory=dict)
    photos: int = 0

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds


class Pipeline:
    """Stages run in order over chunks of at most ``batch_size`` photos; the last stage returns a list."""

    def __init__(
        self,
        stages: Sequence[Stage[Any, Any]],
        *,
        batch_size: int = 8,
        sync: Callable[[], None] | None = None,
    ) -> None:
        if not stages:
            raise ValueError("a pipeline needs at least one stage")
        self.stages = tuple(stages)
        self.batch_size = batch_size
        self._sync = sync or (lambda: None)
        # One network, one set of hooks: concurrent callers (threads) take turns.
        self._lock = threading.Lock()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(stage.name for stage in self.stages)

    def __call__(self, photos: Sequence[Any], timings: StageTimings | None = None) -> list[Any]:
        results: list[Any] = []
        with self._lock:
            for start in range(0, len(photos), self.batch_size):
                batch: Any = photos[start : start + self.batch_size]
                for stage in self.stages:
                    began = time.perf_counter()
                    batch = stage(batch)
                    if timings is not None:
                        self._sync()  # so a GPU stage is charged for its own work
                        timings.add(stage.name, time.perf_counter() - began)
                results.extend(batch)
                if timings is not None:
                    timings.photos += min(self.batch_size, len(photos) - start)
        return results


# --- the network, prepared for one execution target ----------------------------------------------


class PreparedNetwork:
    """A private copy of the ensemble on the device, hooks fitted, compiled when asked."""

    def __init__(self, network: ModelEnsemble, execution: Execution) -> None:
        own = copy.deepcopy(network)  # the registry's cached CPU network stays untouched
        self.execution = execution
        self.members: list[nn.Module] = [prepare_module(member, execution) for member in own.members]
        self.captures = [ActivationCapture(member.get_submodule(own.cam_layer)) for member in self.members]
        self.runners: list[nn.Module] = [maybe_compile(member, execution) for member in self.members]
        self.ood: tuple[Tensor, Tensor] | None = None
        if own.ood_mean is not None and own.ood_precision is not None:
            self.ood = (own.ood_mean.cpu(), own.ood_precision.cpu())

    def forward_only(self, inputs: Tensor) -> list[Tensor]:
        """Plain inference, no hooks, no post-processing: the benchmark's yardstick."""
        with torch.inference_mode(), autocast(self.execution):
            return [runner(inputs) for runner in self.runners]


# --- pre_process ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PreparedBatch:
    # (K·N, 3, S, S), normalised, on the device; on the CPU a view of a buffer that the next
    # pre_process call of the same pipeline overwrites (the pipeline predicts before that).
    inputs: Tensor
    count: int
    boxes: tuple[Box, ...]
    plan: TtaPlan


def input_box(size: tuple[int, int], spec: InputSpec) -> Box:
    width, height = size
    if spec.resize == "squash":
        return (0, 0, width, height)
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return (left, top, left + side, top + side)


def photo_array(photo: DecodedPhoto, spec: InputSpec) -> tuple[np.ndarray[Any, np.dtype[np.uint8]], Box]:
    """The network's S×S×3 uint8 view of one photo, and the box of the photo it covers."""
    pixels = photo.pixels
    if photo.alpha is not None:
        background = spec.background or tuple(round(255 * m) for m in spec.normalisation.mean)
        canvas = Image.new("RGB", pixels.size, background)
        canvas.paste(pixels, mask=photo.alpha)
        pixels = canvas
    box = input_box(pixels.size, spec)
    # reducing_gap: shrink by whole factors first (fast box filter), then resample properly.
    resized = pixels.resize((spec.size, spec.size), Image.Resampling.BILINEAR, box=box, reducing_gap=2.0)
    return np.asarray(resized, dtype=np.uint8), box


class PreProcess:
    """Decoded photos → the TTA-expanded, normalised input tensor on the device."""

    name = "pre_process"

    def __init__(self, spec: InputSpec, plan: TtaPlan, execution: Execution) -> None:
        self.spec = spec
        self.plan = plan
        self.execution = execution
        self._buffer: Tensor | None = None
        device = execution.device
        self._mean = torch.tensor(spec.normalisation.mean, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(spec.normalisation.std, device=device).view(1, 3, 1, 1)

    def __call__(self, photos: Sequence[DecodedPhoto]) -> PreparedBatch:
        arrays, boxes = zip(*(photo_array(photo, self.spec) for photo in photos), strict=True)
        # uint8 across the bus (4x fewer bytes than float), converted on the device.
        host = torch.from_numpy(np.stack(arrays))
        x01 = to_device(host, self.execution).permute(0, 3, 1, 2).float().div_(255)
        layout = torch.channels_last if self.execution.channels_last else torch.contiguous_format
        inputs = expand(x01, self.plan, self._mean, self._std, layout, self._staging(len(photos), layout))
        return PreparedBatch(inputs, len(photos), tuple(boxes), self.plan)

    def _staging(self, count: int, layout: torch.memory_format) -> Tensor | None:
        """A reused CPU input buffer. A fresh tensor of tens of MB pays a page fault per 4 KiB on
        first write, which cost more than writing the TTA views themselves (30 of 35 ms for eight
        photos at 224 px here). On CUDA the caching allocator already reuses memory."""
        if self.execution.is_cuda:
            return None
        rows = len(self.plan) * count
        if self._buffer is None or self._buffer.shape[0] < rows:
            shape = (rows, 3, self.spec.size, self.spec.size)
            self._buffer = torch.empty(shape, device=self.execution.device, memory_format=layout)
        return self._buffer[:rows]


# --- predict -------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class RawOutputs:
    outputs: Tensor  # (M, K, N, C) float32 on the CPU: logits, or a regressor's raw value
    features: Tensor  # (M, N, D) pooled cam-layer features of the untouched view
    cams: Tensor | None  # (N, S, S) in 0–1, back in each photo's orientation
    boxes: tuple[Box, ...]


class Predict:
    """One forward per member; Grad-CAM from the same pass (backward through the head only)."""

    name = "predict"

    def __init__(self, network: PreparedNetwork, manifest: ModelManifest, *, explain: bool) -> None:
        self.network = network
        self.kind = manifest.output.kind
        self.levels = manifest.output.levels
        self.temperature = manifest.calibration.temperature
        self.explain = explain

    def __call__(self, batch: PreparedBatch) -> RawOutputs:
        k, n = len(batch.plan), batch.count
        mode: CaptureMode = "explain" if self.explain else "capture"
        outputs: list[Tensor] = []
        activations: list[Tensor] = []
        grad_mode = torch.enable_grad() if self.explain else torch.inference_mode()
        with grad_mode, autocast(self.network.execution):
            for runner, capture in zip(self.network.runners, self.network.captures, strict=True):
                capture.mode = mode
                try:
                    outputs.append(runner(batch.inputs))
                    activations.append(capture.take())
                finally:
                    capture.mode = "off"
            stacked = torch.stack([output.float() for output in outputs])  # (M, K·N, C)
            raw = stacked.reshape(stacked.shape[0], k, n, stacked.shape[-1])
            # Rows 0..n-1 are view 0, the untouched photo: the OOD score judges the photo as taken.
            features = torch.stack([activation[:n].float().mean(dim=(2, 3)) for activation in activations])
            cams = self._cams(raw, activations, batch) if self.explain else None
        return RawOutputs(raw.detach().cpu(), features.detach().cpu(), cams, batch.boxes)

    def _cams(self, raw: Tensor, activations: list[Tensor], batch: PreparedBatch) -> Tensor:
        if self.kind == "classifier":
            # Explain the class the reported mean picks, in every member and view.
            target = aggregate_classifier(raw.detach(), self.temperature).top
            index = target.view(1, 1, -1, 1).expand(*raw.shape[:3], 1)
            score = raw.gather(3, index).sum()
        elif self.kind == "ordinal" and self.levels is not None:
            # Explain the expected severity (sum over items of each item's expected level).
            per_item = raw.reshape(*raw.shape[:3], -1, self.levels)
            scale = torch.arange(self.levels, dtype=per_item.dtype, device=per_item.device)
            score = (torch.softmax(per_item / self.temperature, dim=-1) * scale).sum()
        else:
            score = raw.sum()
        gradients = torch.autograd.grad(score, activations)
        maps = torch.stack([grad_cam(a, g) for a, g in zip(activations, gradients, strict=True)])
        per_view = normalise_maps(invert_maps(maps.detach(), batch.plan))  # (M, K, N, h, w)
        cam = normalise_maps(per_view.mean(dim=(0, 1)))
        size = batch.inputs.shape[-1]
        upsampled = functional.interpolate(
            cam.unsqueeze(1), size=(size, size), mode="bilinear", align_corners=False
        )
        # Upsampling blurs the peak below 1; rescale so every map spans 0–1 on the input grid.
        return normalise_maps(upsampled.squeeze(1).float()).cpu()


# --- post_process --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Prediction:
    """What one model concluded about one photo, before it is put in clinical terms."""

    probabilities: tuple[float, ...] | None  # classifier: calibrated, in label order
    value: float | None  # regressor: in the manifest's unit
    spread: float
    ood_score: float | None
    abstention: Abstention | None
    explanation: ActivationMap | None


@dataclass(frozen=True)
class AbstentionLimits:
    max_spread: float | None
    max_ood: float | None


class PostProcess:
    """Calibrate, aggregate members × views, score OOD, and decide whether to abstain."""

    name = "post_process"

    def __init__(
        self, manifest: ModelManifest, limits: AbstentionLimits, ood: tuple[Tensor, Tensor] | None
    ) -> None:
        self.manifest = manifest
        self.limits = limits
        self.ood = ood

    def __call__(self, raw: RawOutputs) -> list[Prediction]:
        ood = mahalanobis_score(raw.features, *self.ood).tolist() if self.ood is not None else None
        output = self.manifest.output
        probabilities: list[tuple[float, ...] | None]
        if output.kind == "classifier":
            aggregate = aggregate_classifier(raw.outputs, self.manifest.calibration.temperature)
            probabilities = [tuple(row) for row in aggregate.probabilities.tolist()]
            values: list[float | None] = [None] * len(probabilities)
            spreads = aggregate.spread.tolist()
        else:
            regression = aggregate_regressor(raw.outputs)
            values = [v * output.scale + output.offset for v in regression.value.tolist()]
            probabilities = [None] * len(values)
            spreads = [s * abs(output.scale) for s in regression.spread.tolist()]
        predictions = []
        for index, spread in enumerate(spreads):
            score = ood[index] if ood is not None else None
            explanation = None
            if raw.cams is not None:
                explanation = ActivationMap(raw.cams[index].numpy(), raw.boxes[index])
            predictions.append(
                Prediction(
                    probabilities=probabilities[index],
                    value=values[index],
                    spread=spread,
                    ood_score=score,
                    abstention=self._abstain(spread, score),
                    explanation=explanation,
                )
            )
        return predictions

    def _abstain(self, spread: float, ood: float | None) -> Abstention | None:
        limits = self.limits
        if ood is not None and limits.max_ood is not None and ood > limits.max_ood:
            return Abstention(
                reason=f"the photo is unlike those the model was trained on (threshold {limits.max_ood:.3g})",
                spread=spread,
                ood_score=ood,
            )
        if limits.max_spread is not None and spread > limits.max_spread:
            return Abstention(
                reason="the rotated, flipped and recoloured views (and ensemble members) disagree "
                f"(threshold {limits.max_spread:.3g})",
                spread=spread,
                ood_score=ood,
            )
        return None
