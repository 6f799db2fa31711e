"""The record model: P(tumour type | the patient's age, the body site), fitted, stored and applied.

PAD-UFES-20 records each photo's patient age and body region, and a FHIR record holds the same
two facts (``Patient.birthDate`` against the photo's date, ``Media.bodySite``). A softmax
regression on them gives P(type | age, site). The image model's P(type | image) × P(type | age,
site) ÷ P(type) is Bayes with the photo and the record taken as independent given the type:
nothing is fitted on the image model's outputs, and a record that says nothing (its
probabilities equal the prior) leaves the image's probabilities as they were.

Three regressions are kept — age and site, age alone, site alone — so a record that holds only
one of the facts is weighed by a model fitted on that fact, never by a guess at the other.
``models.tumour.metadata`` measures all three on the image model's own cross-validation folds;
the stored model is the same fit on every row.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Final, Literal

import numpy as np
import torch
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from models.errors import DatasetError, InvalidModelManifest
from models.tumour.dataset import CLASSES, LABELS, TumourSample

METADATA_FILE: Final = "metadata_pad_ufes_20.csv"
L2_PENALTY: Final = 1e-2
RECORD_FILE: Final = "record.json"
RECORD_SCHEMA: Final = "photomarker-tumour-record/1"
# Which facts a regression reads; the key names the one a record's facts select.
FactSet = Literal["age+site", "age", "site"]
FACT_SETS: Final[tuple[FactSet, ...]] = ("age+site", "age", "site")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LinearModel(_Strict):
    """A softmax regression on standardised features: what one fit learnt, readable as JSON."""

    features: tuple[str, ...]
    centre: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[tuple[float, ...], ...]  # (features, classes)
    bias: tuple[float, ...]

    @model_validator(mode="after")
    def _shapes(self) -> LinearModel:
        width = len(self.features)
        if len(self.centre) != width or len(self.scale) != width or len(self.weights) != width:
            raise ValueError("centre, scale and weights need one entry per feature")
        if any(len(row) != len(self.bias) for row in self.weights) or any(s <= 0 for s in self.scale):
            raise ValueError("every weight row needs one value per class, and scales must be positive")
        return self

    def probabilities(self, features: NDArray[np.float64]) -> NDArray[np.float64]:
        """(N, F) in the order of ``features`` → (N, classes); a missing value reads as the centre."""
        centre = np.asarray(self.centre)
        x = np.where(np.isnan(features), centre, features)
        logits = ((x - centre) / np.asarray(self.scale)) @ np.asarray(self.weights) + np.asarray(self.bias)
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return np.asarray(exp / exp.sum(axis=1, keepdims=True))


class RecordModel(_Strict):
    """The stored record model (``record.json`` in the tumour package)."""

    schema_: Literal["photomarker-tumour-record/1"] = Field(RECORD_SCHEMA, alias="schema")
    # The image network's label codes, in its output order: the columns of every probability here.
    classes: tuple[str, ...]
    # P(type) over the rows fitted, add-one: what the record's probabilities are divided by.
    prior: tuple[float, ...]
    regions: tuple[str, ...]  # PAD-UFES-20's body regions, in the one-hot order
    region_counts: tuple[int, ...]  # photos per region: how a coarse site averages its regions
    age_range: tuple[float, float]  # the ages fitted, years; an age outside is not used
    models: dict[FactSet, LinearModel]
    fitted_on: str

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _consistent(self) -> RecordModel:
        if len(self.prior) != len(self.classes) or len(self.region_counts) != len(self.regions):
            raise ValueError("one prior per class and one count per region")
        if set(self.models) != set(FACT_SETS):
            raise ValueError(f"the record model needs the regressions {', '.join(FACT_SETS)}")
        return self

    def probabilities(self, age_years: float | None, regions: tuple[str, ...] | None) -> NDArray[np.float64]:
        """P(type | the facts given): a coarse site (several regions) is the average over its regions,
        weighted by how many training photos each had. At least one fact must be given."""
        if not regions:
            if age_years is None:
                raise ValueError("the record model needs an age, a site or both")
            return np.asarray(self.models["age"].probabilities(np.array([[age_years, age_years**2]]))[0])
        counts = np.array([self.region_counts[self.regions.index(r)] for r in regions], dtype=np.float64)
        rows = np.zeros((len(regions), len(self.regions)))
        for i, region in enumerate(regions):
            rows[i, self.regions.index(region)] = 1.0
        if age_years is None:
            per_region = self.models["site"].probabilities(rows)
        else:
            ages = np.tile([age_years, age_years**2], (len(regions), 1))
            per_region = self.models["age+site"].probabilities(np.hstack([ages, rows]))
        return np.asarray((per_region * counts[:, None]).sum(axis=0) / counts.sum())


def record_fusion(
    image: NDArray[np.float64], record: NDArray[np.float64], prior: NDArray[np.float64]
) -> NDArray[np.float64]:
    """P(type | image) × P(type | record) ÷ P(type), renormalised: Bayes with the two independent
    given the type. A record that says nothing (its probabilities = the prior) leaves the image's."""
    fused = image * record / prior
    return np.asarray(fused / fused.sum(axis=-1, keepdims=True))


# --- the facts of PAD-UFES-20's photos -----------------------------------------------------------


def metadata_rows(csv_path: Path, samples: list[TumourSample]) -> tuple[list[dict[str, str]], list[str]]:
    """The metadata row of each sample (joined on img_id) and every region, sorted."""
    path = csv_path.parent / METADATA_FILE
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = {row["img_id"].strip(): row for row in csv.DictReader(handle)}
    except (OSError, KeyError) as exc:
        raise DatasetError(f"cannot read the clinical metadata {path}: {exc}") from None
    missing = [s.img_id for s in samples if s.img_id not in rows]
    if missing:
        raise DatasetError(f"{path}: no metadata for {len(missing)} photos (e.g. {missing[0]!r})")
    regions = sorted({row["region"].strip().upper() for row in rows.values()})
    return [rows[s.img_id] for s in samples], regions


