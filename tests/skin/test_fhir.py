"""How the skin results read in FHIR: body site precedence, the diagnosis panel's top-k, validity."""

from __future__ import annotations

from fhir_mappings import codes
from fhir_mappings.observations import build_condition_observation, build_tis_observation
from models.results import ClassProbability, Concept, ConditionProbabilities, TisScore
from tests.fhir_validation import assert_valid_fhir, sample_context, sample_model, sample_photo

HAND = Concept("85562004", "Hand structure", "http://snomed.info/sct")
FOREARM = Concept("14975008", "Forearm structure", "http://snomed.info/sct")


def site_codes(obs: dict[str, object]) -> set[str]:
    return {coding["code"] for coding in obs["bodySite"]["coding"]}  # type: ignore[index]


def test_the_senders_body_site_wins_over_the_models_guess() -> None:
    guessed = TisScore(2, 1, 1, body_site=HAND)
    from_model = build_tis_observation(guessed, sample_model(), sample_context())
    assert site_codes(from_model) == {"85562004"}
    sent = sample_context(sample_photo(body_site=(FOREARM,)))
    assert site_codes(build_tis_observation(guessed, sample_model(), sent)) == {"14975008"}
    assert_valid_fhir(from_model)


def test_the_diagnosis_panel_has_its_own_code_and_reads_as_a_top_3() -> None:
    classes = tuple(
        ClassProbability(Concept(code, code.capitalize()), p)
        for code, p in (("psoriasis", 0.5), ("vitiligo", 0.3), ("urticaria", 0.15), ("tinea-corporis", 0.05))
    )
    panel = ConditionProbabilities(classes=classes, panel="skin-diagnosis", lesion_count=2, body_site=HAND)
    obs = build_condition_observation(panel, sample_model(), sample_context())
    assert obs["code"]["coding"][0]["code"] == "skin-diagnosis-probabilities"
    text = obs["interpretation"][0]["text"]
    assert text.startswith("Top 3: 1. Psoriasis (50 %); 2. Vitiligo (30 %); 3. Urticaria (15 %)")
    assert "Lesions assessed: 2" in " ".join(note["text"] for note in obs["note"])
    assert len(obs["component"]) == 4
    assert_valid_fhir(obs)
    # Its identifier differs from the AD-vs-complications panel of the same photo and model.
    condition = build_condition_observation(
        ConditionProbabilities(classes=classes), sample_model(), sample_context()
    )
    assert obs["identifier"][0]["value"] != condition["identifier"][0]["value"]


def test_every_local_skin_code_is_published() -> None:
    for code in (
        "skin-diagnosis-probabilities",
        "psoriasis",
        "tinea-corporis",
        "urticaria",
        "vitiligo",
        "trunk-back",
    ):
        assert code in codes.LOCAL_CONCEPTS
