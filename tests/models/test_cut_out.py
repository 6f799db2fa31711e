"""A cut-out on black is read as a cut-out on transparency: the gate passes it, the tumour model scores it.

PAD-UFES-20 ships its lesions this way; judged as a whole photo, the black surround made the
quality gate ask for a retake of every one of the repository's test cut-outs.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.cut_out import as_cut_out, cut_out_mask
from models.intake import DecodedPhoto, IntakeLimits, decode_photo
from models.results import TumourAssessment
from models.skin.lesions import MIN_CUT_OUT_SHARE, cut_out_lesion
from plugin.settings import load_settings
from tests.datasets import PAD_UFES_SUBSET
from tests.models.conftest import textured
from workers.analysis import analyse_photo

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _pad_images() -> list[Path]:
    with (PAD_UFES_SUBSET / "labels.csv").open(newline="") as handle:
        return [PAD_UFES_SUBSET / row["file"] for row in csv.DictReader(handle)]


def _decoded(data: bytes) -> DecodedPhoto:
    return decode_photo(data, limits=IntakeLimits())


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def test_every_repository_pad_cut_out_is_read_as_one() -> None:
    for path in _pad_images():
        photo = as_cut_out(_decoded(path.read_bytes()))
        assert photo.alpha is not None, path.name
        assert photo.alpha.size == photo.pixels.size
        opaque = np.asarray(photo.alpha) > 0
        # The lesion is opaque; the black around it is not.
        assert 0.01 < opaque.mean() < 0.75, path.name
        assert np.asarray(photo.pixels.convert("RGB")).max(axis=2)[~opaque].mean() < 10, path.name


@pytest.mark.parametrize("name", ["forearm-eczema.jpg", "eyelid.png", "blurry.jpg"])
def test_whole_photos_are_not_cut_outs(name: str) -> None:
    photo = _decoded((EXAMPLES / name).read_bytes())
    assert as_cut_out(photo) is photo


def test_a_dim_photo_with_a_dark_frame_stays_a_photo() -> None:
    """Shadows carry sensor noise: dark is not the exact black a cut-out's surround is."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 18, size=(400, 600, 3), dtype=np.uint8)  # a dim room, noise and all
    pixels[120:280, 200:400] = np.asarray(textured((150, 110, 95), (200, 160), seed=2))
    assert cut_out_mask(pixels) is None
    # The same subject on exact black is a cut-out.
    pixels[:120], pixels[280:], pixels[:, :200], pixels[:, 400:] = 0, 0, 0, 0
    inside = cut_out_mask(pixels)
    assert inside is not None and inside[200, 300] and not inside[10, 10]


def test_a_photo_with_alpha_is_left_as_it_came() -> None:
    buffer = io.BytesIO()
    rgba = Image.new("RGBA", (300, 200), (0, 0, 0, 0))
    rgba.paste(textured((190, 140, 120), (100, 80), seed=3), (100, 60))
    rgba.save(buffer, format="PNG")
    photo = _decoded(buffer.getvalue())
    assert photo.alpha is not None and as_cut_out(photo) is photo


@pytest.mark.parametrize("requested", ["skin", "auto"])
def test_a_pad_cut_out_passes_the_gate_and_gets_a_tumour_assessment(requested: str) -> None:
    # Two BCCs of the subset (forearm, and the next row). The first row's, a pale lilac scaly
    # plaque, is asked for again: too few of its pixels have a skin colour (a known limit).
    for path in _pad_images()[1:3]:
        analysed = analyse_photo(path.read_bytes(), load_settings(), requested=requested)  # type: ignore[arg-type]
        assert analysed.kind == "skin", path.name
        assert analysed.report.quality.acceptable, (path.name, analysed.report.quality.failed)
        tumour = [r for _, r in analysed.report.model_results if isinstance(r, TumourAssessment)]
        assert len(tumour) == 1, path.name
        assert 0.0 <= tumour[0].malignancy_probability <= 1.0
        # Analysed as the cut-out it is: the black is transparency, not a dark frame around skin.
        assert analysed.decoded.alpha is not None


def test_the_same_lesion_on_a_dark_photo_is_judged_as_a_photo() -> None:
    """Without the exact black, the frame counts: a dim photo is asked for again, not cut out."""
    cut = np.asarray(Image.open(_pad_images()[0]).convert("RGB")).copy()
    rng = np.random.default_rng(1)
    black = cut.max(axis=2) <= 4
    cut[black] = rng.integers(6, 20, size=(int(black.sum()), 3), dtype=np.uint8)
    analysed = analyse_photo(_jpeg(Image.fromarray(cut)), load_settings(), requested="skin")
    assert analysed.decoded.alpha is None
    assert not analysed.report.quality.acceptable


def test_a_cut_out_is_scored_in_its_own_frame_and_a_lost_lesion_is_framed() -> None:
    """As PAD-UFES-20 frames the tumour classifier's training photos; a tight crop magnified them."""
    photo = as_cut_out(_decoded(_pad_images()[1].read_bytes()))
    assert photo.alpha is not None
    lesion = cut_out_lesion(photo, photo.alpha)
    assert lesion.kind == "cut-out" and lesion.crop.pixels.size == photo.pixels.size
    # A 30-px lesion cut out on transparency in a 1000-px frame: a square at MIN_CUT_OUT_SHARE
    # around it, transparent beyond the frame.
    rgba = Image.new("RGBA", (1000, 1000), (0, 0, 0, 0))
    rgba.paste(textured((170, 120, 110), (30, 30), seed=4), (950, 900))
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG")
    small = _decoded(buffer.getvalue())
    assert small.alpha is not None
    lesion = cut_out_lesion(small, small.alpha)
    left, top, right, bottom = lesion.box
    assert right - left == bottom - top == pytest.approx(30 / MIN_CUT_OUT_SHARE, abs=8)
    assert left < 950 and right > 980 and top < 900 and bottom > 930
    assert lesion.crop.alpha is not None and np.asarray(lesion.crop.alpha)[-1, -1] == 0
