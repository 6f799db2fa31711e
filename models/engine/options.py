"""The engine's knobs, read from the settings object through a protocol (models never import plugin)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from models.engine.execution import DeviceChoice


class _EngineSettings(Protocol):
    """The settings fields the engine reads (satisfied by ``plugin.settings.Settings``)."""

    @property
    def model_dir(self) -> Path | None: ...

    @property
    def device(self) -> DeviceChoice: ...

    @property
    def inference_batch_size(self) -> int: ...

    @property
    def inference_threads(self) -> int: ...

    @property
    def inference_compile(self) -> bool: ...

    @property
    def inference_tta(self) -> bool: ...

    @property
    def inference_heatmaps(self) -> bool: ...

    @property
    def abstain_max_spread(self) -> float | None: ...

    @property
    def abstain_max_ood(self) -> float | None: ...


@dataclass(frozen=True)
class EngineOptions:
    model_dir: Path | None = None
    device: DeviceChoice = "auto"
    batch_size: int = 8
    threads: int = 0
    compile: bool = False
    tta: bool = True
    heatmaps: bool = True
    max_spread: float | None = None
    max_ood: float | None = None

    @classmethod
    def from_settings(cls, settings: _EngineSettings) -> EngineOptions:
        return cls(
            model_dir=settings.model_dir,
            device=settings.device,
            batch_size=settings.inference_batch_size,
            threads=settings.inference_threads,
            compile=settings.inference_compile,
            tta=settings.inference_tta,
            heatmaps=settings.inference_heatmaps,
            max_spread=settings.abstain_max_spread,
            max_ood=settings.abstain_max_ood,
        )
