"""Shot-boundary precision and recall: the matching, and the evaluation on a generated video."""
from __future__ import annotations

import numpy as np

from rollout.shot_evaluation import evaluate_shots, matched_boundaries
from sample_corpus.photos import base_photo
from sample_corpus.videos import SampleVideo, encode_video, pan
from signals.video.keyframes import VideoReading, VideoSampling


def test_matching_is_one_to_one_within_the_tolerance() -> None:
    assert matched_boundaries([1.0, 1.1, 3.0], [1.05, 2.9]) == 2  # 1.0 and 1.1 compete for 1.05: one wins
    assert matched_boundaries([1.0], [1.6]) == 0
    assert matched_boundaries([], [1.0]) == 0


def test_evaluate_shots_counts_found_and_true_boundaries() -> None:
    rng = np.random.default_rng(2)
    frames = [*pan(base_photo("astronaut"), 1.5, rng, 12, (160, 120)), *pan(base_photo("coffee"), 1.5, rng, 12, (160, 120))]
    cut = SampleVideo("cut", "cuts", encode_video([np.asarray(f) for f in frames], 12), cuts=(1.5,), duration_s=3.0)
    wrong = SampleVideo("wrong-truth", "cuts", cut.data, cuts=(0.5, 1.5), duration_s=3.0)  # a cut that is not there
    report = evaluate_shots([cut, wrong, SampleVideo("bad", "empty", b"", bad=True)], VideoReading(sampling=VideoSampling(keyframe_every_s=60)))
    assert (report["videos"], report["boundaries"], report["found"]) == (2, 3, 2)
    assert report["precision"] == 1.0 and report["recall"] == 2 / 3
