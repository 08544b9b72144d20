"""Shot boundaries from sampled frames: HSV histogram distance against an adaptive threshold.

A cut changes what is in the picture, so the colour distribution jumps between two samples; a pan,
a zoom, a text overlay or a blur changes it a little at each sample. The detector sees one sample
at a time (frames are never kept): a sample is a cut when its histogram's distance to the previous
sample's is over both a floor and a multiple of the median distance of the shot's recent samples,
so a shot that moves a lot needs a larger jump to be cut. PySceneDetect's content detector works
the same way on HSV means but brings OpenCV; this needs numpy alone.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

HISTOGRAM_BINS = (8, 4, 4)  # hue, saturation, value
HISTOGRAM_STEP = 4  # every 4th pixel of a sampled frame in each direction


@dataclass(frozen=True)
class ShotDetection:
    """How a cut is told from motion: `min_distance` (histogram total variation, 0..1) is the
    floor, `ratio` x the median of the shot's last `window` distances the adaptive part, and no
    shot is shorter than `min_shot_s` (a flash is not two cuts)."""

    min_distance: float = 0.3
    ratio: float = 3.0
    window: int = 8
    min_shot_s: float = 0.5


def hsv_histogram(pixels: np.ndarray, step: int = HISTOGRAM_STEP) -> np.ndarray:
    """Normalised joint HSV histogram (HISTOGRAM_BINS) of every `step`-th pixel of an RGB frame."""
    rgb = pixels[::step, ::step].reshape(-1, 3).astype(np.float32) / 255.0
    value = rgb.max(axis=1)
    chroma = value - rgb.min(axis=1)
    saturation = np.divide(chroma, value, out=np.zeros_like(value), where=value > 0)
    safe = np.where(chroma > 0, chroma, 1.0)
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    hue = np.select([value == r, value == g], [(g - b) / safe % 6, (b - r) / safe + 2], (r - g) / safe + 4) / 6.0
    hue = np.where(chroma > 0, hue, 0.0)
    bins = np.array(HISTOGRAM_BINS)
    index = np.minimum((np.stack([hue, saturation, value], axis=1) * bins).astype(np.int64), bins - 1)
    flat = (index[:, 0] * bins[1] + index[:, 1]) * bins[2] + index[:, 2]
    counts = np.bincount(flat, minlength=int(bins.prod())).astype(np.float64)
    return counts / counts.sum()


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Total variation between two normalised histograms: 0 equal, 1 disjoint."""
    return float(0.5 * np.abs(a - b).sum())


class ShotDetector:
    """Online cut detection: feed samples in time order, `is_cut` says whether each starts a shot."""

    def __init__(self, settings: ShotDetection = ShotDetection()) -> None:
        self.settings = settings
        self._previous: np.ndarray | None = None
        self._recent: deque[float] = deque(maxlen=settings.window)
        self._shot_start: float | None = None

    def is_cut(self, time_s: float, histogram: np.ndarray) -> bool:
        """Whether the sample at `time_s` with this histogram starts a new shot (the first sample
        starts the first shot but is no cut)."""
        previous, self._previous = self._previous, histogram
        if previous is None or self._shot_start is None:
            self._shot_start = time_s
            return False
        distance = histogram_distance(previous, histogram)
        threshold = max(self.settings.min_distance, self.settings.ratio * float(np.median(self._recent)) if self._recent else 0.0)
        if distance > threshold and time_s - self._shot_start >= self.settings.min_shot_s:
            self._shot_start = time_s
            self._recent.clear()
            return True
        self._recent.append(distance)
        return False
