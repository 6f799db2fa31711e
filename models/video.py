"""Video intake: a phone clip's bytes → a few upright frames a second, or a named refusal.

``models.video_container`` opens the clip and checks its declarations; here frames are sampled at
a set rate, capped in number, turned upright by the stream's display matrix and scaled down to
working size by FFmpeg (swscale) before they become the same ``DecodedPhoto`` a photo becomes, so
the quality gate and the pipelines see nothing new. The running checks (frame count, duration)
are repeated while decoding because a declaration can lie.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Final

import av.error
from av.container import InputContainer
from av.video.frame import VideoFrame
from av.video.stream import VideoStream
from PIL import Image

from models.errors import DamagedVideo, NoVideoFrames, VideoTooLong
from models.intake import DecodedPhoto
from models.video_container import (
    VideoLimits,
    check_bytes,
    checked_container,
    open_container,
)

# A stream that ends this far (fraction of its declared duration) before its end was cut short.
_COMPLETE_FRACTION: Final = 0.9
# The poster frame: this far into the clip, but no later than that many seconds.
_POSTER_FRACTION: Final = 0.25
_POSTER_AT_MOST_S: Final = 1.0
# Display-matrix rotation (counter-clockwise degrees, as FFmpeg reports it) → the upright turn.
_ROTATION: Final[dict[int, Image.Transpose]] = {
    90: Image.Transpose.ROTATE_90,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_270,
}


@dataclass(frozen=True, eq=False)
class SampledFrame:
    """One frame taken from a video: where it was, and its pixels as a photo."""

    index: int  # position among all decoded frames of the stream
    time_s: float
    photo: DecodedPhoto


@dataclass(frozen=True, eq=False)
class DecodedVideo:
    """The sampled frames of a video and what the container said about it."""

    frames: tuple[SampledFrame, ...]
    content_type: str
    duration_s: float
    frames_in_stream: int  # frames decoded from the stream, sampled or not
    size: tuple[int, int]  # (width, height) as displayed, after rotation
    rotation: int  # counter-clockwise degrees applied to make frames upright: 0, 90, 180, 270
    sha256: str


def decode_video(
    data: bytes,
    *,
    limits: VideoLimits,
    declared_content_type: str | None = None,
    working_min_side: int | None = None,
) -> DecodedVideo:
    """Open, check and sample ``data``; raise the video intake error that says why not.

    ``working_min_side`` lets FFmpeg scale frames down while decoding so their short side stays
    at least that many pixels (the analyses never need more).
    """
    check_bytes(data, limits, declared_content_type)
    with open_container(data) as container:
        content_type, stream, (width, height), duration = checked_container(
            container, declared_content_type, limits
        )
        step = _sample_step(duration, limits)
        frames, decoded, last_time, rotation = _sample(container, stream, step, limits, working_min_side)
    if decoded == 0:
        raise NoVideoFrames("The video has a picture stream, but not one of its frames could be decoded.")
    if duration is not None and last_time < duration * _COMPLETE_FRACTION - 2 * step:
        raise DamagedVideo(
            f"The video is cut short: its frames end at {last_time:.1f} s of the {duration:.1f} s it "
            "declares; send the whole video again."
        )
    shown = (height, width) if rotation in (90, 270) else (width, height)
    sha256 = hashlib.sha256(data).hexdigest()
    photos = tuple(
        SampledFrame(index, time_s, _as_photo(image, content_type, shown, sha256))
        for index, time_s, image in frames
    )
    return DecodedVideo(
        frames=photos,
        content_type=content_type,
        duration_s=duration if duration is not None else last_time,
        frames_in_stream=decoded,
        size=shown,
        rotation=rotation,
        sha256=sha256,
    )


@dataclass(frozen=True, eq=False)
class Poster:
    """The frame that stands for a video on screen, and how long the video is."""

    image: Image.Image  # upright RGB, without any of the container's metadata
    duration_s: float | None


def poster_frame(
    data: bytes,
    *,
    limits: VideoLimits,
    declared_content_type: str | None = None,
    min_side: int | None = None,
) -> Poster:
    """The frame a quarter of the way in (at most 1 s): phones start a clip still moving, so the
    very first frame is often blurred or dark. The same checks as :func:`decode_video` refuse a
    bad video first; only the frames up to the poster are decoded."""
    check_bytes(data, limits, declared_content_type)
    with open_container(data) as container:
        _, stream, _, duration = checked_container(container, declared_content_type, limits)
        wanted = min(_POSTER_AT_MOST_S, duration * _POSTER_FRACTION) if duration else 0.0
        chosen: VideoFrame | None = None
        start: float | None = None
        for count, frame in enumerate(_frames(container, stream), start=1):
            chosen = frame
            time_s = _frame_time(frame, stream, count)
            start = time_s if start is None else start
            if time_s - start + 1e-6 >= wanted or count >= limits.max_frames:
                break
        if chosen is None:
            raise NoVideoFrames("The video has a picture stream, but not one of its frames could be decoded.")
        image = _upright(chosen, _rotation(chosen), min_side).convert("RGB")
    image.info.clear()
    return Poster(image, duration)


def _sample_step(duration: float | None, limits: VideoLimits) -> float:
    """Seconds between sampled frames: the set rate, stretched so a long clip stays under the cap."""
    step = 1.0 / limits.sample_fps
    if duration is not None and duration / step > limits.max_samples:
        step = duration / limits.max_samples
    return step


# --- decoding ----------------------------------------------------------------------------------


def _sample(
    container: InputContainer,
    stream: VideoStream,
    step: float,
    limits: VideoLimits,
    working_min_side: int | None,
) -> tuple[list[tuple[int, float, Image.Image]], int, float, int]:
    """(sampled frames as (index, time, upright image), frames decoded, last frame time, rotation)."""
    stream.thread_type = "AUTO"  # FFmpeg's frame and slice threads: decoding is most of the cost
    sampled: list[tuple[int, float, Image.Image]] = []
    decoded = 0
    last_time = 0.0
    rotation = 0
    next_time = 0.0
    start: float | None = None
    for frame in _frames(container, stream):
        decoded += 1
        if decoded > limits.max_frames:
            raise VideoTooLong(f"The video holds more than {limits.max_frames:,} frames.")
        time_s = _frame_time(frame, stream, decoded)
        start = time_s if start is None else start
        last_time = time_s - start
        if last_time > limits.max_duration_s:
            raise VideoTooLong(f"The video lasts longer than {limits.max_duration_s:g} s.")
        if len(sampled) >= limits.max_samples or last_time + 1e-6 < next_time:
            continue
        rotation = _rotation(frame)
        sampled.append((decoded - 1, round(last_time, 3), _upright(frame, rotation, working_min_side)))
        next_time += step
    return sampled, decoded, last_time, rotation


def _frames(container: InputContainer, stream: VideoStream) -> Iterator[VideoFrame]:
    """Decoded frames; a decoder error before the first frame means none decodes, after it that
    the data was cut or damaged part-way."""
    got_any = False
    try:
        for frame in container.decode(stream):
            got_any = True
            yield frame
    except av.error.FFmpegError:
        if not got_any:
            raise NoVideoFrames(
                "The video has a picture stream, but not one of its frames could be decoded."
            ) from None
        raise DamagedVideo(
            "The video is truncated or corrupt: decoding failed part-way; send the whole video again."
        ) from None


def _frame_time(frame: VideoFrame, stream: VideoStream, count: int) -> float:
    if frame.time is not None:
        return float(frame.time)
    rate = stream.average_rate or stream.guessed_rate or Fraction(30)
    return (count - 1) / float(rate)


def _rotation(frame: VideoFrame) -> int:
    """The display matrix's rotation as a multiple of 90°; phones write only those."""
    return round(frame.rotation / 90.0) * 90 % 360


def _upright(frame: VideoFrame, rotation: int, working_min_side: int | None) -> Image.Image:
    width, height = frame.width, frame.height
    scale = 1.0
    if working_min_side is not None and min(width, height) > working_min_side:
        scale = working_min_side / min(width, height)
    rgb = frame.reformat(
        width=max(1, math.ceil(width * scale)),
        height=max(1, math.ceil(height * scale)),
        format="rgb24",
        interpolation="AREA",
    )
    image = Image.fromarray(rgb.to_ndarray())
    turn = _ROTATION.get(rotation)
    return image.transpose(turn) if turn is not None else image


def _as_photo(image: Image.Image, content_type: str, size: tuple[int, int], sha256: str) -> DecodedPhoto:
    rgb = image.convert("RGB")
    rgb.info.clear()  # nothing of the container's metadata travels with the pixels
    return DecodedPhoto(
        pixels=rgb,
        alpha=None,
        format="VIDEO",
        content_type=content_type,
        original_size=size,
        sha256=sha256,
    )
