"""Steps 1–2 of the skin analysis, once per photo: the body part and the lesions found in it.

The body-part classifier sees the whole photo; "not skin" stops the skin analyses. Lesion
extraction (``models.skin.lesions``) cuts each lesion out. The findings are kept while the
photo object lives, so the four skin analyses of one photo share one pass.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

import numpy as np

from models.engine.execution import Execution
from models.engine.options import EngineOptions
from models.intake import DecodedPhoto
from models.manifest import LabelSpec
from models.model_stages import build_model_pipeline
from models.registry import LoadedModel
from models.skin.labels import NOT_SKIN
from models.skin.lesions import FoundLesion, LesionExtractor, LesionKind

_CACHE_SIZE: Final = 64


@dataclass(frozen=True)
class SkinFindings:
    body_part: LabelSpec | None  # None: no body-part model installed
    body_part_probability: float | None
    lesions: tuple[FoundLesion, ...]

    @property
    def not_skin(self) -> bool:
        return self.body_part is not None and self.body_part.group == NOT_SKIN

    def of_kind(self, kind: LesionKind) -> tuple[FoundLesion, ...]:
        return tuple(lesion for lesion in self.lesions if lesion.kind in (kind, "cut-out"))


class BodyPartClassifier:
    def __init__(self, loaded: LoadedModel, execution: Execution, options: EngineOptions) -> None:
        self.manifest = loaded.manifest
        # The body part needs no heat map: it is not a result of its own.
        self.stages = build_model_pipeline(loaded, execution, replace(options, heatmaps=False))

    def __call__(self, photos: Sequence[DecodedPhoto]) -> list[tuple[LabelSpec, float]]:
        out = []
        for prediction in self.stages(photos):
            probabilities = prediction.probabilities or ()
            best = int(np.argmax(probabilities))
            out.append((self.manifest.labels[best], float(probabilities[best])))
        return out


class SkinFinder:
    """Steps 1–2 for a batch, each photo once (results kept while the photo object lives)."""

    def __init__(self, extractor: LesionExtractor, body_parts: BodyPartClassifier | None) -> None:
        self.extractor = extractor
        self.body_parts = body_parts
        self._cache: OrderedDict[int, tuple[weakref.ref[DecodedPhoto], SkinFindings]] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, photos: Sequence[DecodedPhoto]) -> list[SkinFindings]:
        known: dict[int, SkinFindings] = {}
        with self._lock:
            for photo in photos:
                entry = self._cache.get(id(photo))
                if entry is not None and entry[0]() is photo:
                    known[id(photo)] = entry[1]
        todo = [photo for photo in photos if id(photo) not in known]
        if todo:
            lesions = self.extractor(todo)
            parts = self._body_parts(todo)
            with self._lock:
                for photo, found, (part, probability) in zip(todo, lesions, parts, strict=True):
                    findings = SkinFindings(part, probability, found)
                    known[id(photo)] = findings
                    self._cache[id(photo)] = (weakref.ref(photo), findings)
                    while len(self._cache) > _CACHE_SIZE:
                        self._cache.popitem(last=False)
        return [known[id(photo)] for photo in photos]

    def _body_parts(self, photos: Sequence[DecodedPhoto]) -> list[tuple[LabelSpec | None, float | None]]:
        """The body part of each whole photo; a cut-out on transparency shows none (unknown)."""
        parts: list[tuple[LabelSpec | None, float | None]] = [(None, None)] * len(photos)
        whole = [index for index, photo in enumerate(photos) if photo.alpha is None]
        if self.body_parts is not None and whole:
            for index, answer in zip(whole, self.body_parts([photos[i] for i in whole]), strict=True):
                parts[index] = answer
        return parts
