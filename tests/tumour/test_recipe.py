"""The recipe's parts: colour constancy, Ehime augmentations, metadata, OOD, the ablation table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.engine.architectures import build_member
from models.manifest import load_manifest
from models.registry import SHIPPED_MODEL_DIR
from models.tumour.ablation import append, render
from models.tumour.dataset import CLASSES, load_samples
from models.tumour.metadata import QUESTIONS, late_fusion, load_metadata
from models.tumour.network import ShadesOfGrey, cam_layer
from models.tumour.package import type_rule_text
from models.tumour.report import tumour_report
from models.tumour.training import (
    AUGMENTATIONS,
    OPTIONAL_AUGMENTATIONS,
    TumourTrainingConfig,
    augment,
    build_network,
    decision_weights,
    feature_gaussian,
    ood_scores,
)
from tests.tumour.conftest import PAD_UFES


def test_shades_of_grey_removes_a_colour_cast_and_keeps_the_black_surround() -> None:
    torch.manual_seed(0)
    lesion = torch.rand(1, 3, 32, 32) * 0.5 + 0.25
    cast = lesion * torch.tensor([1.0, 0.7, 0.5]).view(1, 3, 1, 1)  # a warm lamp
    x = torch.zeros(1, 3, 48, 48)
    x[:, :, 8:40, 8:40] = cast
    out = ShadesOfGrey()(x)
    assert out[:, :, :8].abs().max() == 0, "the cut-out's black surround stays black"
    means = out[0, :, 8:40, 8:40].mean((1, 2))
    original = lesion[0].mean((1, 2))
    # Channel balance comes back close to the uncast lesion's.
    assert torch.allclose(means / means.mean(), original / original.mean(), atol=0.05)


def test_each_ehime_augmentation_can_be_switched_off() -> None:
    x = torch.rand(4, 3, 32, 32)
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(augment(x, generator, ()), x)
    for part in (*AUGMENTATIONS, *OPTIONAL_AUGMENTATIONS):
        out = augment(x, torch.Generator().manual_seed(1), (part,))
        assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 1
        assert not torch.equal(out, x) or part == "blur"  # blur touches ~30 % of photos


def test_scale_jitter_zooms_both_in_and_out() -> None:
    # A white frame: zoomed out, black surround appears at the border; zoomed in, it never does.
    x = torch.ones(64, 3, 32, 32)
    out = augment(x, torch.Generator().manual_seed(0), ("scale",))
    border_black = (out[:, :, 0, :].mean((1, 2)) < 0.5) | (out[:, :, -1, :].mean((1, 2)) < 0.5)
    kept = out.mean((1, 2, 3))
    assert 0.2 < float(border_black.float().mean()) < 0.8, "some crops zoom out, some zoom in"
    assert float(kept.min()) > 0.4, "zoomed out at most ×0.7: the lesion's frame stays in view"
    crop_only = augment(x, torch.Generator().manual_seed(0), ("crop",))
    assert float(crop_only.mean()) > 0.98, "the default crop only ever zooms in"


def test_the_balanced_rule_divides_by_the_prior_the_network_was_trained_under() -> None:
    labels = torch.tensor([0] * 64 + [1] * 16 + [2] * 4 + [3] * 16 + [4] * 16 + [5] * 64)
    assert torch.equal(decision_weights(labels, TumourTrainingConfig()), torch.ones(len(CLASSES)))
    weights = decision_weights(labels, TumourTrainingConfig(type_rule="balanced"))
    # Loss weights 1/√n leave a prior ∝ √n: a type 16 times rarer weighs 4 times more.
    assert float(weights[2] / weights[0]) == pytest.approx(4.0)
    assert float(weights.mean()) == pytest.approx(1.0)
    balanced_batches = TumourTrainingConfig(type_rule="balanced", balanced_sampling=True)
    assert torch.equal(decision_weights(labels, balanced_batches), torch.ones(len(CLASSES)))


def test_the_type_rule_changes_the_six_class_figures_not_the_malignancy_ones() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(len(CLASSES)), [40, 10, 5, 30, 20, 40])
    probabilities = rng.dirichlet(np.ones(len(CLASSES)), len(labels))
    probabilities[np.arange(len(labels)), labels] += 0.3  # informative, but common types win ties
    probabilities[:, 0] += 0.4
    probabilities /= probabilities.sum(1, keepdims=True)
    groups = [str(i) for i in range(len(labels))]
    plain = tumour_report(probabilities, labels, groups, [None] * len(labels), resamples=20)
    weights = np.full(len(CLASSES), 1.0)
    weights[0] = 0.4
    ruled = tumour_report(
        probabilities, labels, groups, [None] * len(labels), decision_weights=weights, resamples=20
    )
    assert ruled.malignant.metrics["auroc"].value == plain.malignant.metrics["auroc"].value
    assert ruled.threshold == plain.threshold
    assert ruled.balanced_accuracy_6 > plain.balanced_accuracy_6
    assert ruled.balanced_accuracy_6_most_likely == plain.balanced_accuracy_6
    assert plain.balanced_accuracy_6_most_likely == plain.balanced_accuracy_6


def test_the_card_says_which_rule_names_the_type_and_gives_both_figures() -> None:
    manifest = load_manifest(SHIPPED_MODEL_DIR / "tumour-padufes")
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(len(CLASSES)), 8)
    probabilities = rng.dirichlet(np.ones(len(CLASSES)), len(labels))
    report = tumour_report(probabilities, labels, [str(i) for i in range(48)], [None] * 48, resamples=10)
    assert "names is the most likely one" in type_rule_text(manifest, report)
    weights = [0.5, 1.5, 2.5, 0.8, 0.9, 0.4]
    labels_weighed = tuple(
        label.model_copy(update={"decision_weight": w})
        for label, w in zip(manifest.labels, weights, strict=True)
    )
    weighed = manifest.model_copy(update={"labels": labels_weighed})
    text = type_rule_text(weighed, report)
    assert "BCC 0.50, SCC 1.50, MEL 2.50" in text and "Naming the most likely type instead" in text


def test_the_manifest_builder_makes_the_same_network_as_training() -> None:
    config = TumourTrainingConfig(size=32)
    spec = config.architecture(2)
    member = build_member(spec.name, len(CLASSES), dict(spec.params))
    trained = build_network(config)
    assert set(member.state_dict()) == set(trained.state_dict())
    assert member.get_submodule(cam_layer(config.backbone)) is not None
    small = TumourTrainingConfig(backbone="reference-cnn", widths=(8, 16, 16), colour_constancy=False)
    assert build_member(small.architecture(1).name, 6, dict(small.architecture(1).params))(
        torch.rand(2, 3, 32, 32)
    ).shape == (2, 6)


def test_the_ood_gaussian_copes_with_a_class_missing_from_training() -> None:
    config = TumourTrainingConfig(backbone="reference-cnn", widths=(8, 16, 16), size=32)
    member = build_network(config).eval()
    x = torch.rand(12, 3, 32, 32)
    labels = torch.tensor([0, 0, 1, 1, 3, 3, 4, 4, 0, 1, 3, 4])  # no SCC (2) or NEV (5)
    means, precision = feature_gaussian([member], x, labels, cam_layer(config.backbone))
    assert means.shape[:2] == (1, 4) and precision.shape[0] == 1
    scores = ood_scores([member], torch.rand(3, 3, 32, 32), (means, precision), cam_layer(config.backbone))
    assert scores.shape == (3,) and bool(torch.isfinite(scores).all())


def test_metadata_uses_only_answers_every_photo_has() -> None:
    samples = load_samples(PAD_UFES / "labels.csv")[:30]
    table = load_metadata(PAD_UFES / "labels.csv", samples)
    assert table.features.shape == (30, len(table.names))
    assert table.names[: 1 + len(QUESTIONS)] == ("age", *QUESTIONS)
    # Columns missing for the non-biopsied photos would give the label away.
    for leaky in ("biopsed", "smoke", "fitspatrick", "diameter_1", "skin_cancer_history"):
        assert not any(leaky in name for name in table.names)
    assert np.all(table.features[:, 7:].sum(1) == 1), "exactly one body region per photo"


def test_late_fusion_is_the_mean_of_log_odds() -> None:
    fused = late_fusion(np.array([0.5, 0.9, 0.1]), np.array([0.5, 0.9, 0.9]))
    assert fused == pytest.approx([0.5, 0.9, 0.5])


def test_the_ablation_table_is_rendered_from_run_outputs(tmp_path: Path) -> None:
    figure = {"value": 0.8, "low": 0.7, "high": 0.9}
    run = {
        "command": "photomarker train tumour --data x.csv --cv 5 --no-final",
        "recipe": "recipe X",
        "auroc": figure,
        "specificity": figure,
        "fold_malignant_auroc": [0.8, 0.9],
        "malignant_or_ack_vs_rest": {"auroc": figure},
        "per_class": {"MEL": {"auroc": figure}},
        "six_class_balanced_accuracy": 0.5,
        "cv_seconds": 12.0,
    }
    path = tmp_path / "run.json"
    path.write_text(json.dumps(run))
    table = render([path])
    assert "| first row | recipe X | 0.800 [0.700, 0.900] | 0.850 |" in table
    assert "`photomarker train tumour --data x.csv --cv 5 --no-final`" in table
    ruled = {**run, "six_class_balanced_accuracy": 0.6, "six_class_balanced_accuracy_most_likely": 0.5}
    path.write_text(json.dumps(ruled))
    assert "| 0.600 (most likely type: 0.500) |" in render([path])


def test_rows_are_appended_to_an_existing_table_against_its_first_rows_recipe(tmp_path: Path) -> None:
    figure = {"value": 0.8, "low": 0.7, "high": 0.9}
    run = {
        "command": "photomarker train tumour --data x.csv --cv 5",
        "recipe": "a; b",
        "auroc": figure,
        "specificity": figure,
        "fold_malignant_auroc": [0.8],
        "malignant_or_ack_vs_rest": {"auroc": figure},
        "per_class": {"MEL": {"auroc": figure}},
        "six_class_balanced_accuracy": 0.5,
        "cv_seconds": 1.0,
    }
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    first.write_text(json.dumps(run))
    second.write_text(json.dumps({**run, "recipe": "a; c", "command": f"{run['command']} --members 2"}))
    table = tmp_path / "ABLATION.md"
    table.write_text(render([first]) + "\nprose after the table\n")
    table.write_text(append(table, [second]))
    lines = table.read_text().split("\n")
    rows = [line for line in lines if line.startswith("| ") and "---" not in line][1:]
    assert rows[0].startswith("| first row | a; b |")
    assert rows[1].startswith("| c; 2 members | a; c | 0.800 [0.700, 0.900] |")
    assert lines.index(rows[1]) < lines.index("prose after the table")
