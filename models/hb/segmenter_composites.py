"""The composites the conjunctiva segmenter is trained, tuned and scored on.

Real CP-AnemiC strips pasted into generated eyelid scenes (``models.hb.scenes``): the seeds and
counts of the training, validation and held-out sets, the strip split they are drawn from, and
the scenes turned into network inputs and targets. Fixed seeds, so ``evaluate hb-localiser``
regenerates exactly the held-out set training was scored on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from models.hb.scenes import Scene, eyelid_scene, negative_scene
from models.hb.segmenter import INPUT_HEIGHT, INPUT_WIDTH, photo_tensor
from models.hb.strip import Strip

SEEDS: Final = {"train": 11, "held-out": 22, "validation": 33}
COUNTS: Final = {"train": 2000, "held-out": 500, "validation": 400}
POSITIVE_SHARE: Final = 0.7


@dataclass(frozen=True)
class StripSplit:
    train: tuple[Strip, ...]
    held_out: tuple[Strip, ...]
    train_groups: frozenset[str]
    held_out_groups: frozenset[str]
    rows: int
    # The CV group of each held-out strip, in order: the unit the held-out figures' CIs resample.
    held_out_strip_groups: tuple[str, ...] = ()

    @property
    def groups_train(self) -> int:
        return len(self.train_groups)

    @property
    def groups_held_out(self) -> int:
        return len(self.held_out_groups)


def make_scenes(strips: Sequence[Strip], count: int, seed: int) -> list[Scene]:
    rng = np.random.default_rng(seed)
    scenes = []
    for _ in range(count):
        if rng.random() < POSITIVE_SHARE:
            index = int(rng.integers(len(strips)))
            scenes.append(replace(eyelid_scene(rng, strips[index]), source=index))
        else:
            scenes.append(negative_scene(rng))
    return scenes


def scene_arrays(scenes: Sequence[Scene]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Network inputs (N, 3, 96, 128) and soft targets (N, 1, 96, 128): the mask's area share."""
    x = np.stack([photo_tensor(scene.rgb) for scene in scenes])
    y = np.stack(
        [
            np.asarray(
                Image.fromarray(scene.mask.astype(np.uint8) * 255).resize(
                    (INPUT_WIDTH, INPUT_HEIGHT), Image.Resampling.BOX
                ),
                dtype=np.float32,
            )[None]
            / 255.0
            for scene in scenes
        ]
    )
    return x.astype(np.float32), y.astype(np.float32)
