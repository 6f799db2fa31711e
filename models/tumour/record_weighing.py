"""A tumour result weighed with the patient's record: the facts read, the regions they name, Bayes.

Runs at write-back, once the Patient has been read (``workers.writeback``): the photo's own
analysis is done and batched without it. The age is the patient's at the photo
(``Patient.birthDate`` against the photo's date); the site is the photo's coded ``bodySite``.
Only what the record states is used — the body-part network, a reference model trained on
generated photos, never stands in for a missing site — and what was not used is said, with why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray

from models.errors import InvalidModelManifest, ModelNotInstalled
from models.manifest import LabelSpec
from models.registry import ModelPackage, read_verified, registry_for
from models.results import (
    SNOMED,
    AnalysisReport,
    ClassProbability,
    Concept,
    ModelInfo,
    RecordWeighing,
    TumourAssessment,
)
from models.tumour.record import RecordModel, parse_record, record_fusion

# SNOMED CT body structures → (their name, PAD-UFES-20's regions). A finer site names one region; a
# coarser one (upper limb, head, trunk, lower limb) is weighed as the average over the regions
# inside it. Codes are matched from the sender's bodySite, never written: one not listed here
# leaves the site unused. The name words a site the sender coded without a display.
SITE_REGIONS: Final[dict[str, tuple[str, tuple[str, ...]]]] = {
    "89545001": ("Face structure", ("FACE",)),
    "45206002": ("Nasal structure", ("NOSE",)),
    "117590005": ("Ear structure", ("EAR",)),
    "48477009": ("Lip structure", ("LIP",)),
    "41695006": ("Scalp structure", ("SCALP",)),
    "45048000": ("Neck structure", ("NECK",)),
    "51185008": ("Thoracic structure", ("CHEST",)),
    "818983003": ("Abdomen structure", ("ABDOMEN",)),
    "113345001": ("Abdominal structure", ("ABDOMEN",)),
    "77568009": ("Back structure", ("BACK",)),
    "40983000": ("Upper arm structure", ("ARM",)),  # PAD-UFES-20's "arm" is the upper arm
    "14975008": ("Forearm structure", ("FOREARM",)),
    "85562004": ("Hand structure", ("HAND",)),
    "68367000": ("Thigh structure", ("THIGH",)),
    "56459004": ("Foot structure", ("FOOT",)),
    "69536005": ("Head structure", ("FACE", "NOSE", "EAR", "LIP", "SCALP")),
    "22943007": ("Trunk structure", ("CHEST", "ABDOMEN", "BACK")),
    "53120007": ("Upper limb structure", ("ARM", "FOREARM", "HAND")),
    "61685007": ("Lower limb structure", ("THIGH", "FOOT")),
}
REGION_WORDS: Final = {
    "ABDOMEN": "abdomen",
    "ARM": "upper arm",
    "BACK": "back",
    "CHEST": "chest",
    "EAR": "ear",
    "FACE": "face",
    "FOOT": "foot",
    "FOREARM": "forearm",
    "HAND": "hand",
    "LIP": "lip",
    "NECK": "neck",
    "NOSE": "nose",
    "SCALP": "scalp",
    "THIGH": "thigh",
}


def site_regions(sites: Sequence[Concept], known: Sequence[str]) -> tuple[Concept, tuple[str, ...]] | None:
    """The first coded site the record model knows, with its regions (all of them fitted)."""
    for site in sites:
        name, regions = SITE_REGIONS.get(site.code, ("", ())) if site.system == SNOMED else ("", ())
        if regions and set(regions) <= set(known):
            # A coding without a display reads back with its code as the display (fhir_mappings.readers).
            worded = site.display and site.display != site.code
            return (site if worded else Concept(site.code, name, site.system)), regions
    return None


def _site_words(site: Concept, regions: tuple[str, ...]) -> str:
    name = site.display or site.code
    if len(regions) == 1:
        return f"body site {name}"
    inside = [REGION_WORDS.get(r, r.lower()) for r in regions]
    return f"body site {name} (averaged over {', '.join(inside[:-1])} and {inside[-1]})"


def usable_age(model: RecordModel, years: float | None) -> float | None:
    """The age when the record model was fitted on such ages; it is never extrapolated."""
    low, high = model.age_range
    return years if years is not None and math.isfinite(years) and low <= years <= high else None


def weigh_rows(
    model: RecordModel, probabilities: NDArray[np.float64], ages: Sequence[float], regions: Sequence[str]
) -> NDArray[np.float64]:
    """Photos' (N, classes) probabilities weighed with each one's age (years) and PAD-UFES-20 region,
    by the rules served (``evaluate tumour`` scores a labelled set this way)."""
    weighed = probabilities.copy()
    prior = np.asarray(model.prior)
    for i, (years, region) in enumerate(zip(ages, regions, strict=True)):
        age = usable_age(model, years)
        known = (region,) if region in model.regions else None
        if age is not None or known is not None:
            weighed[i] = record_fusion(probabilities[i], model.probabilities(age, known), prior)
    return weighed


def weigh_assessment(
    assessment: TumourAssessment,
    labels: Sequence[LabelSpec],
    model: RecordModel,
    *,
    age_months: int | None,
    sites: Sequence[Concept],
) -> TumourAssessment:
    """The assessment with its probabilities weighed by the facts the record gives, and what was used.

    An abstained result is left as it is: the photo gave no conclusion to weigh.
    """
    if assessment.abstention is not None:
        return assessment
    used: list[str] = []
    not_used: list[str] = []
    age = usable_age(model, None if age_months is None else age_months / 12)
    if age_months is None:
        not_used.append("age (the Patient gives no full birth date)")
    elif age is None:
        low, high = model.age_range
        not_used.append(f"age {age_months // 12} years (outside the ages fitted, {low:.0f}–{high:.0f})")
    else:
        used.append(f"age {age_months // 12} years")
    found = site_regions(sites, model.regions)
    if found is not None:
        used.append(_site_words(*found))
    elif sites:
        not_used.append(f"body site {sites[0].display or sites[0].code} (not a site the record model knows)")
    else:
        not_used.append("body site (the photo has no coded site)")
    image = {p.concept.code: p for p in assessment.types}
    photo = np.array([image[code].probability for code in model.classes])
    if age is None and found is None:
        weighed = photo
    else:
        record = model.probabilities(age, found[1] if found is not None else None)
        weighed = record_fusion(photo, record, np.asarray(model.prior))
    types = sorted(
        (
            ClassProbability(image[code].concept, float(p), image[code].decision_weight)
            for code, p in zip(model.classes, weighed, strict=True)
        ),
        key=lambda c: c.probability,
        reverse=True,
    )
    malignant = {label.code for label in labels if label.group == "malignant"}
    return replace(
        assessment,
        malignancy_probability=float(sum(c.probability for c in types if c.concept.code in malignant)),
        types=tuple(types),
        record=RecordWeighing(
            used=tuple(used),
            not_used=tuple(not_used),
            photo_only_malignancy=assessment.malignancy_probability,
            photo_only_types=assessment.types,
            age_used=age is not None,
        ),
    )


def weighs_with_record(report: AnalysisReport, model_dir: Path | None) -> bool:
    """Whether a tumour result in the report comes from a package that carries a record model
    (only then is the Patient worth reading for it)."""
    return any(
        _record_of(model, model_dir) is not None
        for model, result in report.model_results
        if isinstance(result, TumourAssessment)
    )


def _record_of(model: ModelInfo, model_dir: Path | None) -> tuple[ModelPackage, RecordModel] | None:
    """The very package (name and version) that produced a result, with its record model, if any."""
    try:
        package = registry_for(model_dir).get(model.name)
    except ModelNotInstalled:
        return None
    record = package_record(package) if package.manifest.version == model.version else None
    return None if record is None else (package, record)


def weigh_report(
    report: AnalysisReport, *, age_months: int | None, sites: Sequence[Concept], model_dir: Path | None
) -> AnalysisReport:
    """Every tumour result of a package that carries a record model, weighed with the record."""
    results = []
    for model, result in report.model_results:
        found = _record_of(model, model_dir) if isinstance(result, TumourAssessment) else None
        if isinstance(result, TumourAssessment) and found is not None:
            package, record = found
            labels = package.manifest.labels
            result = weigh_assessment(result, labels, record, age_months=age_months, sites=sites)
        results.append((model, result))
    return replace(report, model_results=tuple(results))


def package_record(package: ModelPackage) -> RecordModel | None:
    """The package's record model, checked against the manifest's SHA-256 (once per process, like
    the weights); None when the package has none."""
    spec = package.manifest.record
    if spec is None:
        return None
    key = (package.directory / spec.file, spec.sha256)
    cached = _LOADED.get(key)
    if cached is None:
        cached = parse_record(read_verified(package, spec.file, spec.sha256), str(key[0]))
        if cached.classes != tuple(label.code for label in package.manifest.labels):
            raise InvalidModelManifest(f"{key[0]}: its classes are not the package's labels, in order")
        _LOADED[key] = cached
    return cached


_LOADED: dict[tuple[Path, str], RecordModel] = {}
