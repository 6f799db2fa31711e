"""Intake refusals: photo or video bytes that cannot become pixels (or sampled frames) we are
willing to analyse, and photo series that cannot be analysed as one lesion.

Every one is an ``IntakeError``, so a caller can refuse any undecodable upload in one ``except``.
"""

from __future__ import annotations

from models.errors.base import PhotomarkerError

# --- photo intake (bytes → pixels) -----------------------------------------------------------


class IntakeError(PhotomarkerError):
    """The photo's bytes cannot become pixels we are willing to analyse."""


class EmptyPhoto(IntakeError):
    """The photo has no bytes at all."""

    code = "empty-photo"
    issue_type = "required"


class PhotoTooLarge(IntakeError):
    """The photo is larger than the configured byte limit."""

    code = "photo-too-large"
    http_status = 413
    issue_type = "too-long"


class PhotoTooManyPixels(IntakeError):
    """Declared dimensions past the limit — refused before any pixel is decoded (bombs)."""

    code = "photo-too-many-pixels"
    http_status = 413
    issue_type = "too-long"


class UnsupportedMediaType(IntakeError):
    """The content is not JPEG, PNG, HEIC/HEIF or WebP."""

    code = "unsupported-media-type"
    http_status = 415
    issue_type = "not-supported"


class UndecodablePhoto(IntakeError):
    """The bytes do not decode as an image."""

    code = "undecodable-photo"
    http_status = 422
    issue_type = "invalid"


class TruncatedPhoto(IntakeError):
    """The image data ends early: the photo was cut off in transit or storage."""

    code = "truncated-photo"
    http_status = 422
    issue_type = "invalid"


# --- video intake (bytes → sampled frames) ---------------------------------------------------


class NotAVideo(IntakeError):
    """Declared a video, but the bytes are no video container PyAV can open."""

    code = "not-a-video"
    http_status = 422
    issue_type = "invalid"


class DamagedVideo(IntakeError):
    """The video container or its frames are truncated or corrupt."""

    code = "damaged-video"
    http_status = 422
    issue_type = "invalid"


class NoVideoFrames(IntakeError):
    """The video has a picture stream, and not one frame of it decodes."""

    code = "no-video-frames"
    http_status = 422
    issue_type = "invalid"


class AudioOnly(IntakeError):
    """A container with sound and no picture (a voice memo, an .m4a)."""

    code = "audio-only"
    http_status = 422
    issue_type = "not-supported"


class VideoTooLarge(IntakeError):
    """The video is larger than the configured byte limit."""

    code = "video-too-large"
    http_status = 413
    issue_type = "too-long"


class VideoTooLong(IntakeError):
    """The video lasts longer, or holds more frames, than the configured limits."""

    code = "video-too-long"
    http_status = 413
    issue_type = "too-long"


class VideoFrameTooManyPixels(IntakeError):
    """The video's frames are larger than the configured pixel limit (refused before decoding)."""

    code = "video-frame-too-many-pixels"
    http_status = 413
    issue_type = "too-long"


class ContentTypeMismatch(IntakeError):
    """The declared content type says photo and the bytes are a video, or the other way round."""

    code = "content-type-mismatch"
    http_status = 415
    issue_type = "invalid"


class InvalidSeries(IntakeError):
    """A photo series that cannot be analysed as one lesion (too few or too many photos, or
    photos of more than one patient)."""

    code = "invalid-series"
    http_status = 422
    issue_type = "invalid"
