"""Photo intake: what a sender sees for each bad file, and what a good photo becomes."""

from __future__ import annotations

import hashlib
import io
import time
import warnings

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms, PngImagePlugin

from models.errors import (
    EmptyPhoto,
    IntakeError,
    PhotoTooLarge,
    PhotoTooManyPixels,
    TruncatedPhoto,
    UndecodablePhoto,
    UnsupportedMediaType,
)
from models.intake import DecodedPhoto, IntakeLimits, decode_photo, strip_to_bytes
from tests.models.conftest import EXAMPLES, encode, png_declaring, textured

# --- refusals -----------------------------------------------------------------------------------


def refused(data: bytes, limits: IntakeLimits, declared_content_type: str | None = None) -> IntakeError:
    with pytest.raises(IntakeError) as caught:
        decode_photo(data, limits=limits, declared_content_type=declared_content_type)
    return caught.value


def test_empty_file_is_refused_as_empty(limits: IntakeLimits) -> None:
    error = refused(b"", limits)
    assert isinstance(error, EmptyPhoto)
    assert error.code == "empty-photo"


def test_file_over_the_byte_limit_is_refused_before_anything_else(limits: IntakeLimits) -> None:
    photo = encode(textured((200, 150, 130), (64, 64)), "JPEG")
    error = refused(photo, IntakeLimits(max_bytes=len(photo) - 1))
    assert isinstance(error, PhotoTooLarge)
    assert (error.code, error.http_status) == ("photo-too-large", 413)
    assert f"{len(photo):,}" in error.message


def test_non_image_bytes_are_undecodable_and_not_echoed(limits: IntakeLimits) -> None:
    secret = b"patient-name=Yamada Taro; dob=1970-01-01"
    error = refused(secret, limits)
    assert isinstance(error, UndecodablePhoto)
    assert error.code == "undecodable-photo"
    assert "Yamada" not in error.message and "1970" not in error.message


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n", "PDF"),
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "SVG"),
        (b'\xef\xbb\xbf  <svg viewBox="0 0 1 1"><script>alert(1)</script></svg>', "SVG"),
        (encode(Image.new("RGB", (8, 8), (200, 10, 10)), "GIF"), "GIF"),
        (encode(Image.new("RGB", (8, 8), (200, 10, 10)), "TIFF"), "TIFF"),
        (encode(Image.new("RGB", (8, 8), (200, 10, 10)), "BMP"), "BMP"),
    ],
    ids=["pdf", "svg", "svg-bom-script", "gif", "tiff", "bmp"],
)
def test_known_non_photo_formats_are_unsupported_and_named(
    limits: IntakeLimits, data: bytes, named: str
) -> None:
    error = refused(data, limits, declared_content_type="image/jpeg")
    assert isinstance(error, UnsupportedMediaType)
    assert (error.code, error.http_status) == ("unsupported-media-type", 415)
    assert named in error.message
    assert "alert" not in error.message


def test_declared_type_outside_the_accepted_set_is_refused(limits: IntakeLimits) -> None:
    photo = encode(textured((200, 150, 130), (64, 64)), "JPEG")
    error = refused(photo, limits, declared_content_type="text/html")
    assert isinstance(error, UnsupportedMediaType)
    assert "text/html" in error.message


@pytest.mark.parametrize(
    "declared", ["image/png", "image/webp", "IMAGE/JPEG; charset=binary", "image/jpg", None]
)
def test_declared_type_that_disagrees_with_the_bytes_yields_to_them(
    limits: IntakeLimits, declared: str | None
) -> None:
    photo = encode(textured((200, 150, 130), (64, 64)), "JPEG")
    result = decode_photo(photo, limits=limits, declared_content_type=declared)
    assert (result.format, result.content_type) == ("JPEG", "image/jpeg")


