"""Every shipped package's model card says what an auditor needs before trusting a figure.

Training data, the starting weights (and their licence when there are any), metrics with 95 %
confidence intervals, intended use and limits; a package trained on generated data says
"reference — not for clinical use" where its name surfaces.
"""

from __future__ import annotations

import re

import pytest

from models.registry import SHIPPED_MODEL_DIR, ModelRegistry

REGISTRY = ModelRegistry([SHIPPED_MODEL_DIR])
PACKAGES = [package.name for package in REGISTRY.list()]
# "0.898 [0.883, 0.912]", "99.2% [98.1%, 100.0%]", "1.61 [1.43, 1.82]"
INTERVAL = re.compile(r"\d[\d.]*%? \[-?\d[\d.]*%?, -?\d[\d.]*%?\]")


def test_every_package_directory_is_covered() -> None:
    assert len(PACKAGES) == len([p for p in SHIPPED_MODEL_DIR.iterdir() if (p / "manifest.json").is_file()])


@pytest.mark.parametrize("name", PACKAGES)
def test_the_card_gives_data_start_metrics_with_cis_use_and_limits(name: str) -> None:
    package = REGISTRY.get(name)
    manifest = package.manifest
    card = package.card_text() or ""
    headings = re.findall(r"^## (.+)$", card, flags=re.MULTILINE)
    assert any(h.startswith("Intended use") for h in headings), headings
    assert any(h.startswith("Training data") for h in headings), headings
    assert "Limitations" in headings
    assert INTERVAL.search(card), "no metric with a confidence interval"
    start = manifest.starting_weights
    if start is None:
        assert re.search(r"Starting weights\W+none", card)
    else:
        assert start.licence in card and start.sha256[:12] in card
    if manifest.reference_only:
        assert "not for clinical use" in card.lower()
