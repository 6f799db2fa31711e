"""The model registry: which model packages are installed, and loading them only when they check out.

Packages are searched in order — ``PHOTOMARKER_MODEL_DIR`` first, then the defaults shipped
inside this package (``models/weights``) — and the first package with a given name wins, so a
site can replace a shipped model without touching the installation. Weights are read once,
hashed, compared with the manifest and only then deserialised from those same bytes (no window
in which the file could change between the check and the load). Loaded models are cached for
the life of the process.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file

from models.engine.network import ModelEnsemble, build_ensemble
from models.errors import (
    InvalidModelManifest,
    ModelNotInstalled,
    ModelWeightsIncompatible,
    ModelWeightsMismatch,
    ModelWeightsMissing,
    PhotomarkerError,
)
from models.manifest import (
    MANIFEST_FILE,
    ModelManifest,
    WeightsSpec,
    load_manifest,
    save_manifest,
    sha256_file,
)
from models.results import ModelInfo

log = logging.getLogger(__name__)

SHIPPED_MODEL_DIR = Path(__file__).resolve().parent / "weights"
# A manifest whose weights were never hashed carries this; the registry refuses to load it.
PENDING_SHA256 = "0" * 64


@dataclass(frozen=True)
class ModelPackage:
    """An installed package: its manifest and where it lives. Nothing is loaded yet."""

    manifest: ModelManifest
    directory: Path

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def weights_path(self) -> Path:
        return self.directory / self.manifest.weights.file

    @property
    def card_path(self) -> Path:
        return self.directory / self.manifest.card

    def card_text(self) -> str | None:
        try:
            return self.card_path.read_text(encoding="utf-8")
        except OSError:
            return None


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A package whose weights passed the hash check, as tensors; ``network()`` builds the net once."""

    package: ModelPackage
    tensors: Mapping[str, torch.Tensor]
    _network: list[ModelEnsemble] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def manifest(self) -> ModelManifest:
        return self.package.manifest

    @property
    def info(self) -> ModelInfo:
        return self.manifest.model_info()

    def network(self) -> ModelEnsemble:
        """The torch network (CPU, eval mode) for manifests naming a neural architecture."""
        with self._lock:
            if not self._network:
                self._network.append(build_ensemble(self.manifest, self.tensors))
            return self._network[0]


@dataclass(frozen=True)
class PackageProblem:
    """A directory that looks like a package but cannot be used; ``photomarker models list`` shows it."""

    directory: Path
    error: PhotomarkerError


class ModelRegistry:
    """Installed model packages in ``model_dirs`` (earlier directories win on a name clash)."""

    def __init__(self, model_dirs: Sequence[Path]) -> None:
        self.model_dirs = tuple(model_dirs)
        self._lock = threading.Lock()
        self._loaded: dict[str, LoadedModel] = {}
        self._packages: dict[str, ModelPackage] | None = None
        self._problems: list[PackageProblem] = []

    def _scan(self) -> dict[str, ModelPackage]:
        with self._lock:
            if self._packages is None:
                packages: dict[str, ModelPackage] = {}
                for root in self.model_dirs:
                    for manifest_path in sorted(root.glob(f"*/{MANIFEST_FILE}")):
                        directory = manifest_path.parent
                        try:
                            manifest = load_manifest(manifest_path)
                            if manifest.name != directory.name:
                                raise InvalidModelManifest(
                                    f"{manifest_path}: name {manifest.name!r} differs from its directory"
                                )
                        except InvalidModelManifest as error:
                            log.error("skipping model package %s: %s", directory, error.message)
                            self._problems.append(PackageProblem(directory, error))
                            continue
                        packages.setdefault(manifest.name, ModelPackage(manifest, directory))
                self._packages = packages
            return self._packages

    def list(self) -> list[ModelPackage]:
        return sorted(self._scan().values(), key=lambda package: package.name)

    @property
    def problems(self) -> tuple[PackageProblem, ...]:
        self._scan()
        return tuple(self._problems)

    def get(self, name: str) -> ModelPackage:
        package = self._scan().get(name)
        if package is None:
            searched = ", ".join(str(path) for path in self.model_dirs) or "no directories"
            raise ModelNotInstalled(f"no model package named {name!r} (searched {searched})")
        return package

    def for_task(self, task: str) -> builtins.list[ModelPackage]:
        """Packages for ``task``, in search order (a site's own directory first)."""
        order = {name: index for index, name in enumerate(self._scan())}
        return sorted(
            (package for package in self._scan().values() if package.manifest.task == task),
            key=lambda package: order[package.name],
        )

    def verify(self, name: str) -> str:
        """Check the weights' hash (and any record model's) without loading them; returns the
        weights' SHA-256."""
        package = self.get(name)
        _check_weights_present(package)
        actual = sha256_file(package.weights_path)
        _check_hash(package, actual)
        if package.manifest.record is not None:
            read_verified(package, package.manifest.record.file, package.manifest.record.sha256)
        return actual

    def load(self, name: str) -> LoadedModel:
        """The package's weights, verified against the manifest; cached after the first call."""
        with self._lock:
            cached = self._loaded.get(name)
        if cached is not None:
            return cached
        package = self.get(name)
        _check_weights_present(package)
        data = package.weights_path.read_bytes()
        _check_hash(package, hashlib.sha256(data).hexdigest())
        try:
            tensors = load_safetensors(data)
        except (SafetensorError, ValueError) as exc:
            raise ModelWeightsIncompatible(f"{name}: the weights are not valid safetensors ({exc})") from None
        loaded = LoadedModel(package, tensors)
        log.info("loaded model %s %s (%d tensors)", name, package.manifest.version, len(tensors))
        with self._lock:
            return self._loaded.setdefault(name, loaded)


