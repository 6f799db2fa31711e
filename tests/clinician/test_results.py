"""Every result type renders, generically by its code: the skin results the models will bring too.

The Observations come from the real builders in ``fhir_mappings.observations``, so the panel
reads exactly what the workers write; the HTML is the real macro of the result panel.
"""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from flask import render_template_string

from fhir_mappings import codes
from fhir_mappings.observations import (
    build_condition_observation,
    build_hb_observation,
    build_not_performed_observation,
    build_quality_observation,
    build_tis_observation,
    build_tumour_observation,
)
from models.results import (
    Abstention,
    AnalysisNotPerformed,
    ClassProbability,
    Concept,
    ConditionProbabilities,
    HbEstimate,
    PatientFacts,
    RecordWeighing,
    TisScore,
    TumourAssessment,
)
from plugin.app import create_app
from plugin.clinician.charts import bar_svg
from plugin.clinician.results import abstention_words, result_view
from plugin.clinician.wording import day, percent
from plugin.settings import load_settings
from tests.fhir_validation import sample_context, sample_model, sample_quality

SNOMED = "http://snomed.info/sct"
AD = Concept("24079001", "Atopic dermatitis", SNOMED)
IMPETIGO = Concept("48277006", "Impetigo", SNOMED)
BCC = Concept("254701007", "Basal cell carcinoma of skin", SNOMED)
MEL = Concept("372244006", "Malignant melanoma", SNOMED)
# The panel as a reader sees it (tags stripped), a newline, then its markup.
_PANEL = (
    "{% from 'clinician/_result.html' import result_panel with context %}{{ result_panel(item, 'launch') }}"
)


def _render(tmp_path: Path, observation: dict[str, Any]) -> str:
    app = create_app(load_settings(data_dir=tmp_path / "data"))
    view = result_view(observation)
    assert view is not None
    with app.test_request_context("/"):
        html = render_template_string(
            _PANEL,
            item={"view": view, "heatmap": None},
            reference_only_text=codes.REFERENCE_ONLY_TEXT,
            percent=percent,
            day=day,
            bar_svg=bar_svg,
        )
    # What a reader sees: tags and the non-breaking space of "82 %" aside.
    return " ".join(re.sub(r"<[^>]+>", " ", html).replace("\u00a0", " ").split()) + "\n" + html


def test_tis_shows_total_band_and_sub_scores(tmp_path: Path) -> None:
    obs = build_tis_observation(TisScore(2, 2, 1), sample_model(), sample_context())
    html = _render(tmp_path, obs)
    assert "TIS 5 of 9" in html and "Moderate (TIS 3–5)" in html
    for item in ("Erythema (TIS item) 2 of 3", "Excoriation (TIS item) 1 of 3"):
        assert item in html


def test_condition_probabilities_are_bars_with_numbers_as_text(tmp_path: Path) -> None:
    panel = ConditionProbabilities((ClassProbability(AD, 0.82), ClassProbability(IMPETIGO, 0.18)))
    html = _render(tmp_path, build_condition_observation(panel, sample_model(), sample_context()))
    assert '<table class="probabilities">' in html and 'aria-hidden="true"' in html  # bars: decoration
    assert "Atopic dermatitis 82 %" in html and "Impetigo 18 %" in html  # the numbers, as text
    assert "Most likely: Atopic dermatitis (82 %)" in html
    assert "0.82" not in html  # one probability format on the page


@pytest.mark.parametrize(("probability", "shown"), [(0.82, "82 %"), (0.997, ">99 %")])
def test_the_observation_text_words_the_top_class_as_the_page_does_and_the_page_says_it_once(
    tmp_path: Path, probability: float, shown: str
) -> None:
    rest = round(1 - probability, 6)
    panel = ConditionProbabilities((ClassProbability(AD, probability), ClassProbability(IMPETIGO, rest)))
    obs = build_condition_observation(panel, sample_model(), sample_context())
    assert obs["interpretation"] == [{"text": f"Most likely: Atopic dermatitis (probability {shown})"}]
    seen = unescape(_render(tmp_path, obs).split("\n", 1)[0])  # what a reader sees
    assert seen.count("Most likely:") == 1 and f"Most likely: Atopic dermatitis ({shown})" in seen


