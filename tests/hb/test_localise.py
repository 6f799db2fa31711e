"""The classical localiser: strips as they are, the eyelid band in a whole photo, nothing in a wall."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from models.hb.localise import conjunctiva_strip, localise_conjunctiva
from models.intake import DecodedPhoto, IntakeLimits, decode_photo
from tests.hb.conftest import strip_png

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _decode(data: bytes) -> DecodedPhoto:
    return decode_photo(data, limits=IntakeLimits())


def test_a_precropped_strip_is_taken_as_it_is() -> None:
    photo = _decode(strip_png((200, 110, 120)))
    where = localise_conjunctiva(photo)
    assert where.found and where.method == "precropped"
    assert photo.alpha is not None
    assert np.array_equal(where.mask, np.asarray(photo.alpha) >= 128)


def test_the_classical_localiser_finds_the_band_of_the_example_eyelid() -> None:
    photo = _decode((EXAMPLES / "eyelid.png").read_bytes())
    strip, where = conjunctiva_strip(photo, None)
    assert strip is not None and where.method == "classical" and where.box is not None
    left, top, right, bottom = where.box
    width, height = photo.pixels.size
    # The pink band spans the frame's width in its middle third, between the iris and the lashes.
    assert right - left > 0.8 * width
    assert 0.15 * height < top < 0.4 * height and 0.55 * height < bottom < 0.8 * height
    assert where.mask is not None and where.mask[height // 2, width // 2]


def test_nothing_is_found_in_a_grey_wall() -> None:
    rng = np.random.default_rng(0)
    wall = np.clip(128 + rng.normal(0, 4, (300, 400, 3)), 0, 255).astype(np.uint8)
    strip, where = conjunctiva_strip(_decode(_png(Image.fromarray(wall))), None)
    assert strip is None and not where.found
    assert where.reason == "no palpebral conjunctiva was found in the photo"


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
