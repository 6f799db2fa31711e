"""Test clips made with PyAV in the tests themselves: small, fast, and of every kind a phone sends.

Nothing binary is committed for videos: each clip is encoded here (H.264 MP4, HEVC QuickTime,
VP9 WebM, sound-only M4A) from generated skin scenes, with the damage a bad upload has (cut
short, no frames, wrong label) applied to the bytes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageFilter

from models.skin.synthetic import generate_scene

CODECS = {"mp4": "libx264", "mov": "libx265", "webm": "libvpx-vp9"}


def encode(
    frames: Sequence[np.ndarray],
    *,
    container: str = "mp4",
    fps: int = 10,
    rotation: int = 0,
    metadata: dict[str, str] | None = None,
    path: Path | None = None,
) -> bytes:
    """RGB frames → a clip; ``rotation`` is written as the display matrix (as a phone does)."""
    target: Path | io.BytesIO = path if path is not None else io.BytesIO()
    height, width = frames[0].shape[:2]
    with av.open(target, mode="w", format=container) as output:
        for key, value in (metadata or {}).items():
            output.metadata[key] = value
        stream = output.add_stream(CODECS[container], rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if container == "mov":
            stream.options = {"x265-params": "log-level=none"}
        if rotation:
            stream.set_display_rotation(rotation)
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return path.read_bytes() if path is not None else target.getvalue()  # type: ignore[union-attr]


def sound_only() -> bytes:
    """An M4A: an MP4 container holding AAC sound and no picture."""
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as output:
        stream = output.add_stream("aac", rate=16000)
        for index in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, index * 1024
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return out.getvalue()


def no_frames() -> bytes:
    """An MP4 whose picture stream's packets hold no decodable picture (zeros where H.264 was)."""
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as output:
        stream = output.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        packets = [p for i in range(5) for p in stream.encode(_flat(64, i * 40))] + list(stream.encode())
        for packet in packets:
            blank = av.Packet(b"\x00\x00\x00\x01" + bytes(60))
            blank.pts, blank.dts, blank.time_base = packet.pts, packet.dts, packet.time_base
            blank.is_keyframe, blank.stream = packet.is_keyframe, stream
            output.mux(blank)
    return out.getvalue()


def _flat(side: int, grey: int) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(np.full((side, side, 3), grey, np.uint8), format="rgb24")


def skin_frames(
    count: int, *, size: int = 320, seed: int = 1, blur_from: int | None = None, dark_from: int | None = None
) -> list[np.ndarray]:
    """One eczema scene, moved a few pixels each frame (a hand-held phone); frames from
    ``blur_from`` on are blurred, from ``dark_from`` on darkened, so the gate drops them."""
    scene = generate_scene(
        np.random.default_rng(seed), size=size + 16, condition="atopic-dermatitis", zoom=1.2, blur=0
    )
    base = Image.fromarray(scene.image)
    frames = []
    for index in range(count):
        dx, dy = (index * 3) % 16, (index * 2) % 16
        image = base.crop((dx, dy, dx + size, dy + size))
        if blur_from is not None and index >= blur_from:
            image = image.filter(ImageFilter.GaussianBlur(6))
        array = np.asarray(image)
        if dark_from is not None and index >= dark_from:
            array = (array * 0.08).astype(np.uint8)
        frames.append(array)
    return frames