def test_truncated_jpeg_is_refused_as_truncated(limits: IntakeLimits) -> None:
    photo = encode(textured((200, 150, 130), (640, 480)), "JPEG", quality=90)
    for cut in (len(photo) // 2, len(photo) - 200, 400):
        error = refused(photo[:cut], limits)
        assert isinstance(error, TruncatedPhoto), cut
        assert error.code == "truncated-photo"


def test_truncated_png_is_refused_as_truncated(limits: IntakeLimits) -> None:
    photo = encode(textured((200, 150, 130), (320, 240)), "PNG")
    assert isinstance(refused(photo[: len(photo) // 2], limits), TruncatedPhoto)


def test_corrupt_jpeg_header_is_undecodable(limits: IntakeLimits) -> None:
    # A start-of-scan before any frame header: not a cut-off file, just not a JPEG that decodes.
    error = refused(b"\xff\xd8\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" + b"\x00" * 64 + b"\xff\xd9", limits)
    assert isinstance(error, UndecodablePhoto)


def test_png_bomb_is_refused_from_its_header_fast_and_silently(
    limits: IntakeLimits, capfd: pytest.CaptureFixture[str]
) -> None:
    bomb = png_declaring(100_000, 100_000)
    assert len(bomb) < 10_000
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning (DecompressionBombWarning included) fails
        started = time.perf_counter()
        error = refused(bomb, limits)
        elapsed = time.perf_counter() - started
    assert isinstance(error, PhotoTooManyPixels)
    assert (error.code, error.http_status) == ("photo-too-many-pixels", 413)
    assert "100000×100000" in error.message
    assert elapsed < 0.05
    assert capfd.readouterr().err == ""


def test_pillows_own_bomb_limit_caps_a_generous_setting_without_a_warning(limits: IntakeLimits) -> None:
    # 100 MP is past Pillow's 89.5 MP warning line; a site allowing 500 MP still gets our error.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        error = refused(png_declaring(10_000, 10_000), IntakeLimits(max_pixels=500_000_000))
    assert isinstance(error, PhotoTooManyPixels)


def test_jpeg_declaring_huge_frame_is_refused_before_decoding(limits: IntakeLimits) -> None:
    photo = bytearray(encode(textured((200, 150, 130), (64, 48)), "JPEG"))
    sof = photo.index(b"\xff\xc0")
    photo[sof + 5 : sof + 9] = (60_000).to_bytes(2, "big") + (60_000).to_bytes(2, "big")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        error = refused(bytes(photo), limits)
    assert isinstance(error, PhotoTooManyPixels)


def test_pixel_limit_applies_to_ordinary_photos_too() -> None:
    photo = encode(textured((200, 150, 130), (400, 300)), "PNG")
    error = refused(photo, IntakeLimits(max_pixels=400 * 300 - 1))
    assert isinstance(error, PhotoTooManyPixels)


# --- what a good photo becomes ------------------------------------------------------------------


def sideways_marker() -> Image.Image:
    """400×200 stored pixels: left half red, right half blue."""
    image = Image.new("RGB", (400, 200), (0, 0, 220))
    image.paste((220, 0, 0), (0, 0, 200, 200))
    return image


def phone_exif(orientation: int = 6) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "TestPhone"
    exif[ExifTags.Base.Orientation] = orientation
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (35.0, 41.0, 22.2)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (139.0, 41.0, 30.1)
    return exif


def test_exif_orientation_6_comes_out_rotated_upright(limits: IntakeLimits) -> None:
    photo = encode(sideways_marker(), "JPEG", quality=95, exif=phone_exif(6).tobytes())
    result = decode_photo(photo, limits=limits)
    assert result.pixels.size == (200, 400)
    assert result.original_size == (200, 400)
    top, bottom = result.pixels.getpixel((100, 50)), result.pixels.getpixel((100, 350))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] > 150 > top[2]  # the stored left (red) is now on top
    assert bottom[2] > 150 > bottom[0]


def test_gps_and_all_metadata_are_gone(limits: IntakeLimits) -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    photo = encode(
        textured((200, 150, 130), (320, 240)), "JPEG", exif=phone_exif(1).tobytes(), icc_profile=icc, xmp=xmp
    )
    with Image.open(io.BytesIO(photo)) as original:
        assert original.getexif().get_ifd(ExifTags.IFD.GPSInfo)  # the input really has a GPS fix
        assert "icc_profile" in original.info
    result = decode_photo(photo, limits=limits)
    assert result.pixels.info == {}
    assert len(result.pixels.getexif()) == 0
    stored, content_type = strip_to_bytes(result)
    assert content_type == "image/jpeg"
    for marker in (b"Exif", b"GPS", b"TestPhone", b"ICC_PROFILE", b"xmpmeta", b"http://ns.adobe.com"):
        assert marker not in stored
    with Image.open(io.BytesIO(stored)) as reopened:
        assert len(reopened.getexif()) == 0
        assert "icc_profile" not in reopened.info and "exif" not in reopened.info


def test_png_text_and_exif_chunks_are_gone(limits: IntakeLimits) -> None:
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "Taken at Tokyo clinic, patient 12345")
    photo = encode(textured((200, 150, 130), (128, 96)), "PNG", pnginfo=text, exif=phone_exif(1).tobytes())
    result = decode_photo(photo, limits=limits)
    assert result.pixels.info == {}
    stored, content_type = strip_to_bytes(result)
    assert content_type == "image/png"  # lossless source stays lossless
    assert b"12345" not in stored and b"eXIf" not in stored and b"tEXt" not in stored


def test_example_forearm_loses_its_gps_and_stands_upright(limits: IntakeLimits) -> None:
    photo = (EXAMPLES / "forearm-eczema.jpg").read_bytes()
    with Image.open(io.BytesIO(photo)) as original:
        assert original.getexif().get_ifd(ExifTags.IFD.GPSInfo)
        assert original.size == (768, 1024)
    result = decode_photo(photo, limits=limits)
    assert result.pixels.size == (1024, 768)
    assert len(result.pixels.getexif()) == 0
    assert b"GPS" not in strip_to_bytes(result)[0]


def test_heic_round_trip(limits: IntakeLimits) -> None:
    source = textured((190, 140, 120), (320, 240), seed=4)
    photo = encode(source, "HEIF", quality=90)
    result = decode_photo(photo, limits=limits, declared_content_type="image/heic")
    assert (result.format, result.content_type) == ("HEIF", "image/heic")
    assert result.pixels.mode == "RGB" and result.pixels.size == (320, 240)
    drift = np.abs(
        np.asarray(result.pixels, dtype=float).mean((0, 1)) - np.asarray(source, dtype=float).mean((0, 1))
    )
    assert drift.max() < 4.0
    assert result.pixels.info == {}


def test_heic_orientation_is_applied_once(limits: IntakeLimits) -> None:
    photo = encode(sideways_marker(), "HEIF", quality=90, exif=phone_exif(6).tobytes())
    result = decode_photo(photo, limits=limits)
    assert result.pixels.size == (200, 400)
    top = result.pixels.getpixel((100, 50))
    assert isinstance(top, tuple) and top[0] > 150 > top[2]


@pytest.mark.parametrize("lossless", [False, True])
def test_webp(limits: IntakeLimits, lossless: bool) -> None:
    source = textured((190, 140, 120), (300, 200), seed=5)
    photo = encode(source, "WEBP", lossless=lossless, quality=90)
    result = decode_photo(photo, limits=limits)
    assert (result.format, result.content_type, result.pixels.size) == ("WEBP", "image/webp", (300, 200))
    assert result.lossless is lossless
    assert strip_to_bytes(result)[1] == ("image/png" if lossless else "image/jpeg")


def test_jpeg_is_decoded_at_reduced_scale_when_fewer_pixels_are_enough(limits: IntakeLimits) -> None:
    photo = encode(textured((200, 150, 130), (4000, 3000), grain=3.0), "JPEG", quality=80)
    full = decode_photo(photo, limits=limits)
    reduced = decode_photo(photo, limits=limits, min_side=512)
    assert full.pixels.size == (4000, 3000)
    assert reduced.pixels.size == (1000, 750)  # 1/4 scale: 1/8 would drop below 512
    assert min(reduced.pixels.size) >= 512
    assert reduced.original_size == (4000, 3000)


def test_reduced_scale_keeps_the_short_side_after_orientation(limits: IntakeLimits) -> None:
    photo = encode(textured((200, 150, 130), (2400, 1600), grain=3.0), "JPEG", exif=phone_exif(6).tobytes())
    result = decode_photo(photo, limits=limits, min_side=300)
    assert result.original_size == (1600, 2400)
    assert result.pixels.size == (400, 600)  # 1/4 scale, rotated upright
    assert min(result.pixels.size) >= 300


@pytest.mark.parametrize(
    ("make", "fmt"),
    [
        (
            lambda im: Image.fromarray(np.asarray(im.convert("L"), dtype=np.uint16) * 257),
            "PNG",
        ),  # 16-bit grey
        (lambda im: im.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        (lambda im: im.convert("L"), "PNG"),
        (lambda im: im.convert("L"), "JPEG"),
        (lambda im: im.convert("CMYK"), "JPEG"),
    ],
    ids=["png-16bit-grey", "png-palette", "png-grey", "jpeg-grey", "jpeg-cmyk"],
)
def test_every_colour_mode_ends_as_rgb_with_its_brightness(
    limits: IntakeLimits, make: object, fmt: str
) -> None:
    source = textured((170, 130, 110), (160, 120), seed=6, grain=2.0)
    assert callable(make)
    photo = encode(make(source), fmt)
    result = decode_photo(photo, limits=limits)
    assert result.pixels.mode == "RGB"
    brightness = float(np.asarray(result.pixels.convert("L"), dtype=float).mean())
    expected = float(np.asarray(source.convert("L"), dtype=float).mean())
    assert abs(brightness - expected) < 12.0  # 16-bit data scaled, not clipped to white


def test_transparent_strip_keeps_its_mask(limits: IntakeLimits) -> None:
    strip = textured((200, 100, 100), (200, 80)).convert("RGBA")
    mask = Image.new("L", strip.size, 0)
    mask.paste(255, (20, 20, 180, 60))
    strip.putalpha(mask)
    result = decode_photo(encode(strip, "PNG"), limits=limits)
    assert result.alpha is not None and result.alpha.mode == "L"
    assert result.alpha.getpixel((5, 5)) == 0 and result.alpha.getpixel((100, 40)) == 255
    stored, content_type = strip_to_bytes(result)
    assert content_type == "image/png"
    with Image.open(io.BytesIO(stored)) as reopened:
        assert reopened.mode == "RGBA"
        assert reopened.getchannel("A").getpixel((5, 5)) == 0


def test_opaque_alpha_channel_is_not_a_mask(limits: IntakeLimits) -> None:
    photo = encode(textured((200, 150, 130), (64, 48)).convert("RGBA"), "PNG")
    assert decode_photo(photo, limits=limits).alpha is None


def test_la_png_with_transparency_gets_a_mask(limits: IntakeLimits) -> None:
    grey = textured((150, 150, 150), (64, 48)).convert("LA")
    grey.putalpha(0)
    grey.paste((120, 255), (10, 10, 30, 30))
    result = decode_photo(encode(grey, "PNG"), limits=limits)
    assert result.pixels.mode == "RGB" and result.alpha is not None


def test_sha256_is_of_the_bytes_as_received(limits: IntakeLimits) -> None:
    photo = encode(textured((200, 150, 130), (64, 48)), "JPEG", exif=phone_exif(6).tobytes())
    result = decode_photo(photo, limits=limits)
    assert isinstance(result, DecodedPhoto)
    assert result.sha256 == hashlib.sha256(photo).hexdigest()


def test_limits_come_from_settings_with_the_same_defaults() -> None:
    from plugin.settings import Settings

    assert IntakeLimits.from_settings(Settings()) == IntakeLimits()