def test_tumour_assessment_and_a_reference_model(tmp_path: Path) -> None:
    assessment = TumourAssessment(0.31, (ClassProbability(BCC, 0.31),))
    model = sample_model(reference_only=True)
    html = _render(tmp_path, build_tumour_observation(assessment, model, sample_context()))
    assert "31 %" in html and "Basal cell carcinoma of skin 31 %" in html
    assert "0.31" not in html
    assert codes.REFERENCE_ONLY_TEXT in html and "Atopiyo TIS heads 1.2.0" in html
    assert "Not saved to the record." in html


def test_a_type_named_by_the_balanced_rule_is_shown_as_the_observation_words_it(tmp_path: Path) -> None:
    # Melanoma was rare in training: its weight lets 0.30 outrank a common type's 0.55.
    types = (ClassProbability(BCC, 0.55, 0.6), ClassProbability(MEL, 0.30, 3.5))
    obs = build_tumour_observation(TumourAssessment(0.85, types), sample_model(), sample_context())
    text = obs["interpretation"][0]["text"]
    assert text.startswith("Suggested type: Malignant melanoma (probability 30 %")
    assert "the most likely is Basal cell carcinoma of skin, 55 %" in text
    seen = unescape(_render(tmp_path, obs).split("\n", 1)[0])
    assert "Suggested type: Malignant melanoma" in seen and "Most likely:" not in seen
    # Every weight 1 (every other model): the most likely, worded as before.
    plain = (ClassProbability(BCC, 0.55), ClassProbability(MEL, 0.30))
    obs = build_tumour_observation(TumourAssessment(0.85, plain), sample_model(), sample_context())
    most_likely = "Most likely type: Basal cell carcinoma of skin (probability 55 %)"
    assert obs["interpretation"] == [{"text": most_likely}]


def test_a_tumour_result_weighed_with_the_record_shows_the_photos_own_figure_beside_it(
    tmp_path: Path,
) -> None:
    photo = (ClassProbability(BCC, 0.48), ClassProbability(MEL, 0.12))
    record = RecordWeighing(
        used=("age 76 years", "body site Back structure"),
        not_used=(),
        photo_only_malignancy=0.60,
        photo_only_types=photo,
    )
    weighed = TumourAssessment(
        0.71, (ClassProbability(BCC, 0.64), ClassProbability(MEL, 0.07)), record=record
    )
    seen = unescape(_render(tmp_path, build_tumour_observation(weighed, sample_model(), sample_context())))
    text = seen.split("\n", 1)[0]
    assert "71 %" in text and "Malignant, from the photo alone 60 %" in text
    assert "Weighed with the patient's record (age 76 years; body site Back structure)" in text
    assert "does not rule melanoma out" in text
    # One bar per type; the photo-alone figure is a line, not a seventh bar.
    assert "Probability of malignancy from the photo alone" not in text, "no bar for it"


def test_hb_with_interval_and_anaemia_flag(tmp_path: Path) -> None:
    facts = PatientFacts(age_months=30 * 12, sex="female")
    obs = build_hb_observation(
        HbEstimate(10.1, 8.9, 11.4), sample_model(), sample_context(patient_facts=facts)
    )
    html = _render(tmp_path, obs)
    assert "<strong>10.1 g/dL</strong>" in html and "8.9–11.4 g/dL" in html
    assert "No conclusion" not in html
    assert "▼ Low — anaemia range" in html and "Below the WHO anaemia cut-off" in html


