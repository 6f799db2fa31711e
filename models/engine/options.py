"""The engine's knobs, read from the settings object through a protocol (models never import plugin)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from models.engine.execution import DeviceChoice

# Test-time views per photo when TTA is on (``PHOTOMARKER_INFERENCE_TTA_VIEWS``; the settings'
# default is the same number): the first N of each manifest's plan, capped at what it has. 10 is
# every view any plan can have (eight flips and turns, two colour jitters): on 12 MP photos the
# whole skin analysis took 0.15–0.16 s median with all of them, 0.13–0.16 s with one
# (bench/skin.py, README "Test-time views and speed"), far inside the 1.0 s budget.
DEFAULT_TTA_VIEWS: Final = 10


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
    def inference_tta_views(self) -> int: ...

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
    tta_views: int = DEFAULT_TTA_VIEWS
    heatmaps: bool = True
    max_spread: float | None = None
    max_ood: float | None = None

    def __post_init__(self) -> None:
        if self.tta_views < 1:
            raise ValueError(f"tta_views is at least 1 (the photo itself), not {self.tta_views}")

    @property
    def view_count(self) -> int:
        """Views of each photo a model runs on: ``tta_views`` with TTA on, the photo alone with it off."""
        return self.tta_views if self.tta else 1

    @classmethod
    def from_settings(cls, settings: _EngineSettings) -> EngineOptions:
        return cls(
            model_dir=settings.model_dir,
            device=settings.device,
            batch_size=settings.inference_batch_size,
            threads=settings.inference_threads,
            compile=settings.inference_compile,
            tta=settings.inference_tta,
            tta_views=settings.inference_tta_views,
            heatmaps=settings.inference_heatmaps,
            max_spread=settings.abstain_max_spread,
            max_ood=settings.abstain_max_ood,
        )
