"""The model registry: what is installed, which package wins, and weights that are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from fhir_mappings.device import build_model_device
from models.engine.architectures import ReferenceCnn
from models.engine.network import ensemble_state_dict
from models.engine.reference_train import NAME as REFERENCE
from models.engine.reference_train import build
from models.errors import (
    ALL_ERRORS,
    InvalidModelManifest,
    ModelNotInstalled,
    ModelWeightsIncompatible,
    ModelWeightsMismatch,
    ModelWeightsMissing,
)
from models.manifest import ModelManifest, load_manifest, sha256_file
from models.registry import SHIPPED_MODEL_DIR, ModelRegistry, model_dirs, registry_for, save_model_package
from tests.engine.conftest import untrained_package


def test_a_written_package_has_manifest_weights_hash_and_card(tmp_path: Path) -> None:
    manifest = untrained_package(tmp_path)
    directory = tmp_path / manifest.name
    assert sorted(p.name for p in directory.iterdir()) == [
        "MODEL_CARD.md",
        "manifest.json",
        "weights.safetensors",
    ]
    assert manifest.weights.sha256 == sha256_file(directory / "weights.safetensors")
    assert load_manifest(directory) == manifest
    assert manifest.weights.parameters and manifest.weights.parameters > 0
    loaded = ModelRegistry([tmp_path]).load(manifest.name)
    assert loaded.info.weights_sha256 == manifest.weights.sha256
    assert len(loaded.network().members) == 1


def test_weights_whose_hash_differs_from_the_manifest_are_refused(tmp_path: Path) -> None:
    manifest = untrained_package(tmp_path)
    weights = tmp_path / manifest.name / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one flipped bit in the last tensor: still valid safetensors, different weights
    weights.write_bytes(bytes(data))
    registry = ModelRegistry([tmp_path])
    with pytest.raises(ModelWeightsMismatch) as refused:
        registry.load(manifest.name)
    assert refused.value.code == "model-weights-mismatch"
    assert "refusing" in refused.value.message
    with pytest.raises(ModelWeightsMismatch):
        registry.verify(manifest.name)
    assert ModelWeightsMismatch in ALL_ERRORS


def test_missing_or_never_hashed_weights_are_refused(tmp_path: Path) -> None:
    manifest = untrained_package(tmp_path)
    (tmp_path / manifest.name / "weights.safetensors").unlink()
    with pytest.raises(ModelWeightsMissing) as missing:
        ModelRegistry([tmp_path]).load(manifest.name)
    assert missing.value.code == "model-weights-missing"

    path = tmp_path / manifest.name / "manifest.json"
    data = json.loads(path.read_text())
    data["weights"]["sha256"] = "0" * 64
    path.write_text(json.dumps(data))
    with pytest.raises(InvalidModelManifest, match="never hashed"):
        ModelRegistry([tmp_path]).load(manifest.name)


def test_weights_for_another_architecture_are_refused(tmp_path: Path) -> None:
    manifest = untrained_package(tmp_path)
    wrong = ensemble_state_dict([ReferenceCnn(2, (8, 8, 8)).state_dict()])
    save_model_package(tmp_path / manifest.name, manifest, wrong, "# wrong\n")
    with pytest.raises(ModelWeightsIncompatible) as refused:
        ModelRegistry([tmp_path]).load(manifest.name).network()
    assert refused.value.code == "model-weights-incompatible"


def test_unknown_model_names_say_where_they_looked(tmp_path: Path) -> None:
    with pytest.raises(ModelNotInstalled) as missing:
        ModelRegistry([tmp_path]).get("no-such-model")
    assert missing.value.code == "model-not-installed"
    assert str(tmp_path) in missing.value.message


def test_the_configured_directory_comes_before_the_shipped_models(tmp_path: Path) -> None:
    assert model_dirs(tmp_path) == (tmp_path, SHIPPED_MODEL_DIR)
    untrained_package(tmp_path, name=REFERENCE)
    registry = ModelRegistry(model_dirs(tmp_path))
    assert registry.get(REFERENCE).directory == tmp_path / REFERENCE
    assert [p.name for p in registry.list()].count(REFERENCE) == 1
    assert ModelRegistry(model_dirs(None)).get(REFERENCE).directory == SHIPPED_MODEL_DIR / REFERENCE


def test_a_broken_package_is_reported_and_the_others_still_list(tmp_path: Path) -> None:
    untrained_package(tmp_path, name="good-one")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text('{"name": "broken", "threshold": 0.5}')
    registry = ModelRegistry([tmp_path])
    assert [p.name for p in registry.list()] == ["good-one"]
    (problem,) = registry.problems
    assert problem.directory == tmp_path / "broken"
    assert problem.error.code == "invalid-model-manifest"


def test_models_are_loaded_once_per_process(tmp_path: Path) -> None:
    manifest = untrained_package(tmp_path)
    registry = registry_for(tmp_path)
    assert registry_for(tmp_path) is registry
    first = registry.load(manifest.name)
    assert registry.load(manifest.name) is first
    assert first.network() is first.network()


def test_for_task_finds_packages_by_task(tmp_path: Path) -> None:
    untrained_package(tmp_path, name="a-model")
    registry = ModelRegistry(model_dirs(tmp_path))
    assert [p.name for p in registry.for_task("reference-marker")] == ["a-model", REFERENCE]
    assert registry.for_task("no-such-task") == []


def test_architectures_outside_the_models_package_are_never_imported(tmp_path: Path) -> None:
    manifest = untrained_package(tmp_path)
    path = tmp_path / manifest.name / "manifest.json"
    data = json.loads(path.read_text())
    data["architecture"]["name"] = "os:system"
    path.write_text(json.dumps(data))
    with pytest.raises(InvalidModelManifest, match="unknown architecture"):
        ModelRegistry([tmp_path]).load(manifest.name).network()


def test_the_shipped_reference_model_is_small_labelled_and_measured(
    reference_manifest: ModelManifest,
) -> None:
    manifest = reference_manifest
    assert manifest.reference_only
    assert "not for clinical use" in manifest.display_name
    assert (SHIPPED_MODEL_DIR / REFERENCE / "weights.safetensors").stat().st_size < 2 * 1024 * 1024
    assert manifest.task not in {"tis", "skin-condition", "skin-tumour", "hb"}
    assert manifest.training_data.source == "synthetic"
    assert manifest.evaluation.metrics["test_accuracy"] > 0.9
    assert manifest.evaluation.command.startswith(".venv/bin/python -m models.engine.reference_train")
    assert manifest.calibration.temperature > 0 and manifest.abstention.max_ood is not None
    card = (SHIPPED_MODEL_DIR / REFERENCE / manifest.card).read_text()
    assert "Reference — not for clinical use" in card
    assert manifest.weights.sha256 in card
    assert "| Starting weights | none" in card
    accuracy = manifest.evaluation.metrics
    assert accuracy["test_accuracy_low"] <= accuracy["test_accuracy"] <= accuracy["test_accuracy_high"]
    assert f"{accuracy['test_accuracy']:g} [{accuracy['test_accuracy_low']:g}, " in card


def test_re_evaluating_the_shipped_reference_model_reproduces_its_figures(tmp_path: Path) -> None:
    """``--re-evaluate`` keeps weights, calibration and thresholds, and the engine gives the same figures."""
    shutil.copytree(SHIPPED_MODEL_DIR / REFERENCE, tmp_path / REFERENCE)
    shipped = load_manifest(SHIPPED_MODEL_DIR / REFERENCE)
    again = build(tmp_path / REFERENCE, retrain=False, recalibrate=False)
    assert again.weights == shipped.weights
    assert again.calibration == shipped.calibration and again.abstention == shipped.abstention
    assert again.evaluation.metrics.keys() == shipped.evaluation.metrics.keys()
    for key, value in shipped.evaluation.metrics.items():
        assert again.evaluation.metrics[key] == pytest.approx(value, abs=0.002), key


def test_the_device_is_built_from_the_manifest(reference_manifest: ModelManifest) -> None:
    info = reference_manifest.model_info()
    device = build_model_device(info, "https://photomarker.example.org/fhir")
    assert device["identifier"][0]["value"] == reference_manifest.weights.sha256
    assert device["version"] == [{"value": reference_manifest.version}]
    assert device["safety"] == [{"text": "Reference model — not for clinical use"}]
    notes = " ".join(note["text"] for note in device["note"])
    assert f"Model card: {REFERENCE}/MODEL_CARD.md" in notes
    assert reference_manifest.task_description in notes


@pytest.fixture
def reference_manifest() -> ModelManifest:
    return ModelRegistry([SHIPPED_MODEL_DIR]).get(REFERENCE).manifest


def test_state_dicts_round_trip_through_a_package(tmp_path: Path) -> None:
    network = ReferenceCnn(2, (4, 8, 8))
    manifest = untrained_package(tmp_path)
    save_model_package(
        tmp_path / manifest.name, manifest, ensemble_state_dict([network.state_dict()]), "# card\n"
    )
    loaded = ModelRegistry([tmp_path]).load(manifest.name)
    for key, value in network.state_dict().items():
        assert torch.equal(loaded.tensors[f"members.0.{key}"], value)
