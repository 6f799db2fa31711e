"""Video intake: a phone clip's bytes → a few upright frames a second, or a named refusal.

PyAV (FFmpeg's own demuxers and decoders, carried in its wheels) opens MP4, QuickTime (iPhone
HEVC ``.mov`` included) and WebM; nothing here parses a container by hand. Limits run cheapest
first — bytes, then what the container declares (pixels per frame, duration, frame count) — and
again while decoding, because a declaration can lie. Frames are sampled at a set rate, capped in
number, turned upright by the stream's display matrix and scaled down to working size by FFmpeg
(swscale) before they become the same ``DecodedPhoto`` a photo becomes, so the quality gate and
the pipelines see nothing new. Messages never echo bytes or container metadata (which may hold a
place or a name).
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from typing import Final, Protocol

import av
import av.error
from av.container import InputContainer
from av.video.frame import VideoFrame
from av.video.stream import VideoStream
from PIL import Image

from models.errors import (
    AudioOnly,
    ContentTypeMismatch,
    DamagedVideo,
    EmptyPhoto,
    NotAVideo,
    NoVideoFrames,
    PhotomarkerError,
    VideoFrameTooManyPixels,
    VideoTooLarge,
    VideoTooLong,
)
from models.intake import DecodedPhoto
from models.photo_formats import sniff

VIDEO_CONTENT_TYPES: Final = frozenset({"video/mp4", "video/quicktime", "video/webm"})
ACCEPTED_VIDEO = "MP4, QuickTime (.mov) or WebM video"
# PyAV's demuxer name → the declared types its files may carry. MP4 and QuickTime share one
# demuxer; senders mix the two labels up, and both decode alike, so neither refuses the other.
_CONTAINERS: Final[dict[str, frozenset[str]]] = {
    "mov,mp4,m4a,3gp,3g2,mj2": frozenset({"video/mp4", "video/quicktime"}),
    "matroska,webm": frozenset({"video/webm"}),
}
# A stream that ends this far (fraction of its declared duration) before its end was cut short.
_COMPLETE_FRACTION: Final = 0.9
# Display-matrix rotation (counter-clockwise degrees, as FFmpeg reports it) → the upright turn.
_ROTATION: Final[dict[int, Image.Transpose]] = {
    90: Image.Transpose.ROTATE_90,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_270,
}


class _VideoSettings(Protocol):
    """The settings fields video intake reads (satisfied by ``plugin.settings.Settings``)."""

    @property
    def video_max_bytes(self) -> int: ...

    @property
    def video_max_duration_s(self) -> float: ...

    @property
    def video_max_frames(self) -> int: ...

    @property
    def video_max_frame_pixels(self) -> int: ...

    @property
    def video_sample_fps(self) -> float: ...

    @property
    def video_max_sampled_frames(self) -> int: ...


@dataclass(frozen=True)
class VideoLimits:
    """How large and long a video may be, and how densely its frames are sampled."""

    max_bytes: int = 100 * 1024 * 1024
    max_duration_s: float = 60.0
    max_frames: int = 3600
    max_frame_pixels: int = 4096 * 2160
    sample_fps: float = 3.0
    max_samples: int = 24

    def __post_init__(self) -> None:
        if min(self.max_bytes, self.max_duration_s, self.max_frames, self.max_frame_pixels) <= 0:
            raise ValueError("video limits must be positive")
        if self.sample_fps <= 0 or self.max_samples <= 0:
            raise ValueError("video sampling must be positive")

    @classmethod
    def from_settings(cls, settings: _VideoSettings) -> VideoLimits:
        return cls(
            max_bytes=settings.video_max_bytes,
            max_duration_s=settings.video_max_duration_s,
            max_frames=settings.video_max_frames,
            max_frame_pixels=settings.video_max_frame_pixels,
            sample_fps=settings.video_sample_fps,
            max_samples=settings.video_max_sampled_frames,
        )


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


def is_video_type(content_type: str | None) -> bool:
    return content_type is not None and _bare(content_type) in VIDEO_CONTENT_TYPES


def looks_like_video(data: bytes) -> bool:
    """Do these bytes open as an accepted video container with a stream (picture or sound)?

    For bytes that arrived without a declared type and are no photo: a video is then analysed as
    one, and an audio-only file gets its own refusal rather than "not a photo".
    """
    try:
        with _open(data) as container:
            return container.format.name in _CONTAINERS and bool(container.streams)
    except PhotomarkerError:
        return False


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
    _check_bytes(data, limits, declared_content_type)
    with _open(data) as container:
        content_type, stream, (width, height), duration = _checked(container, declared_content_type, limits)
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


def check_video_header(data: bytes, *, limits: VideoLimits, declared_content_type: str | None = None) -> str:
    """Every check :func:`decode_video` makes before decoding a frame (the jobs API refuses a bad
    video before queueing it); returns the content type the bytes are."""
    _check_bytes(data, limits, declared_content_type)
    with _open(data) as container:
        content_type, _, _, _ = _checked(container, declared_content_type, limits)
    return content_type


# --- the checks, cheapest first ----------------------------------------------------------------


def _check_bytes(data: bytes, limits: VideoLimits, declared_content_type: str | None) -> None:
    if not data:
        raise EmptyPhoto("The video is empty (0 bytes).")
    if len(data) > limits.max_bytes:
        raise VideoTooLarge(f"The video is {len(data):,} bytes; the limit is {limits.max_bytes:,} bytes.")
    _refuse_photo_bytes(data, _bare(declared_content_type) if declared_content_type else None)


def _checked(
    container: InputContainer, declared_content_type: str | None, limits: VideoLimits
) -> tuple[str, VideoStream, tuple[int, int], float | None]:
    """(content type, picture stream, frame size, declared duration) once the declarations pass."""
    content_type = _content_type(container, _bare(declared_content_type) if declared_content_type else None)
    stream = _picture_stream(container)
    size = _frame_size(stream, limits)
    duration = _declared_duration(container, stream)
    _check_length(duration, stream.frames, limits)
    return content_type, stream, size, duration


def _refuse_photo_bytes(data: bytes, declared: str | None) -> None:
    """A declared video whose bytes are a photo is a mislabelled upload, said as such."""
    try:
        fmt = sniff(data)
    except PhotomarkerError:
        return
    said = f"declared {declared}" if declared else "sent as a video"
    raise ContentTypeMismatch(f"The file is {said}, but its bytes are a {fmt} photo.")


@contextmanager
def _open(data: bytes) -> Iterator[InputContainer]:
    """``av.open`` on bytes, with every FFmpeg refusal to open turned into ours."""
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except av.error.FFmpegError:
        if _has_container_signature(data):
            raise DamagedVideo(
                "The video file is truncated or corrupt: its container cannot be read."
            ) from None
        raise NotAVideo(f"The file is not a video PyAV can open; send {ACCEPTED_VIDEO}.") from None
    with container:
        yield container


def _has_container_signature(data: bytes) -> bool:
    """The first bytes of an ISO-BMFF (MP4/MOV) or EBML (WebM) file: what failed to open was a
    video container, not something else — so the refusal says damaged, not "not a video"."""
    return data[4:8] == b"ftyp" or data.startswith(b"\x1a\x45\xdf\xa3")


def _content_type(container: InputContainer, declared: str | None) -> str:
    name = container.format.name
    allowed = _CONTAINERS.get(name)
    if allowed is None:
        raise NotAVideo(f"The file is {container.format.long_name}, not {ACCEPTED_VIDEO}.")
    if declared is not None and declared not in allowed:
        raise ContentTypeMismatch(
            f"The file is declared {declared}, but its bytes are {container.format.long_name}."
        )
    if declared is not None:
        return declared
    if name.startswith("matroska"):
        return "video/webm"
    # QuickTime's own brand ("qt  "), as FFmpeg's demuxer read it: an iPhone .mov.
    return "video/quicktime" if container.metadata.get("major_brand", "").strip() == "qt" else "video/mp4"


def _picture_stream(container: InputContainer) -> VideoStream:
    if container.streams.video:
        return container.streams.video[0]
    if container.streams.audio:
        raise AudioOnly("The file holds sound only, no picture; send a video of the skin or the eyelid.")
    raise DamagedVideo("The video file is truncated or corrupt: it holds no picture stream.")


def _frame_size(stream: VideoStream, limits: VideoLimits) -> tuple[int, int]:
    width, height = int(stream.codec_context.width), int(stream.codec_context.height)
    if width <= 0 or height <= 0:
        raise DamagedVideo("The video's picture stream declares no frame size.")
    if width * height > limits.max_frame_pixels:
        raise VideoFrameTooManyPixels(
            f"The video's frames are {width}×{height} = {width * height:,} pixels; "
            f"the limit is {limits.max_frame_pixels:,}."
        )
    return width, height


def _declared_duration(container: InputContainer, stream: VideoStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    return None


def _check_length(duration: float | None, frames: int, limits: VideoLimits) -> None:
    if duration is not None and duration > limits.max_duration_s:
        raise VideoTooLong(
            f"The video lasts {duration:.1f} s; the limit is {limits.max_duration_s:g} s. "
            "A few seconds of the lesion are enough."
        )
    if frames > limits.max_frames:
        raise VideoTooLong(f"The video holds {frames:,} frames; the limit is {limits.max_frames:,}.")


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


def _bare(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()
