"""Which analyses each photo kind gets, and the pipelines installed to run them.

A pipeline is registered here by name when its model package is installed; the inference
engine (registry, stages, TTA) adds them. With none registered, every analysis is reported
as not performed rather than scored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from models.results import AnalysisName, PhotoKind

ANALYSES_BY_KIND: Mapping[PhotoKind, tuple[AnalysisName, ...]] = {
    "skin": ("tis", "skin-condition", "skin-tumour"),
    "conjunctiva": ("hb",),
}

# analysis name → factory building the loaded pipeline; filled as model packages land.
_REGISTERED: dict[AnalysisName, Callable[[], Any]] = {}


def installed_pipeline(analysis: AnalysisName) -> Callable[[], Any] | None:
    return _REGISTERED.get(analysis)