def age_of(row: dict[str, str]) -> float:
    try:
        return float(row["age"])
    except ValueError:
        return math.nan


def record_features(
    csv_path: Path, samples: list[TumourSample]
) -> tuple[NDArray[np.float64], tuple[str, ...], tuple[str, ...]]:
    """Age, age² (types differ most at the ends of life) and the body region one-hot: what FHIR
    holds. Returns the (N, 2 + regions) table, its column names and the regions."""
    chosen, regions = metadata_rows(csv_path, samples)
    names = ("age", "age²", *(f"region={r}" for r in regions))
    table = np.zeros((len(samples), len(names)))
    for i, row in enumerate(chosen):
        table[i, 0] = age_of(row)
        table[i, 1] = table[i, 0] ** 2
        table[i, 2 + regions.index(row["region"].strip().upper())] = 1.0
    return table, names, tuple(regions)


def fact_columns(fact_set: FactSet, names: tuple[str, ...]) -> list[int]:
    """The columns of :func:`record_features` a fact set reads."""
    wanted = {"age+site": ("age", "region="), "age": ("age",), "site": ("region=",)}[fact_set]
    return [i for i, name in enumerate(names) if name.startswith(wanted)]


# --- fitting ---------------------------------------------------------------------------------------


def standardise(
    features: NDArray[np.float64], train: NDArray[np.intp]
) -> tuple[torch.Tensor, NDArray[np.float64], NDArray[np.float64]]:
    """Centred and scaled on the ``train`` rows only; a missing value becomes the centre."""
    x = features.copy()
    centre = np.nanmean(x[train], axis=0)
    x = np.where(np.isnan(x), centre, x)
    scale = x[train].std(axis=0)
    scale[scale == 0] = 1.0
    return torch.from_numpy((x - centre) / scale).double(), centre, scale


def fit_linear(
    xt: torch.Tensor,
    train: NDArray[np.intp],
    outputs: tuple[int, ...],
    loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    target: torch.Tensor,
    *,
    max_iter: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A linear model with an L2 penalty fitted by L-BFGS on ``train`` rows: its weights and bias."""
    w = torch.zeros((xt.shape[1], *outputs), dtype=torch.float64, requires_grad=True)
    b = torch.zeros(outputs, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")
    rows = torch.from_numpy(train)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = loss_of(xt[rows] @ w + b, target[rows]) + L2_PENALTY * (w * w).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    optimiser.step(closure)  # type: ignore[no-untyped-call]
    return w.detach(), b.detach()


def fit_multinomial(
    features: NDArray[np.float64], names: tuple[str, ...], labels: NDArray[np.int_], train: NDArray[np.intp]
) -> LinearModel:
    """L2 softmax regression over :data:`CLASSES` fitted on ``train`` rows."""
    xt, centre, scale = standardise(features, train)
    target = torch.from_numpy(labels.astype(np.int64))
    w, b = fit_linear(xt, train, (len(CLASSES),), torch.nn.functional.cross_entropy, target, max_iter=500)
    return LinearModel(
        features=names,
        centre=tuple(float(v) for v in centre),
        scale=tuple(float(v) for v in scale),
        weights=tuple(tuple(float(v) for v in row) for row in w.tolist()),
        bias=tuple(float(v) for v in b.tolist()),
    )


def add_one_prior(labels: NDArray[np.int_]) -> NDArray[np.float64]:
    """Add-one class frequencies: a type absent from a small training set must not divide by zero."""
    return np.asarray((np.bincount(labels, minlength=len(CLASSES)) + 1) / (len(labels) + len(CLASSES)))


def fit_record_model(csv_path: Path, samples: list[TumourSample]) -> RecordModel:
    """The three regressions on every row, as the stored record model."""
    table, names, regions = record_features(csv_path, samples)
    labels = np.array([s.label for s in samples])
    every = np.arange(len(samples))
    models: dict[FactSet, LinearModel] = {}
    for fact_set in FACT_SETS:
        columns = fact_columns(fact_set, names)
        models[fact_set] = fit_multinomial(table[:, columns], tuple(names[i] for i in columns), labels, every)
    ages = table[:, 0][~np.isnan(table[:, 0])]
    region_counts = table[:, 2:].sum(axis=0).astype(int)
    return RecordModel(
        classes=tuple(label.code for label in LABELS),
        prior=tuple(float(p) for p in add_one_prior(labels)),
        regions=regions,
        region_counts=tuple(int(c) for c in region_counts),
        age_range=(float(ages.min()), float(ages.max())),
        models=models,
        fitted_on=f"{csv_path.parent.name}/{METADATA_FILE}: age and region of {len(samples)} photos "
        f"of {len({s.patient_id for s in samples})} patients",
    )


# --- stored as JSON --------------------------------------------------------------------------------


def record_json(model: RecordModel) -> str:
    return json.dumps(model.model_dump(mode="json", by_alias=True), indent=2, ensure_ascii=False) + "\n"


def parse_record(raw: bytes, where: str) -> RecordModel:
    try:
        return RecordModel.model_validate_json(raw)
    except ValidationError as exc:
        problem = exc.errors()[0]
        field = ".".join(str(p) for p in problem["loc"]) or "(root)"
        raise InvalidModelManifest(f"{where}: {field}: {problem['msg']}") from None
