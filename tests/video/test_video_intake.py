"""Video intake: every clip a phone sends becomes upright sampled frames, every bad one a clear refusal."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from models.errors import (
    AudioOnly,
    ContentTypeMismatch,
    DamagedVideo,
    NotAVideo,
    NoVideoFrames,
    PhotomarkerError,
    VideoFrameTooManyPixels,
    VideoTooLarge,
    VideoTooLong,
)
from models.video import decode_video
from models.video_container import VideoLimits, looks_like_video
from models.video_copy import picture_only_copy
from tests.video.clips import encode, no_frames, skin_frames, sound_only

FOREARM = Path(__file__).resolve().parent.parent.parent / "examples" / "forearm-eczema.jpg"
LIMITS = VideoLimits()


def marked_frames(count: int, width: int = 96, height: int = 64) -> list[np.ndarray]:
    """Grey frames with a red top-left quarter: where the red lands shows the rotation."""
    frames = []
    for _ in range(count):
        array = np.full((height, width, 3), 128, np.uint8)
        array[: height // 2, : width // 2] = (220, 30, 30)
        frames.append(array)
    return frames


@pytest.mark.parametrize(
    ("container", "content_type"),
    [("mp4", "video/mp4"), ("mov", "video/quicktime"), ("webm", "video/webm")],
)
def test_each_container_decodes_at_the_set_rate(container: str, content_type: str) -> None:
    clip = encode(marked_frames(20), container=container, fps=10)  # 2 s
    video = decode_video(clip, limits=VideoLimits(sample_fps=3), declared_content_type=content_type)
    assert video.content_type == content_type
    assert video.frames_in_stream == 20
    assert len(video.frames) == 6  # 3 a second for 2 s
    assert [round(f.time_s, 1) for f in video.frames][:3] == [0.0, 0.4, 0.7]
    frame = video.frames[0].photo
    assert frame.pixels.size == (96, 64) and frame.format == "VIDEO" and not frame.pixels.info


def test_undeclared_bytes_name_their_own_type() -> None:
    assert decode_video(encode(marked_frames(4), container="mov"), limits=LIMITS).content_type == (
        "video/quicktime"
    )
    assert (
        decode_video(encode(marked_frames(4), container="webm"), limits=LIMITS).content_type == "video/webm"
    )


def test_the_cap_spreads_samples_over_a_long_clip() -> None:
    clip = encode(marked_frames(60), fps=10)  # 6 s at 3/s would be 18
    video = decode_video(clip, limits=VideoLimits(sample_fps=3, max_samples=6))
    assert len(video.frames) == 6
    assert video.frames[-1].time_s >= 4.5


@pytest.mark.parametrize(("rotation", "red_at"), [(90, (0, 95)), (-90, (63, 0)), (180, (95, 63))])
def test_rotation_metadata_is_honoured(rotation: int, red_at: tuple[int, int]) -> None:
    # A phone held upright films sideways and writes the turn into the display matrix.
    clip = encode(marked_frames(3), rotation=rotation)
    video = decode_video(clip, limits=LIMITS)
    assert video.size == ((64, 96) if rotation % 180 else (96, 64))
    pixels = video.frames[0].photo.pixels
    assert pixels.size == video.size
    red, green, _ = pixels.getpixel(red_at)  # type: ignore[misc]
    assert red > 180 and green < 80


def test_frames_are_scaled_to_working_size_by_the_decoder() -> None:
    clip = encode(skin_frames(2, size=320))
    video = decode_video(clip, limits=LIMITS, working_min_side=160)
    assert video.frames[0].photo.pixels.size == (160, 160)
    assert video.frames[0].photo.original_size == (320, 320)


def test_stored_copy_keeps_the_picture_and_drops_place_and_sound_metadata() -> None:
    clip = encode(marked_frames(5), rotation=90, metadata={"location": "+35.6895+139.6917/", "title": "Jane"})
    copy = picture_only_copy(clip, "video/mp4", 90)
    text = copy.replace(b"\0", b"")
    assert b"+35.6895" not in text and b"Jane" not in text
    again = decode_video(copy, limits=LIMITS)
    assert again.rotation == 90 and again.frames_in_stream == 5


# --- refusals ----------------------------------------------------------------------------------


def cut(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


CLIP = encode(marked_frames(30), fps=10)


@pytest.mark.parametrize(
    ("data", "declared", "error"),
    [
        (b"this is a text file, not a video at all", "video/mp4", NotAVideo),
        (FOREARM.read_bytes(), "video/mp4", ContentTypeMismatch),
        (CLIP, "video/webm", ContentTypeMismatch),
        (cut(CLIP, 0.5), "video/mp4", DamagedVideo),
        (cut(CLIP, 0.95), None, DamagedVideo),
        (cut(encode(marked_frames(30), container="webm"), 0.5), None, DamagedVideo),
        (no_frames(), "video/mp4", NoVideoFrames),
        (sound_only(), None, AudioOnly),
    ],
    ids=[
        "not-a-video",
        "photo-declared-video",
        "mp4-declared-webm",
        "mp4-cut",
        "mp4-end-cut",
        "webm-cut",
        "no-frames",
        "audio-only",
    ],
)
def test_bad_video_gets_its_own_refusal(
    data: bytes, declared: str | None, error: type[PhotomarkerError]
) -> None:
    with pytest.raises(error) as refused:
        decode_video(data, limits=LIMITS, declared_content_type=declared)
    assert refused.value.message and "\\x" not in refused.value.message


def test_limits_are_checked_before_decoding() -> None:
    with pytest.raises(VideoTooLarge):
        decode_video(CLIP, limits=VideoLimits(max_bytes=len(CLIP) - 1))
    with pytest.raises(VideoTooLong, match=r"lasts 3\.0 s"):
        decode_video(CLIP, limits=VideoLimits(max_duration_s=2))
    with pytest.raises(VideoTooLong, match="30 frames"):
        decode_video(CLIP, limits=VideoLimits(max_frames=29))
    with pytest.raises(VideoFrameTooManyPixels, match="96×64"):
        decode_video(CLIP, limits=VideoLimits(max_frame_pixels=96 * 64 - 1))


def test_looks_like_video_knows_a_clip_from_a_photo() -> None:
    assert looks_like_video(CLIP)
    assert not looks_like_video(FOREARM.read_bytes())
    assert not looks_like_video(io.BytesIO(b"%PDF-1.4 nothing").getvalue())
