"""``train tumour --checkpoint-dir``: finished CV folds are kept and reused; --tta picks views from them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner, Result

from plugin.cli import main


def _train(data: Path, checkpoints: Path, *extra: str) -> Result:
    args = ["train", "tumour", "--data", str(data), "--cv", "2", "--epochs", "1", "--size", "32"]
    args += ["--backbone", "reference-cnn", "--threads", "1", "--no-final", "--json"]
    args += ["--checkpoint-dir", str(checkpoints), *extra]
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_a_second_run_reuses_the_saved_folds_and_fewer_test_time_views_are_read_from_them(
    real_subset: Callable[[int], Path], tmp_path: Path
) -> None:
    data, checkpoints = real_subset(2), tmp_path / "checkpoints"
    first = _train(data, checkpoints)
    assert first.exit_code == 0, first.output
    assert len(list(checkpoints.glob("*.pt"))) == 2
    again = _train(data, checkpoints)
    assert again.exit_code == 0, again.output
    assert again.stderr.count("(from checkpoint)") == 2
    before, after = json.loads(first.stdout), json.loads(again.stdout)
    assert after["auroc"] == before["auroc"]
    assert after["fold_malignant_auroc"] == before["fold_malignant_auroc"]
    # Where checkpoints go changes no figure, so the recorded command does not name it.
    assert "--checkpoint-dir" not in after["command"]
    # Fewer test-time views: the same folds (all four views are always computed and saved).
    single = _train(data, checkpoints, "--tta", "identity")
    assert single.exit_code == 0, single.output
    assert single.stderr.count("(from checkpoint)") == 2
    out = json.loads(single.stdout)
    assert out["recipe"].endswith("test-time views: identity")
    assert "--tta identity" in out["command"]
    refused = _train(data, checkpoints, "--tta", "mirror")
    assert refused.exit_code == 2 and "--tta" in refused.output
    # The type rule changes no training either: the same folds, the same malignant figures.
    ruled = _train(data, checkpoints, "--type-rule", "balanced")
    assert ruled.exit_code == 0, ruled.output
    assert ruled.stderr.count("(from checkpoint)") == 2
    out = json.loads(ruled.stdout)
    assert out["auroc"] == before["auroc"] and out["specificity"] == before["specificity"]
    assert out["six_class_balanced_accuracy_most_likely"] == before["six_class_balanced_accuracy"]
    assert out["recipe"].endswith("type suggested by the balanced rule (probability ÷ training prior)")
    assert "--type-rule balanced" in out["command"]


def test_a_fold_trained_in_its_own_process_gives_the_full_run_the_same_figures(
    real_subset: Callable[[int], Path], tmp_path: Path
) -> None:
    data, shared = real_subset(2), tmp_path / "shared"
    alone = _train(data, shared, "--fold", "2")
    assert alone.exit_code == 0, alone.output
    assert "fold 2/2: saved" in alone.stderr
    assert alone.stdout == ""  # no figures from one fold: the full run reports them
    assert len(list(shared.glob("*.pt"))) == 1
    whole = _train(data, shared)
    assert whole.exit_code == 0, whole.output
    assert whole.stderr.count("(from checkpoint)") == 1
    single = _train(data, tmp_path / "single")
    assert single.exit_code == 0, single.output
    joined, apart = json.loads(whole.stdout), json.loads(single.stdout)
    assert joined["fold_malignant_auroc"] == apart["fold_malignant_auroc"]
    assert joined["auroc"] == apart["auroc"]
    beyond = _train(data, shared, "--fold", "3")
    assert beyond.exit_code == 2 and "--fold" in beyond.output


def test_a_run_with_more_members_starts_from_the_members_a_smaller_run_saved(
    real_subset: Callable[[int], Path], tmp_path: Path
) -> None:
    data, shared = real_subset(2), tmp_path / "shared"
    one = _train(data, shared)
    assert one.exit_code == 0, one.output
    two = _train(data, shared, "--members", "2")
    assert two.exit_code == 0, two.output
    assert two.stderr.count("(1 of 2 members from checkpoint)") == 2
    assert len(list(shared.glob("*.pt"))) == 4
    fresh = _train(data, tmp_path / "fresh", "--members", "2")
    assert fresh.exit_code == 0, fresh.output
    # Member 0's held-out outputs are the one-member run's, so the figures are a fresh run's.
    reused, trained = json.loads(two.stdout), json.loads(fresh.stdout)
    assert reused["fold_malignant_auroc"] == trained["fold_malignant_auroc"]
    assert reused["auroc"] == trained["auroc"]
    assert reused["fold_malignant_auroc"] != json.loads(one.stdout)["fold_malignant_auroc"]
