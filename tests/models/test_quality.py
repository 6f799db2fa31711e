"""The quality gate: which photos a patient is asked to retake, and what they are told."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFilter

from models.intake import DecodedPhoto, IntakeLimits, decode_photo
from models.quality import ADVICE_CONTENT, QualityThresholds, assess_quality
from models.results import PhotoKind, QualityCheck, QualityCheckName, QualityVerdict
from tests.models.conftest import decoded, lab_to_srgb, textured


def check(verdict: QualityVerdict, name: QualityCheckName) -> QualityCheck:
    return next(c for c in verdict.checks if c.name == name)


def failed_names(verdict: QualityVerdict) -> set[QualityCheckName]:
    return {c.name for c in verdict.failed}


# --- the four checks on ordinary photos ---------------------------------------------------------


def test_sharp_well_lit_skin_passes_every_check(
    skin_photo: Image.Image, thresholds: QualityThresholds
) -> None:
    verdict = assess_quality(decoded(skin_photo), thresholds, expected="skin")
    assert verdict.acceptable, verdict.failed
    assert verdict.content_found == "skin"
    # Every check the gate itself makes; "conjunctiva found" comes from the localiser, for eyelids,
    # and "frames" from the accumulation of a video or a series.
    assert [c.name for c in verdict.checks] == [
        n for n in QualityCheckName if n not in (QualityCheckName.CONJUNCTIVA_FOUND, QualityCheckName.FRAMES)
    ]
    for item in verdict.checks:
        assert item.advice is None
        assert item.threshold > 0
    assert check(verdict, QualityCheckName.BLUR).value >= thresholds.min_sharpness
    assert check(verdict, QualityCheckName.RESOLUTION).value == 900


def test_blurred_photo_fails_blur_with_focus_advice(
    skin_photo: Image.Image, thresholds: QualityThresholds
) -> None:
    blurred = skin_photo.filter(ImageFilter.GaussianBlur(4))
    verdict = assess_quality(decoded(blurred), thresholds, expected="skin")
    assert failed_names(verdict) == {QualityCheckName.BLUR}
    blur = check(verdict, QualityCheckName.BLUR)
    assert blur.value < blur.threshold == thresholds.min_sharpness
    assert blur.advice is not None and "still" in blur.advice and "focus" in blur.advice


@pytest.mark.parametrize(("level", "hint"), [(0, "too dark"), (255, "glare")], ids=["black", "white"])
def test_black_and_white_frames_fail_exposure(thresholds: QualityThresholds, level: int, hint: str) -> None:
    frame = Image.new("RGB", (800, 600), (level, level, level))
    verdict = assess_quality(decoded(frame), thresholds)
    exposure = check(verdict, QualityCheckName.EXPOSURE)
    assert not exposure.passed
    assert exposure.value == 1.0 and exposure.threshold == thresholds.max_clipped_fraction
    assert exposure.advice is not None and hint in exposure.advice and "even light" in exposure.advice
    assert not verdict.acceptable


def test_dim_photo_without_clipping_fails_on_mean_brightness(
    skin_photo: Image.Image, thresholds: QualityThresholds
) -> None:
    dim = Image.eval(skin_photo, lambda v: int(v * 0.2))
    exposure = check(assess_quality(decoded(dim), thresholds, expected="skin"), QualityCheckName.EXPOSURE)
    assert not exposure.passed
    assert exposure.value < thresholds.min_mean_brightness == exposure.threshold
    assert exposure.unit == "{grey-level}"


def test_flash_glare_fails_exposure(skin_photo: Image.Image, thresholds: QualityThresholds) -> None:
    glare = skin_photo.copy()
    glare.paste((255, 255, 255), (0, 0, 1200, 300))  # a third of the frame blown out
    exposure = check(assess_quality(decoded(glare), thresholds, expected="skin"), QualityCheckName.EXPOSURE)
    assert not exposure.passed and exposure.advice is not None and "glare" in exposure.advice


def test_tiny_photo_fails_resolution(thresholds: QualityThresholds) -> None:
    tiny = textured((205, 158, 132), (160, 120), seed=2)
    verdict = assess_quality(decoded(tiny), thresholds, expected="skin")
    resolution = check(verdict, QualityCheckName.RESOLUTION)
    assert not resolution.passed
    assert (resolution.value, resolution.threshold) == (120, thresholds.min_side_px)
    assert resolution.advice is not None and "closer" in resolution.advice


def test_resolution_is_judged_on_the_photo_as_taken_not_the_reduced_decode(
    thresholds: QualityThresholds,
) -> None:
    buffer = io.BytesIO()
    textured((205, 158, 132), (2000, 1500), grain=4.0).save(buffer, "JPEG", quality=90)
    photo = decode_photo(buffer.getvalue(), limits=IntakeLimits(), min_side=150)
    assert min(photo.pixels.size) < thresholds.min_side_px
    assert check(assess_quality(photo, thresholds), QualityCheckName.RESOLUTION).passed


def test_blue_wall_fails_content(thresholds: QualityThresholds) -> None:
    wall = textured((70, 110, 190), (1000, 750), seed=3)
    for expected in ("skin", "conjunctiva", None):
        verdict = assess_quality(decoded(wall), thresholds, expected=expected)
        content = check(verdict, QualityCheckName.CONTENT)
        assert failed_names(verdict) == {QualityCheckName.CONTENT}, expected
        assert content.value < thresholds.min_content_fraction
        assert content.advice == ADVICE_CONTENT[expected]
        assert verdict.content_found is None
    assert "lower eyelid" in ADVICE_CONTENT["conjunctiva"] and "skin area" in ADVICE_CONTENT["skin"]


@pytest.mark.parametrize(
    "colour", [(40, 140, 60), (128, 128, 128), (150, 150, 160)], ids=["grass", "grey", "cool-grey"]
)
def test_things_that_are_not_tissue_fail_content(
    thresholds: QualityThresholds, colour: tuple[int, int, int]
) -> None:
    verdict = assess_quality(decoded(textured(colour, (800, 600), grain=3.0)), thresholds)
    assert QualityCheckName.CONTENT in failed_names(verdict)


# --- skin of every tone -------------------------------------------------------------------------

MONK_SKIN_TONES = (
    "f6ede4",
    "f3e7db",
    "f7ead0",
    "eadaba",
    "d7bd96",
    "a07e56",
    "825c43",
    "604134",
    "3a312a",
    "292420",
)
# Typical skin CIELAB for the ITA° categories (very light … dark), Del Bino et al.
ITA_SKIN_LAB = (
    (70, 8, 12),
    (65, 10, 15),
    (60, 11, 17),
    (55, 12, 19),
    (45, 12, 19),
    (35, 11, 16),
    (28, 9, 12),
)


@pytest.mark.parametrize("hex_colour", MONK_SKIN_TONES)
def test_every_monk_skin_tone_counts_as_skin(thresholds: QualityThresholds, hex_colour: str) -> None:
    colour = (int(hex_colour[0:2], 16), int(hex_colour[2:4], 16), int(hex_colour[4:6], 16))
    verdict = assess_quality(decoded(textured(colour, (800, 600), grain=2.0)), thresholds, expected="skin")
    content = check(verdict, QualityCheckName.CONTENT)
    assert content.passed and content.value > 0.8, (hex_colour, content.value)
    assert verdict.content_found == "skin"


@pytest.mark.parametrize("lab", ITA_SKIN_LAB)
def test_skin_across_ita_categories_counts_as_skin(
    thresholds: QualityThresholds, lab: tuple[int, int, int]
) -> None:
    colour = lab_to_srgb(*lab)
    verdict = assess_quality(decoded(textured(colour, (800, 600), grain=3.0)), thresholds, expected="skin")
    assert check(verdict, QualityCheckName.CONTENT).value > 0.8, (lab, colour)


# --- conjunctiva and pre-cropped strips ---------------------------------------------------------


def test_real_cp_anemic_strips_pass_as_conjunctiva(
    cp_strip: DecodedPhoto, thresholds: QualityThresholds
) -> None:
    assert cp_strip.alpha is not None  # transparent background around the tissue
    verdict = assess_quality(cp_strip, thresholds, expected="conjunctiva")
    assert verdict.acceptable, verdict.failed
    assert verdict.content_found == "conjunctiva"
    resolution = check(verdict, QualityCheckName.RESOLUTION)
    assert resolution.threshold == thresholds.precropped_min_side_px < thresholds.min_side_px


def test_strip_without_its_mask_would_fail_on_size(
    cp_strip: DecodedPhoto, thresholds: QualityThresholds
) -> None:
    # The lower floor is there because the input is a pre-cropped strip, not because small is fine.
    flattened = decoded(cp_strip.pixels)
    if min(flattened.original_size) < thresholds.min_side_px:
        assert QualityCheckName.RESOLUTION in failed_names(
            assess_quality(flattened, thresholds, "conjunctiva")
        )


def test_only_opaque_pixels_count(thresholds: QualityThresholds) -> None:
    # Tissue in the middle of a frame whose transparent part happens to be stored as blue.
    image = Image.new("RGB", (600, 400), (20, 40, 230))
    image.paste(textured((205, 110, 105), (300, 200), seed=9), (150, 100))
    alpha = Image.new("L", image.size, 0)
    alpha.paste(255, (150, 100, 450, 300))
    masked = assess_quality(decoded(image, alpha), thresholds, expected="conjunctiva")
    unmasked = assess_quality(decoded(image), thresholds, expected="conjunctiva")
    assert check(masked, QualityCheckName.CONTENT).value > 0.9
    assert check(unmasked, QualityCheckName.CONTENT).value < 0.3
    assert not check(masked, QualityCheckName.EXPOSURE).value  # no clipping among opaque pixels


def test_fully_transparent_input_fails_without_crashing(thresholds: QualityThresholds) -> None:
    image = textured((205, 110, 105), (300, 200))
    verdict = assess_quality(decoded(image, Image.new("L", image.size, 0)), thresholds, "conjunctiva")
    assert {QualityCheckName.BLUR, QualityCheckName.EXPOSURE, QualityCheckName.CONTENT} <= failed_names(
        verdict
    )


# --- the README examples ------------------------------------------------------------------------


def test_examples_behave_as_the_readme_says(
    example_bytes: dict[str, bytes], thresholds: QualityThresholds
) -> None:
    limits = IntakeLimits()

    def verdict(name: str, kind: PhotoKind) -> QualityVerdict:
        return assess_quality(decode_photo(example_bytes[name], limits=limits), thresholds, kind)

    forearm = verdict("forearm-eczema.jpg", "skin")
    assert forearm.acceptable and forearm.content_found == "skin", forearm.failed
    eyelid = verdict("eyelid.png", "conjunctiva")
    assert eyelid.acceptable and eyelid.content_found == "conjunctiva", eyelid.failed
    # Without being told, colour alone routes the two sharp examples to the right pipeline.
    for name, kind in (("forearm-eczema.jpg", "skin"), ("eyelid.png", "conjunctiva")):
        photo = decode_photo(example_bytes[name], limits=limits)
        assert assess_quality(photo, thresholds).content_found == kind, name
    blurry = verdict("blurry.jpg", "skin")
    assert {QualityCheckName.BLUR, QualityCheckName.EXPOSURE} <= failed_names(blurry)
    assert all(c.advice for c in blurry.failed)


def test_thresholds_come_from_settings_with_the_same_defaults() -> None:
    from plugin.settings import Settings

    assert QualityThresholds.from_settings(Settings()) == QualityThresholds()


def test_gate_is_deterministic(skin_photo: Image.Image, thresholds: QualityThresholds) -> None:
    photo = decoded(skin_photo)
    assert assess_quality(photo, thresholds) == assess_quality(photo, thresholds)
    assert np.isfinite([c.value for c in assess_quality(photo, thresholds).checks]).all()
