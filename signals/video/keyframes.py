"""Keyframes of a video: one per shot (and per `keyframe_every_s` of a longer shot), the sharpest of
its middle frames, found in one pass over the sampled frames.

The shot a sample belongs to is known as it comes (signals.video.shots), but its middle only when
it ends, so each open span keeps a few evenly spaced candidate frames (at most MAX_CANDIDATES:
when full, every other one is dropped and only every other later sample is taken), and when the
span closes its keyframe is the candidate of highest Laplacian variance among those in its middle
half. A worker holds those candidates and one decoded frame, whatever the video's length.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from signals.video.decode import SampledFrame, VideoLimits
from signals.video.decoder_process import DECODER
from signals.video.shots import ShotDetection, ShotDetector, hsv_histogram

MAX_CANDIDATES = 8
MIDDLE = (0.25, 0.75)  # the middle of a span, as fractions of its length


@dataclass(frozen=True)
class VideoSampling:
    """How a video is read: `sample_fps` frames a second are looked at, downscaled to a short side
    of at most `short_side` and a long side of at most MAX_SAMPLE_ASPECT times it (keyframes keep
    that size), and a shot longer than `keyframe_every_s` gets a keyframe for each such part of it."""

    sample_fps: float = 5.0
    short_side: int = 288
    keyframe_every_s: float = 10.0
    shots: ShotDetection = field(default_factory=ShotDetection)


@dataclass(frozen=True)
class VideoReading:
    """How a worker reads a video: its limits and its sampling (the configuration's `video:`)."""

    limits: VideoLimits = field(default_factory=VideoLimits)
    sampling: VideoSampling = field(default_factory=VideoSampling)


@dataclass(frozen=True)
class Keyframe:
    """A keyframe and the span of the video it stands for (its shot, or a part of a long shot)."""

    index: int
    shot_index: int
    start_s: float
    end_s: float
    time_s: float
    sharpness: float
    pixels: np.ndarray  # height x width x 3, uint8

    @property
    def image(self) -> Image.Image:
        """The keyframe as an RGB PIL image."""
        return Image.fromarray(self.pixels, mode="RGB")


def sharpness(pixels: np.ndarray) -> float:
    """Variance of the Laplacian of the frame's luminance: higher is sharper."""
    grey = pixels.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    laplacian = 4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    return float(laplacian.var()) if laplacian.size else 0.0


class _Span:
    """The open span: its start and evenly spaced candidate frames."""

    def __init__(self, shot_index: int, start_s: float) -> None:
        self.shot_index, self.start_s = shot_index, start_s
        self.candidates: list[tuple[float, np.ndarray]] = []  # (time, pixels)
        self.seen, self.stride = 0, 1

    def offer(self, frame: SampledFrame) -> None:
        if self.seen % self.stride == 0:
            self.candidates.append((frame.time_s, frame.pixels))
            if len(self.candidates) > MAX_CANDIDATES:
                self.candidates = self.candidates[::2]
                self.stride *= 2
        self.seen += 1

    def keyframe(self, index: int, end_s: float) -> Keyframe:
        """The sharpest candidate of the span's middle (sharpness is computed for those only)."""
        low, high = (self.start_s + f * (end_s - self.start_s) for f in MIDDLE)
        middle = [c for c in self.candidates if low <= c[0] <= high]
        if not middle:
            centre = (low + high) / 2
            middle = [min(self.candidates, key=lambda c: abs(c[0] - centre))]
        score, time_s, pixels = max(((sharpness(pixels), time_s, pixels) for time_s, pixels in middle), key=lambda c: c[0])
        return Keyframe(index, self.shot_index, self.start_s, end_s, time_s, score, pixels)


def video_keyframes(data: bytes | None, limits: VideoLimits = VideoLimits(), sampling: VideoSampling = VideoSampling()) -> Iterator[Keyframe]:
    """The video's keyframes in time order, each as soon as its span closes, from frames decoded in
    this worker's decoding child; InputError (raised while iterating) for a video outside `limits`
    or undecodable. The last span ends one sampling
    step after the last sample."""
    detector = ShotDetector(sampling.shots)
    span: _Span | None = None
    shot_index, index, last_time = -1, 0, 0.0
    for frame in DECODER.frames(data, limits, sampling.sample_fps, sampling.short_side):
        cut = detector.is_cut(frame.time_s, hsv_histogram(frame.pixels))
        if span is not None and (cut or frame.time_s - span.start_s >= sampling.keyframe_every_s):
            yield span.keyframe(index, frame.time_s)
            index += 1
            span = None
        if span is None:
            shot_index += 1 if cut or shot_index < 0 else 0
            span = _Span(shot_index, frame.time_s)
        span.offer(frame)
        last_time = frame.time_s
    if span is not None:
        yield span.keyframe(index, last_time + 1.0 / sampling.sample_fps)
