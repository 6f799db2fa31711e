"""Opening a video container and checking what it declares, before a frame is decoded.

PyAV (FFmpeg's own demuxers, carried in its wheels) opens MP4, QuickTime (iPhone HEVC ``.mov``
included) and WebM; nothing here parses a container by hand. The checks run cheapest first —
bytes, then what the container declares (pixels per frame, duration, frame count) — so the jobs
API refuses a bad video before queueing it, and ``models.video`` repeats the running checks while
decoding, because a declaration can lie. Messages never echo bytes or container metadata (which
may hold a place or a name).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final, Protocol

import av
import av.error
from av.container import InputContainer
from av.video.stream import VideoStream

from models.errors import (
    AudioOnly,
    ContentTypeMismatch,
    DamagedVideo,
    EmptyPhoto,
    NotAVideo,
    PhotomarkerError,
    VideoFrameTooManyPixels,
    VideoTooLarge,
    VideoTooLong,
)
from models.photo_formats import sniff

VIDEO_CONTENT_TYPES: Final = frozenset({"video/mp4", "video/quicktime", "video/webm"})
ACCEPTED_VIDEO = "MP4, QuickTime (.mov) or WebM video"
# PyAV's demuxer name → the declared types its files may carry. MP4 and QuickTime share one
# demuxer; senders mix the two labels up, and both decode alike, so neither refuses the other.
_CONTAINERS: Final[dict[str, frozenset[str]]] = {
    "mov,mp4,m4a,3gp,3g2,mj2": frozenset({"video/mp4", "video/quicktime"}),
    "matroska,webm": frozenset({"video/webm"}),
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


def is_video_type(content_type: str | None) -> bool:
    return content_type is not None and bare_type(content_type) in VIDEO_CONTENT_TYPES


def looks_like_video(data: bytes) -> bool:
    """Do these bytes open as an accepted video container with a stream (picture or sound)?

    For bytes that arrived without a declared type and are no photo: a video is then analysed as
    one, and an audio-only file gets its own refusal rather than "not a photo".
    """
    try:
        with open_container(data) as container:
            return container.format.name in _CONTAINERS and bool(container.streams)
    except PhotomarkerError:
        return False


def check_video_header(data: bytes, *, limits: VideoLimits, declared_content_type: str | None = None) -> str:
    """Every check :func:`decode_video` makes before decoding a frame (the jobs API refuses a bad
    video before queueing it); returns the content type the bytes are."""
    check_bytes(data, limits, declared_content_type)
    with open_container(data) as container:
        content_type, _, _, _ = checked_container(container, declared_content_type, limits)
    return content_type


def declared_length(
    data: bytes, *, limits: VideoLimits, declared_content_type: str | None = None
) -> float | None:
    """Seconds the video declares (None when it declares none), after the same header checks."""
    check_bytes(data, limits, declared_content_type)
    with open_container(data) as container:
        _, _, _, duration = checked_container(container, declared_content_type, limits)
    return duration


# --- the checks, cheapest first ----------------------------------------------------------------


def check_bytes(data: bytes, limits: VideoLimits, declared_content_type: str | None) -> None:
    if not data:
        raise EmptyPhoto("The video is empty (0 bytes).")
    if len(data) > limits.max_bytes:
        raise VideoTooLarge(f"The video is {len(data):,} bytes; the limit is {limits.max_bytes:,} bytes.")
    _refuse_photo_bytes(data, bare_type(declared_content_type) if declared_content_type else None)


def checked_container(
    container: InputContainer, declared_content_type: str | None, limits: VideoLimits
) -> tuple[str, VideoStream, tuple[int, int], float | None]:
    """(content type, picture stream, frame size, declared duration) once the declarations pass."""
    content_type = _content_type(
        container, bare_type(declared_content_type) if declared_content_type else None
    )
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
def open_container(data: bytes) -> Iterator[InputContainer]:
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


def bare_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()