def test_quality_retake_advice_and_not_performed(tmp_path: Path) -> None:
    html = _render(tmp_path, build_quality_observation(sample_quality(acceptable=False), sample_context()))
    assert "Retake the photo" in html and "Hold the phone still." in html
    item = AnalysisNotPerformed(analysis="tis", reason="No skin model is installed for this analysis.")
    html = _render(tmp_path, build_not_performed_observation(item, sample_context()))
    assert "No conclusion Not performed. No skin model is installed" in html


def test_an_unknown_photomarker_code_still_shows(tmp_path: Path) -> None:
    obs = {
        "resourceType": "Observation",
        "status": "preliminary",
        "code": {
            "coding": [{"system": "https://x.example/CodeSystem/photomarker", "code": "future-score"}],
            "text": "Future score (AI)",
        },
        "valueQuantity": {"value": 3.5, "unit": "points"},
        "component": [
            {
                "code": {"text": "Psoriasis"},
                "valueQuantity": {
                    "value": 0.64,
                    "unit": "1",
                    "system": "http://unitsofmeasure.org",
                    "code": "1",
                },
            }
        ],
    }
    html = _render(tmp_path, obs)
    assert "Future score (AI)" in html and "3.5 points" in html
    assert "<svg" in html and "Psoriasis 64 %" in html  # any classifier's probabilities become bars


def test_an_abstained_result_has_no_headline_number(tmp_path: Path) -> None:
    estimate = HbEstimate(11.7, 7.7, 15.6, abstention=Abstention("the photo is unlike the training photos"))
    facts = PatientFacts(age_months=30 * 12, sex="female")
    html = _render(
        tmp_path, build_hb_observation(estimate, sample_model(), sample_context(patient_facts=facts))
    )
    shown, markup = html.split("\n", 1)
    assert "No conclusion The model abstained: the photo is unlike the training photos." in shown
    headline = re.search(r'<p class="headline">(.*?)</p>', markup, re.S)
    assert headline is not None and "11.7" not in headline.group(1) and "No conclusion" in headline.group(1)
    # The number is kept (the spread is the point) but only behind "not a result", never as a flag.
    withheld = re.search(r'<details class="withheld">(.*?)</details>', markup, re.S)
    assert withheld is not None and "11.7 g/dL" in withheld.group(1)
    assert "11.7" not in markup.replace(withheld.group(0), "")
    assert "Low" not in shown


@pytest.mark.parametrize(
    ("reason", "words", "figures"),
    [
        (
            "the model abstained (the photo is unlike those the model was trained on (threshold 4.2); "
            "spread 0.316; out-of-distribution score 4.46)",
            "The model abstained: the photo is unlike those the model was trained on.",
            "threshold 4.2; spread 0.316; out-of-distribution score 4.46",
        ),
        (
            "the model abstained (only 2 frame(s) gave a result, 3 are needed)",
            "The model abstained: only 2 frame(s) gave a result, 3 are needed.",
            None,
        ),
        ("something else entirely", "Something else entirely", None),
    ],
)
def test_an_abstention_is_words_for_the_clinician_and_figures_kept_apart(
    reason: str, words: str, figures: str | None
) -> None:
    assert abstention_words(reason) == (words, figures)


def test_panel_brief_gives_the_top_class_and_its_probability() -> None:
    panel = ConditionProbabilities((ClassProbability(AD, 0.18), ClassProbability(IMPETIGO, 0.82)))
    view = result_view(build_condition_observation(panel, sample_model(), sample_context()))
    assert view is not None and view.brief == "Impetigo 82\u00a0%"
    abstained = ConditionProbabilities(panel.classes, abstention=Abstention("too uncertain"))
    view = result_view(build_condition_observation(abstained, sample_model(), sample_context()))
    assert view is not None and view.brief == "No conclusion — the model abstained" and not view.conclusive


def test_probabilities_are_whole_percents_without_false_certainty() -> None:
    assert [percent(p) for p in (0.823, 0.005, 0.996, 1.0, 0.0)] == [
        "82\u00a0%", "<1\u00a0%", ">99\u00a0%", ">99\u00a0%", "<1\u00a0%"
    ]  # fmt: skip
