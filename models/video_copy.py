"""A video fit to store beside its results: the picture stream alone, without container metadata.

Phones write where and on what a clip was filmed (``location``, ``com.apple.quicktime.*``, creation
times, device names) into the container, and the sound track may hold voices; neither belongs in
the EHR next to a lesion. The picture stream is copied packet by packet into a fresh container of
the same kind (no re-encoding, so not a pixel changes) with only its rotation carried over.
"""

from __future__ import annotations

import io
from typing import Final

import av
import av.error

from models.errors import DamagedVideo

# The muxer that writes each accepted type.
_MUXERS: Final[dict[str, str]] = {"video/mp4": "mp4", "video/quicktime": "mov", "video/webm": "webm"}


def picture_only_copy(data: bytes, content_type: str, rotation: int) -> bytes:
    """``data``'s first picture stream remuxed with no metadata; ``rotation`` (counter-clockwise
    degrees, as decoded) is written back as the display matrix so players still show it upright."""
    muxer = _MUXERS[content_type]
    out = io.BytesIO()
    try:
        with av.open(io.BytesIO(data), mode="r") as source, av.open(out, mode="w", format=muxer) as target:
            picture = source.streams.video[0]
            copy = target.add_stream_from_template(picture)
            copy.metadata.clear()
            if rotation:
                copy.set_display_rotation(rotation)
            for packet in source.demux(picture):
                if packet.dts is None:
                    continue  # the demuxer's end-of-stream marker
                packet.stream = copy
                target.mux(packet)
    except av.error.FFmpegError:
        raise DamagedVideo("The video could not be copied for storage; it may be damaged.") from None
    return out.getvalue()
