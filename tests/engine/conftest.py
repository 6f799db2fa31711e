"""Fixtures for the inference engine: the shipped reference model, throw-away packages, photos."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from models.engine.architectures import ReferenceCnn
from models.engine.execution import Execution, resolve_execution
from models.engine.network import ensemble_state_dict
from models.engine.options import EngineOptions
from models.engine.reference_data import add_marker, as_photo, ood_photo, skin_patch, to_uint8
from models.engine.reference_train import NAME as REFERENCE
from models.engine.reference_train import base_manifest
from models.engine.stages import Pipeline
from models.intake import DecodedPhoto
from models.manifest import ModelManifest
from models.pipelines import build_model_pipeline, clear_pipeline_cache
from models.registry import SHIPPED_MODEL_DIR, LoadedModel, ModelRegistry, save_model_package

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fresh_engine_caches() -> Iterator[None]:
    """Each test sees the model directories it set up, not a pipeline cached by another test."""
    clear_pipeline_cache()
    threads = torch.get_num_threads()
    yield
    clear_pipeline_cache()
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def cpu() -> Execution:
    return resolve_execution("cpu")


@pytest.fixture(scope="session")
def reference() -> LoadedModel:
    """The shipped reference model, loaded (hash-checked) from the package."""
    return ModelRegistry([SHIPPED_MODEL_DIR]).load(REFERENCE)


def reference_pipeline(reference: LoadedModel, cpu: Execution, **options: Any) -> Pipeline:
    return build_model_pipeline(reference, cpu, EngineOptions(device="cpu", **options))


def skin_photo(
    seed: int,
    size: int = 96,
    marker_at: tuple[float, float] | None = None,
    *,
    radius: float = 0.06,
    opacity: float = 0.8,
) -> DecodedPhoto:
    """A generated skin patch (96 px: the training photos' scale); ``marker_at`` plants a blue dot.

    The default marker is a typical one from the training distribution; the boldest markers sit
    in the tail of the OOD score, close to the calibrated threshold.
    """
    rng = np.random.default_rng(seed)
    patch = skin_patch(rng, size)
    if marker_at is not None:
        centre = (marker_at[0] * size, marker_at[1] * size)
        add_marker(patch, rng, centre=centre, radius=radius, opacity=opacity)
    return as_photo(to_uint8(patch))


def noise_photo(seed: int = 0, size: int = 96) -> DecodedPhoto:
    return as_photo(ood_photo(np.random.default_rng(seed), size, "noise"))


def wall_photo(seed: int = 0, size: int = 96) -> DecodedPhoto:
    return as_photo(ood_photo(np.random.default_rng(seed), size, "wall"))


def png_bytes(photo: DecodedPhoto) -> bytes:
    buffer = io.BytesIO()
    photo.pixels.save(buffer, format="PNG")
    return buffer.getvalue()


def untrained_package(root: Path, name: str = "tiny-test", **changes: Any) -> ModelManifest:
    """A package with freshly initialised weights: enough for registry and CLI behaviour."""
    torch.manual_seed(0)
    base = base_manifest()
    architecture = base.architecture.model_copy(update={"ensemble_size": 1, "params": {"widths": [4, 8, 8]}})
    manifest = base.model_copy(update={"name": name, "architecture": architecture, **changes})
    state = ensemble_state_dict([ReferenceCnn(2, (4, 8, 8)).state_dict()])
    return save_model_package(root / name, manifest, state, f"# {name}\n\nTest package.\n")


def repackaged_reference(root: Path, name: str, **manifest_changes: Any) -> Path:
    """The shipped reference weights under another manifest (e.g. a test-only analysis task)."""
    source = SHIPPED_MODEL_DIR / REFERENCE
    target = root / name
    target.mkdir(parents=True)
    for item in source.iterdir():
        shutil.copy(item, target / item.name)
    data = json.loads((source / "manifest.json").read_text())
    data.update({"name": name, **manifest_changes})
    (target / "manifest.json").write_text(json.dumps(data))
    return target


def solid(colour: tuple[int, int, int], size: tuple[int, int]) -> Image.Image:
    return Image.new("RGB", size, colour)
