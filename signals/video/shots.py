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
    """Normalised joint HSV histogram (HISTOGRAM_BINS) of every `step`-th pixel of an RGB frame.
    Each hue sector is computed on its own pixels only (it runs on every sample of a video)."""
    rgb = pixels[::step, ::step].reshape(-1, 3).astype(np.float32) / 255.0
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    value = np.maximum(np.maximum(r, g), b)
    chroma = value - np.minimum(np.minimum(r, g), b)
    saturation = np.divide(chroma, value, out=np.zeros_like(value), where=value > 0)
    hue = np.zeros_like(value)  # grey pixels (no chroma) have hue 0
    coloured = chroma > 0
    red = coloured & (value == r)
    green = coloured & ~red & (value == g)
    blue = coloured & ~red & ~green
    hue[red] = (g[red] - b[red]) / chroma[red] % 6
    hue[green] = (b[green] - r[green]) / chroma[green] + 2
    hue[blue] = (r[blue] - g[blue]) / chroma[blue] + 4
    hue /= 6.0
    (hue_bins, saturation_bins, value_bins) = HISTOGRAM_BINS
    index = [np.minimum((channel * bins).astype(np.int64), bins - 1)
             for channel, bins in ((hue, hue_bins), (saturation, saturation_bins), (value, value_bins))]
    flat = (index[0] * saturation_bins + index[1]) * value_bins + index[2]
    counts = np.bincount(flat, minlength=hue_bins * saturation_bins * value_bins).astype(np.float64)
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
