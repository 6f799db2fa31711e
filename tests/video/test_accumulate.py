"""Accumulation: frames of one lesion → one verdict, its steadiness, and abstention when it wavers."""

from __future__ import annotations

import pytest

from models.accumulate import (
    AccumulationPolicy,
    FrameResult,
    accumulate,
    most_representative,
    quality_weight,
)
from models.results import (
    ClassProbability,
    Concept,
    HbEstimate,
    QualityCheck,
    QualityCheckName,
    QualityVerdict,
    TisScore,
    TumourAssessment,
)
from tests.fhir_validation import sample_model

BCC, NEV = Concept("254701007", "Basal cell carcinoma"), Concept("400096001", "Melanocytic naevus")
MODEL = sample_model()


def tumour(malignant: float) -> TumourAssessment:
    return TumourAssessment(
        malignancy_probability=malignant,
        types=(ClassProbability(BCC, malignant), ClassProbability(NEV, 1 - malignant)),
    )


def frames(*results: object, weights: list[float] | None = None) -> list[FrameResult]:
    weights = weights or [1.0] * len(results)
    return [
        FrameResult(position=i * 0.5, weight=w, results=((MODEL, r),))  # type: ignore[arg-type]
        for i, (r, w) in enumerate(zip(results, weights, strict=True))
    ]


def test_probabilities_are_a_quality_weighted_mean_with_steadiness() -> None:
    (item,) = accumulate(
        frames(tumour(0.8), tumour(0.7), tumour(0.2), weights=[1, 1, 2]), AccumulationPolicy()
    )
    result = item.result
    assert isinstance(result, TumourAssessment)
    assert result.malignancy_probability == pytest.approx((0.8 + 0.7 + 0.4) / 4)
    assert result.types[0].concept == NEV  # the sharp frame's naevus outweighs
    steadiness = item.steadiness
    assert steadiness.frames_used == 3 and steadiness.agreement == pytest.approx(1 / 3)
    assert (steadiness.low, steadiness.high) == (0.2, 0.8)
    assert steadiness.timeline == (
        (0.0, "Basal cell carcinoma"),
        (0.5, "Basal cell carcinoma"),
        (1.0, "Melanocytic naevus"),
    )
    # Only a third of the frames agree: below the limit, so the verdict abstains and says why.
    assert result.abstention is not None and "disagree" in result.abstention.reason


def test_steady_frames_give_a_verdict() -> None:
    (item,) = accumulate(frames(tumour(0.8), tumour(0.7), tumour(0.9)), AccumulationPolicy())
    assert item.result.abstention is None and item.steadiness.agreement == 1.0


def test_too_few_frames_abstain() -> None:
    (item,) = accumulate(frames(tumour(0.8), tumour(0.7)), AccumulationPolicy(min_frames=3))
    assert item.result.abstention is not None and "only 2 frame(s)" in item.result.abstention.reason


def test_tis_and_hb_are_medians_with_their_spread() -> None:
    scores = [TisScore(2, 1, 1), TisScore(2, 2, 1), TisScore(3, 1, 0), TisScore(2, 1, 1)]
    (tis,) = accumulate(frames(*scores), AccumulationPolicy())
    assert tis.result == TisScore(2, 1, 1)
    assert tis.steadiness.measure == "TIS total" and tis.steadiness.spread == pytest.approx(0.25)
    assert tis.steadiness.agreement == 1.0  # every frame is "moderate"
    estimates = [HbEstimate(g, g - 2, g + 2) for g in (11.0, 11.5, 12.0, 15.0)]
    (hb,) = accumulate(frames(*estimates), AccumulationPolicy())
    assert isinstance(hb.result, HbEstimate) and hb.result.g_dl == pytest.approx(11.75)
    assert hb.steadiness.agreement == pytest.approx(0.75)  # 15.0 is more than 1 g/dL off


def test_the_representative_frame_is_the_one_nearest_the_verdict() -> None:
    accumulated = accumulate(frames(tumour(0.9), tumour(0.55), tumour(0.2)), AccumulationPolicy())
    assert most_representative(accumulated, 3) == 1


def test_sharper_frames_weigh_more_up_to_a_cap() -> None:
    def verdict(sharpness: float) -> QualityVerdict:
        return QualityVerdict((QualityCheck(QualityCheckName.BLUR, True, sharpness, 60.0),))

    assert quality_weight(verdict(60)) == 1.0
    assert quality_weight(verdict(120)) == 2.0
    assert quality_weight(verdict(6000)) == 3.0


def test_a_models_type_weights_survive_accumulation_and_name_each_frame() -> None:
    # Naevus is common in training (weight 0.5), BCC rarer (weight 2): 0.4 BCC outranks 0.6 naevus.
    def weighed(bcc: float) -> TumourAssessment:
        types = (ClassProbability(BCC, bcc, 2.0), ClassProbability(NEV, 1 - bcc, 0.5))
        return TumourAssessment(malignancy_probability=bcc, types=types)

    (item,) = accumulate(frames(weighed(0.4), weighed(0.35), weighed(0.45)), AccumulationPolicy())
    result = item.result
    assert isinstance(result, TumourAssessment)
    assert {c.concept: c.decision_weight for c in result.types} == {BCC: 2.0, NEV: 0.5}
    assert [label for _, label in item.steadiness.timeline] == ["Basal cell carcinoma"] * 3
    assert item.steadiness.agreement == 1.0 and result.abstention is None
