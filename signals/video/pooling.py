"""Video-level values from keyframe values: the pooled embedding and the maximum of a score."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pooled_embedding(vectors: Sequence[np.ndarray], durations: Sequence[float]) -> np.ndarray:
    """The duration-weighted mean of the keyframes' unit vectors, L2-normalised: a long shot
    counts for what it lasts, not for one keyframe among many short ones."""
    if not vectors:
        raise ValueError("a pooled embedding needs at least one keyframe vector")
    weights = np.asarray(durations, dtype=np.float64)
    if weights.shape != (len(vectors),) or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"durations {list(durations)} do not weight {len(vectors)} vectors")
    mean = (np.stack([np.asarray(v, dtype=np.float64) for v in vectors]) * weights[:, None]).sum(axis=0)
    norm = np.linalg.norm(mean)
    if norm == 0:
        raise ValueError("the keyframe vectors cancel out: no direction to pool to")
    return (mean / norm).astype(np.float32)


def max_with_time(scores: Sequence[float], times: Sequence[float]) -> tuple[float, float]:
    """The largest score and the time of its keyframe (the earliest on a tie): where in the video
    a label is strongest, e.g. the unsafe moment of a video."""
    if not scores or len(scores) != len(times):
        raise ValueError(f"{len(scores)} scores for {len(times)} times")
    best = int(np.argmax(np.asarray(scores, dtype=np.float64)))
    return float(scores[best]), float(times[best])
