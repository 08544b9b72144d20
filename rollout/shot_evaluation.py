"""Shot boundaries against the sample videos' truth: precision and recall within a tolerance.

`make eval` runs the shot detector (signals/video/) on the seeded sample videos
(sample_corpus/videos.py), whose cuts are known to the frame, and reports how many found
boundaries fall within `TOLERANCE_S` of a true cut (each true cut matched at most once).
"""
from __future__ import annotations

from collections.abc import Sequence

from sample_corpus.videos import SampleVideo
from signals.video.keyframes import VideoReading, video_keyframes

TOLERANCE_S = 0.5


def matched_boundaries(found: Sequence[float], truth: Sequence[float], tolerance_s: float = TOLERANCE_S) -> int:
    """How many found boundaries match a true one within `tolerance_s`, one to one, nearest first."""
    pairs = sorted((abs(f - t), i, j) for i, f in enumerate(found) for j, t in enumerate(truth) if abs(f - t) <= tolerance_s)
    used_found: set[int] = set()
    used_truth: set[int] = set()
    for _, i, j in pairs:
        if i not in used_found and j not in used_truth:
            used_found.add(i)
            used_truth.add(j)
    return len(used_found)


def shot_boundaries(data: bytes, reading: VideoReading) -> list[float]:
    """The start times of every shot but the first, as the detector finds them."""
    starts: dict[int, float] = {}
    for keyframe in video_keyframes(data, reading.limits, reading.sampling):  # a long shot's parts: its first part's start
        starts.setdefault(keyframe.shot_index, keyframe.start_s)
    return sorted(start for shot, start in starts.items() if shot > 0)


def evaluate_shots(videos: Sequence[SampleVideo], reading: VideoReading, tolerance_s: float = TOLERANCE_S) -> dict:
    """Precision and recall of the detected shot boundaries over the good sample videos."""
    found_total = truth_total = matched = 0
    per_video = {}
    for video in videos:
        if video.bad:
            continue
        found = shot_boundaries(video.data, reading)
        hits = matched_boundaries(found, video.cuts, tolerance_s)
        found_total, truth_total, matched = found_total + len(found), truth_total + len(video.cuts), matched + hits
        per_video[video.content_id] = {"found": [round(t, 3) for t in found], "truth": [round(t, 3) for t in video.cuts], "matched": hits}
    return {
        "tolerance_s": tolerance_s, "videos": len(per_video), "boundaries": truth_total, "found": found_total,
        "precision": matched / found_total if found_total else 1.0, "recall": matched / truth_total if truth_total else 1.0,
        "per_video": per_video,
    }