def read_verified(package: ModelPackage, file: str, sha256: str) -> bytes:
    """A file of the package (other than the weights), refused unless its SHA-256 is the manifest's."""
    path = package.directory / file
    try:
        data = path.read_bytes()
    except OSError:
        raise ModelWeightsMissing(f"{package.name}: {file} is not in the package") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ModelWeightsMismatch(
            f"{package.name}: {file} has SHA-256 {actual[:12]}…, the manifest says {sha256[:12]}…; "
            "refusing to use it"
        )
    return data


def _check_weights_present(package: ModelPackage) -> None:
    if package.manifest.weights.sha256 == PENDING_SHA256:
        raise InvalidModelManifest(f"{package.name}: the manifest's weights were never hashed")
    if not package.weights_path.is_file():
        raise ModelWeightsMissing(f"{package.name}: {package.manifest.weights.file} is not in the package")


def _check_hash(package: ModelPackage, actual: str) -> None:
    expected = package.manifest.weights.sha256
    if actual != expected:
        raise ModelWeightsMismatch(
            f"{package.name}: {package.manifest.weights.file} has SHA-256 {actual[:12]}…, "
            f"the manifest says {expected[:12]}…; refusing to load it"
        )


def model_dirs(model_dir: Path | None) -> tuple[Path, ...]:
    """The search path: the configured directory (when set) before the shipped defaults."""
    return (model_dir, SHIPPED_MODEL_DIR) if model_dir is not None else (SHIPPED_MODEL_DIR,)


@lru_cache(maxsize=8)
def registry_for(model_dir: Path | None) -> ModelRegistry:
    """The process-wide registry for a configured model directory (models load once per process)."""
    return ModelRegistry(model_dirs(model_dir))


@dataclass(frozen=True)
class PackageRequest:
    """Where a training run writes its package, under which name and version, and how it was made.

    ``command`` is what someone types to make it again (it goes into the card); the data
    description names the training data in the manifest.
    """

    directory: Path
    name: str
    version: str
    command: str
    data_description: str


def save_model_package(
    directory: Path,
    manifest: ModelManifest,
    state_dict: Mapping[str, torch.Tensor],
    card_markdown: str | Callable[[ModelManifest], str],
) -> ModelManifest:
    """Write a package: weights (safetensors), the manifest with their SHA-256, and the card.

    ``manifest.weights.sha256`` may be :data:`PENDING_SHA256`; it is replaced by the real hash.
    ``card_markdown`` may be a function of the final manifest, so the card can quote the hash
    and the metrics exactly as stored.
    """
    directory.mkdir(parents=True, exist_ok=True)
    weights_path = directory / manifest.weights.file
    tensors = {key: value.detach().cpu().contiguous() for key, value in state_dict.items()}
    # No safetensors metadata: it is serialised from an unordered map, so the same tensors could
    # hash differently on each save. Name and version live in the manifest.
    save_file(tensors, str(weights_path))
    weights_path.chmod(0o644)  # package data: readable by the service account that installs it
    weights = WeightsSpec(
        file=manifest.weights.file,
        sha256=sha256_file(weights_path),
        parameters=sum(value.numel() for value in tensors.values()),
    )
    final = ModelManifest.model_validate({**manifest.model_dump(), "weights": weights.model_dump()})
    card = card_markdown(final) if callable(card_markdown) else card_markdown
    (directory / final.card).write_text(card, encoding="utf-8")
    save_manifest(final, directory / MANIFEST_FILE)
    return final
