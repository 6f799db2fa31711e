"""The served record model: the shipped file, the facts it reads from FHIR, and what it does to a result."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fhir_mappings.bundle import build_result_bundle
from models.errors import ModelWeightsMismatch
from models.manifest import save_manifest
from models.registry import SHIPPED_MODEL_DIR, ModelRegistry, registry_for
from models.results import (
    SNOMED,
    Abstention,
    AnalysisReport,
    ClassProbability,
    Concept,
    FrameCounts,
    QualityVerdict,
    Steadiness,
    TumourAssessment,
)
from models.tumour.dataset import CLASSES, LABELS, load_samples
from models.tumour.package import DEFAULT_NAME
from models.tumour.record import RecordModel, fit_record_model, parse_record, record_json
from models.tumour.record_weighing import package_record, weigh_assessment, weigh_report, weighs_with_record
from plugin.cli import main
from tests.analyze_cli import media_json, observation, resources, run, write_json
from tests.datasets import full_dataset
from tests.fhir_validation import sample_context, sample_quality
from tests.tumour.conftest import PAD_UFES, lesion_cut_out

BACK = Concept("77568009", "Back structure", SNOMED)
UPPER_LIMB = Concept("53120007", "Upper limb structure", SNOMED)
# A photo-only result that names every type (the order of the assessment is by probability).
PHOTO = (0.30, 0.05, 0.05, 0.25, 0.15, 0.20)


def shipped_record() -> RecordModel:
    model = package_record(registry_for(None).get(DEFAULT_NAME))
    assert model is not None, "the shipped tumour package carries its record model"
    return model


def photo_result(abstention: Abstention | None = None) -> TumourAssessment:
    types = tuple(
        sorted(
            (ClassProbability(label.concept(), p) for label, p in zip(LABELS, PHOTO, strict=True)),
            key=lambda c: c.probability,
            reverse=True,
        )
    )
    return TumourAssessment(malignancy_probability=0.40, types=types, abstention=abstention)


def weigh(result: TumourAssessment, age_months: int | None, *sites: Concept) -> TumourAssessment:
    return weigh_assessment(result, LABELS, shipped_record(), age_months=age_months, sites=sites)


def by_code(result: TumourAssessment) -> dict[str, float]:
    return {c.concept.code: c.probability for c in result.types}


def test_the_shipped_record_model_is_the_packages_and_was_fitted_on_every_photo() -> None:
    package = registry_for(None).get(DEFAULT_NAME)
    assert package.manifest.record is not None and package.manifest.version == "2.2.0"
    model = shipped_record()
    assert model.classes == tuple(label.code for label in package.manifest.labels)
    assert sum(model.region_counts) == 1201 and len(model.regions) == 14
    assert model.age_range == (8.0, 94.0)
    assert "record" in package.manifest.intended_use and "age" in package.manifest.intended_use
    # Stored and read back to the same numbers; the JSON is what an auditor can read.
    assert parse_record(record_json(model).encode(), "round trip") == model


def test_the_served_fit_is_the_cross_validated_one_on_every_row() -> None:
    csv_path = full_dataset("pad-ufes-20") / "labels.csv"
    refitted = fit_record_model(csv_path, load_samples(csv_path))
    served = shipped_record()
    for age, regions in ((70.0, ("FACE",)), (25.0, ("BACK",)), (50.0, None), (None, ("HAND", "ARM"))):
        assert refitted.probabilities(age, regions) == pytest.approx(
            served.probabilities(age, regions), abs=1e-6
        )


def test_a_record_that_gives_nothing_leaves_the_photos_result_and_says_why() -> None:
    photo = photo_result()
    result = weigh(photo, None)
    assert by_code(result) == pytest.approx(
        by_code(photo)
    ) and result.malignancy_probability == pytest.approx(0.40)
    assert result.record is not None and result.record.used == ()
    assert result.record.not_used == (
        "age (the Patient gives no full birth date)",
        "body site (the photo has no coded site)",
    )
    # A site the model was not fitted on, an age outside the fitted ones: named, not used.
    elsewhere = weigh(photo, 5 * 12, Concept("30021000", "Lower leg structure", SNOMED))
    assert elsewhere.record is not None and elsewhere.record.used == ()
    assert "age 5 years (outside the ages fitted, 8–94)" in elsewhere.record.not_used
    assert "body site Lower leg structure (not a site the record model knows)" in elsewhere.record.not_used


def test_age_and_site_move_the_probabilities_by_bayes_and_keep_the_photos_beside_them() -> None:
    photo = photo_result()
    result = weigh(photo, 25 * 12, BACK)
    model = shipped_record()
    record = model.probabilities(25.0, ("BACK",))
    expected = np.array(PHOTO) * record / np.array(model.prior)
    expected /= expected.sum()
    assert [by_code(result)[code] for code in model.classes] == pytest.approx(expected)
    malignant = {label.code for label in LABELS if label.group == "malignant"}
    assert result.malignancy_probability == pytest.approx(sum(by_code(result)[c] for c in malignant))
    # A young patient's back: naevus gains on carcinoma, against the photo alone.
    naevus, bcc = LABELS[CLASSES.index("NEV")].code, LABELS[CLASSES.index("BCC")].code
    assert by_code(result)[naevus] > by_code(photo)[naevus] and by_code(result)[bcc] < by_code(photo)[bcc]
    assert result.record is not None and result.record.used == ("age 25 years", "body site Back structure")
    assert result.record.photo_only_malignancy == 0.40 and result.record.photo_only_types == photo.types


def test_one_fact_uses_the_regression_fitted_on_that_fact_and_a_coarse_site_its_regions() -> None:
    model = shipped_record()
    age_only = weigh(photo_result(), 80 * 12)
    assert age_only.record is not None and age_only.record.used == ("age 80 years",)
    expected = np.array(PHOTO) * model.probabilities(80.0, None) / np.array(model.prior)
    assert [by_code(age_only)[c] for c in model.classes] == pytest.approx(expected / expected.sum())
    limb = weigh(photo_result(), None, UPPER_LIMB)
    assert limb.record is not None
    assert limb.record.used == ("body site Upper limb structure (averaged over upper arm, forearm and hand)",)
    regions = ("ARM", "FOREARM", "HAND")
    counts = np.array([model.region_counts[model.regions.index(r)] for r in regions], dtype=float)
    each = np.stack([model.probabilities(None, (r,)) for r in regions])
    assert model.probabilities(None, regions) == pytest.approx((each * counts[:, None]).sum(0) / counts.sum())


def test_an_abstained_result_is_not_weighed() -> None:
    abstained = photo_result(Abstention("input out of distribution", ood_score=9.0))
    assert weigh(abstained, 60 * 12, BACK) is abstained


def test_a_changed_record_file_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / DEFAULT_NAME
    shutil.copytree(SHIPPED_MODEL_DIR / DEFAULT_NAME, copy)
    stored = json.loads((copy / "record.json").read_text())
    stored["prior"][0] *= 1.01
    (copy / "record.json").write_text(json.dumps(stored))
    with pytest.raises(ModelWeightsMismatch, match=r"record\.json"):
        package_record(ModelRegistry([tmp_path]).get(DEFAULT_NAME))
    # `photomarker models verify` checks it beside the weights, and `show` names it.
    env = {"PHOTOMARKER_MODEL_DIR": str(tmp_path)}
    verify = CliRunner().invoke(main, ["models", "verify", DEFAULT_NAME], env=env)
    assert verify.exit_code == 1 and "record.json has SHA-256" in verify.stderr
    show = CliRunner().invoke(main, ["models", "show", DEFAULT_NAME], env=env)
    assert "record model:" in show.stdout and "(weighs in: age, body-site)" in show.stdout


def _lesion_media(tmp_path: Path, **overrides: object) -> dict[str, object]:
    data = lesion_cut_out()
    content = {
        "contentType": "image/png",
        "data": base64.b64encode(data).decode(),
        "hash": base64.b64encode(hashlib.sha1(data).digest()).decode(),
        "creation": "2026-11-02T10:00:00Z",
    }
    return media_json(data, content=content, **overrides)


def test_analyze_weighs_the_tumour_result_with_the_included_patient_and_the_media_site(
    tmp_path: Path,
) -> None:
    media = _lesion_media(
        tmp_path, bodySite={"coding": [{"system": SNOMED, "code": "77568009", "display": "Back structure"}]}
    )
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1950-05-20"}
    bundle_in = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": media}, {"resource": patient}],
    }
    result = run(str(write_json(tmp_path, "bundle.json", bundle_in)), "--kind", "skin")
    assert result.exit_code == 0, result.output
    bundle = json.loads(result.stdout)
    tumour = observation(bundle, "skin-tumour-malignancy")
    (provenance,) = resources(bundle, "Provenance")
    sources = [e["what"]["reference"] for e in provenance["entity"]]
    assert sources == ["Media/photo-1", "Patient/p1"], "the Patient's age was read: it is a source"
    (note,) = [n["text"] for n in tumour["note"] if n["text"].startswith("Weighed with the patient's record")]
    assert "(age 76 years; body site Back structure)" in note and "From the photo alone" in note
    by_code = {c["code"]["coding"][0]["code"]: c["valueQuantity"]["value"] for c in tumour["component"]}
    assert 0 <= by_code["skin-tumour-malignancy-photo-only"] <= 1
    malignant = sum(by_code[code] for code in ("254701007", "tumour-scc", "372244006"))
    assert tumour["valueQuantity"]["value"] == pytest.approx(malignant, abs=2e-4)
    assert "weighed with the patient's age and body site; photo alone" in result.stderr
    assert "76 years" not in result.stderr, "the terminal is told which facts, not the patient's age"


def test_analyze_without_the_patient_says_the_result_is_the_photos_alone(tmp_path: Path) -> None:
    result = run(str(write_json(tmp_path, "media.json", _lesion_media(tmp_path))), "--kind", "skin")
    assert result.exit_code == 0, result.output
    tumour = observation(json.loads(result.stdout), "skin-tumour-malignancy")
    notes = [n["text"] for n in tumour["note"]]
    assert any(n.startswith("From the photo alone: the record gave nothing") for n in notes)
    codes = {c["code"]["coding"][0]["code"] for c in tumour["component"]}
    assert "skin-tumour-malignancy-photo-only" not in codes, "nothing weighed: one probability, the photo's"


def test_the_weighing_can_be_switched_off(tmp_path: Path) -> None:
    media = _lesion_media(
        tmp_path, bodySite={"coding": [{"system": SNOMED, "code": "77568009", "display": "Back structure"}]}
    )
    path = write_json(tmp_path, "media.json", media)
    result = run(str(path), "--kind", "skin", env={"PHOTOMARKER_TUMOUR_RECORD_WEIGHING": "false"})
    assert result.exit_code == 0, result.output
    tumour = observation(json.loads(result.stdout), "skin-tumour-malignancy")
    assert not any("record" in n["text"] for n in tumour.get("note", []))


def test_evaluate_scores_the_weighed_result_at_the_packages_weighed_operating_point() -> None:
    data = str(PAD_UFES / "labels.csv")
    result = CliRunner().invoke(
        main, ["evaluate", "tumour", "--data", data, "--json", "--resamples", "100"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    weighed = out["weighed_with_age_and_site"]
    metrics = registry_for(None).get(DEFAULT_NAME).manifest.evaluation.metrics
    assert weighed["operating_threshold"] == metrics["weighed_malignant_operating_threshold"]
    assert out["operating_threshold"] == metrics["malignant_operating_threshold"]
    assert weighed["auroc"]["value"] != out["auroc"]["value"], "the record moved the scores"
    # The CV figures the card states for the served result are in the manifest beside the photo's.
    assert metrics["weighed_malignant_auroc"] > metrics["malignant_auroc"]


def test_the_patient_is_read_for_a_tumour_result_only_when_its_package_carries_a_record_model(
    tmp_path: Path,
) -> None:
    shipped = registry_for(None).get(DEFAULT_NAME).manifest
    report = AnalysisReport(
        quality=QualityVerdict(checks=()), model_results=((shipped.model_info(), photo_result()),)
    )
    assert weighs_with_record(report, None)
    # A site's own package of the same name, without a record model, wins the search path.
    copy = tmp_path / DEFAULT_NAME
    shutil.copytree(SHIPPED_MODEL_DIR / DEFAULT_NAME, copy)
    save_manifest(shipped.model_copy(update={"record": None}), copy)
    assert not weighs_with_record(report, tmp_path)
    assert weigh_report(report, age_months=600, sites=(BACK,), model_dir=tmp_path) == report
    unknown = replace(shipped.model_info(), name="a-model-no-longer-installed")
    assert not weighs_with_record(AnalysisReport(QualityVerdict(()), ((unknown, photo_result()),)), None)


def test_a_weighed_videos_frame_figures_are_said_to_be_the_images_alone() -> None:
    shipped = registry_for(None).get(DEFAULT_NAME).manifest
    steadiness = Steadiness("skin-tumour", 5, 0.8, "malignancy probability", 0.31, 0.52)
    frames = FrameCounts("video", analysed=5, rejected=1, duration_s=3.0)
    for weighed, said in ((weigh(photo_result(), 60 * 12, BACK), True), (photo_result(), False)):
        report = AnalysisReport(
            sample_quality(), ((shipped.model_info(), weighed),), frames=frames, steadiness=(steadiness,)
        )
        bundle = build_result_bundle(report, sample_context())
        tumour = next(
            e["resource"]
            for e in bundle["entry"]
            if e["resource"]["resourceType"] == "Observation"
            and e["resource"]["code"]["coding"][0]["code"] == "skin-tumour-malignancy"
        )
        notes = " ".join(n["text"] for n in tumour["note"])
        assert ("from the images alone, before the patient's record was weighed in" in notes) is said
