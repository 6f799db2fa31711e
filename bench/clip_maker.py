"""Generated clips for the video benchmarks: a scene filmed hand-held, encoded by PyAV's FFmpeg.

Shared by ``bench/video.py`` (speed) and ``bench/steadiness.py`` (how steady verdicts are). Each
frame is a view of one still picture with the small changes a hand-held phone makes — a shift, a
turn, a zoom, a change of light, a little motion blur — so any change of verdict between frames
comes from the analysis, not from the lesion.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import av
import numpy as np
from PIL import Image, ImageEnhance, ImageFilter


@dataclass(frozen=True)
class HandHeld:
    """How much a frame may differ from the still picture (each drawn uniformly per frame)."""

    shift: float = 0.04  # fraction of the side
    turn_deg: float = 15.0
    zoom: float = 0.1  # ±
    light: float = 0.15  # ± brightness
    blur_px: float = 1.2  # up to this Gaussian radius


def views(
    still: Image.Image, count: int, rng: np.random.Generator, moves: HandHeld, size: tuple[int, int]
) -> list[np.ndarray]:
    """``count`` frames of ``size`` (width, height), each a slightly different view of ``still``.

    One affine resample per frame (turn, zoom and shift together); what comes into view beyond
    the still's edge is black, as in a cut-out.
    """
    frames = []
    width, height = still.size
    out_w, out_h = size
    fit = min(width / out_w, height / out_h)  # still pixels per output pixel at zoom 1
    for _ in range(count):
        zoom = 1.0 + rng.uniform(-moves.zoom, moves.zoom)
        turn = np.deg2rad(rng.uniform(-moves.turn_deg, moves.turn_deg))
        step = fit / zoom
        cx = width / 2 + rng.uniform(-moves.shift, moves.shift) * width
        cy = height / 2 + rng.uniform(-moves.shift, moves.shift) * height
        a, b = np.cos(turn) * step, -np.sin(turn) * step
        d, e = np.sin(turn) * step, np.cos(turn) * step
        affine = (a, b, cx - a * out_w / 2 - b * out_h / 2, d, e, cy - d * out_w / 2 - e * out_h / 2)
        view = still.transform(size, Image.Transform.AFFINE, affine, resample=Image.Resampling.BILINEAR)
        view = ImageEnhance.Brightness(view).enhance(1.0 + rng.uniform(-moves.light, moves.light))
        radius = rng.uniform(0, moves.blur_px)
        if radius > 0.2:
            view = view.filter(ImageFilter.GaussianBlur(radius))
        frames.append(np.asarray(view.convert("RGB")))
    return frames


def encode_mp4(frames: Sequence[np.ndarray], fps: int) -> bytes:
    """H.264 in MP4, as a phone records (yuv420p; FFmpeg's default quality)."""
    out = io.BytesIO()
    height, width = frames[0].shape[:2]
    with av.open(out, mode="w", format="mp4") as container:
        # veryfast: making the benchmark's clip should not take longer than analysing it.
        stream = container.add_stream("libx264", rate=fps, options={"preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width - width % 2, height - height % 2, "yuv420p"
        for array in frames:
            frame = av.VideoFrame.from_ndarray(array[: stream.height, : stream.width], format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()
