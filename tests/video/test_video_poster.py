"""A video's poster frame (what the clinician sees for it) and its stated length."""

from __future__ import annotations

import numpy as np
import pytest

from models.errors import AudioOnly, NotAVideo, VideoTooLong
from models.video import decode_video, poster_frame
from models.video_container import VideoLimits, declared_length
from tests.video.clips import encode, skin_frames, sound_only
from tests.video.test_video_intake import marked_frames

LIMITS = VideoLimits()


def grey_ramp(count: int, step: int = 20) -> list[np.ndarray]:
    """Frame i is flat grey i × step: the poster's grey level tells which frame it is."""
    return [np.full((64, 64, 3), min(255, i * step), np.uint8) for i in range(count)]


def test_the_poster_is_the_frame_a_quarter_in_at_most_one_second() -> None:
    two_seconds = encode(grey_ramp(20, step=10), fps=10)
    poster = poster_frame(two_seconds, limits=LIMITS)
    assert poster.duration_s == pytest.approx(2.0, abs=0.15)
    # A quarter of 2 s is 0.5 s: frame 5, grey 50 (codec loss aside), not the first frame's black.
    assert float(np.asarray(poster.image).mean()) == pytest.approx(50, abs=6)
    eight_seconds = encode(grey_ramp(40, step=5), fps=5)
    # A quarter of 8 s would be 2 s; the poster stays at 1 s: frame 5, grey 25.
    later = poster_frame(eight_seconds, limits=LIMITS)
    assert float(np.asarray(later.image).mean()) == pytest.approx(25, abs=6)


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_the_poster_is_upright_like_the_analysed_frames(rotation: int) -> None:
    clip = encode(marked_frames(3), rotation=rotation)
    poster = poster_frame(clip, limits=LIMITS)
    analysed = decode_video(clip, limits=LIMITS).frames[0].photo.pixels
    assert poster.image.size == analysed.size
    difference = np.abs(np.asarray(poster.image, np.int16) - np.asarray(analysed, np.int16))
    assert float(difference.mean()) < 3
    assert not poster.image.info, "no container metadata travels with the poster"


def test_the_poster_is_scaled_down_while_decoding() -> None:
    clip = encode(skin_frames(4, size=320), fps=4)
    assert min(poster_frame(clip, limits=LIMITS, min_side=160).image.size) == 160


def test_a_bad_video_gets_the_same_refusal_as_for_analysis() -> None:
    with pytest.raises(AudioOnly):
        poster_frame(sound_only(), limits=LIMITS)
    with pytest.raises(NotAVideo):
        poster_frame(b"not a video at all", limits=LIMITS)
    with pytest.raises(VideoTooLong):
        poster_frame(encode(grey_ramp(30), fps=10), limits=VideoLimits(max_duration_s=2))


def test_the_declared_length_is_read_from_the_header() -> None:
    assert declared_length(encode(grey_ramp(15), fps=5), limits=LIMITS) == pytest.approx(3.0, abs=0.25)
    with pytest.raises(VideoTooLong):
        declared_length(encode(grey_ramp(30), fps=10), limits=VideoLimits(max_duration_s=2))
