"""One model package's generic data path — pre_process → predict → post_process — and what it
needs from the settings: the process's execution device and the abstention limits.

Its own module because both the composition of analyses (``models.pipelines``) and the
pipelines with their own data path (``models.skin.*``, ``models.hb.pipeline``) build on it, and
the composition imports those pipelines.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from models.engine.execution import Execution, resolve_execution, synchronise
from models.engine.options import EngineOptions
from models.engine.stages import (
    AbstentionLimits,
    Pipeline,
    PostProcess,
    Predict,
    PreparedNetwork,
    PreProcess,
    Stage,
)
from models.engine.tta import plan_from
from models.manifest import ModelManifest
from models.registry import LoadedModel

log = logging.getLogger(__name__)


@lru_cache(maxsize=4)
def execution_for(options: EngineOptions) -> Execution:
    """The device, threads and compile mode for ``options`` (one per process and options)."""
    return resolve_execution(options.device, threads=options.threads, compile=options.compile)


def abstention_limits(manifest: ModelManifest, options: EngineOptions, outputs: int) -> AbstentionLimits:
    """The manifest's calibrated thresholds unless the settings override them.

    ``outputs`` is how many outputs each photo gets: test-time views × ensemble members. The
    spread is their standard deviation, so with one output (one view of a single-member model)
    it is always 0 and says nothing: abstention by spread is then off — whatever the manifest or
    the settings say, and logged when the pipeline is built — while the out-of-distribution
    check still applies. With two or more it applies as calibrated; fewer outputs than it was
    calibrated on (fewer views) give a spread that tends to be a little smaller.
    """
    policy = manifest.abstention
    max_spread = options.max_spread if options.max_spread is not None else policy.max_spread
    if outputs < 2 and max_spread is not None:
        log.info(
            "%s: one output per photo (one test-time view, one member), so no spread to judge; "
            "abstention by spread is off (threshold %.3g), the out-of-distribution check still applies",
            manifest.name,
            max_spread,
        )
        max_spread = None
    return AbstentionLimits(
        max_spread=max_spread,
        max_ood=options.max_ood if options.max_ood is not None else policy.max_ood,
    )


def model_stages(loaded: LoadedModel, execution: Execution, options: EngineOptions) -> list[Stage[Any, Any]]:
    """Every model's data path: pre_process → predict → post_process."""
    manifest = loaded.manifest
    network = PreparedNetwork(loaded.network(), execution)
    plan = plan_from(manifest.tta, views=options.view_count)
    limits = abstention_limits(manifest, options, len(plan) * len(network.runners))
    return [
        PreProcess(manifest.input, plan, execution),
        Predict(network, manifest, explain=options.heatmaps),
        PostProcess(manifest, limits, network.ood),
    ]


def build_model_pipeline(loaded: LoadedModel, execution: Execution, options: EngineOptions) -> Pipeline:
    """Photos → :class:`Prediction` s (no clinical result): reference models, the CLI, the benchmark."""
    return Pipeline(
        model_stages(loaded, execution, options),
        batch_size=options.batch_size,
        sync=lambda: synchronise(execution),
    )
