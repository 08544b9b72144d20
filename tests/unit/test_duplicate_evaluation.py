"""The duplicates evaluation counts video items against their truth: a re-encoding with its video,
a pin's video version with the pin, any other video alone; and the sample corpus holds such a pin video."""
from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
from PIL import Image

from rollout.evaluate import evaluate_duplicates, video_duplicate_truth
from sample_corpus.generate import generate_corpus
from sample_corpus.videos import pin_video
from signals.labels.perceptual_hash import hamming, perceptual_hash
from signals.video.keyframes import video_keyframes


def _truth(dup_group: str, relation: str = "none", source_id: str | None = None) -> dict:
    return {"dup_group": dup_group, "dup_relation": relation, "source_id": source_id}


def test_video_items_are_counted_against_the_video_truth() -> None:
    truth = {"pin-1": _truth("pin-1"), "pin-2": _truth("pin-1", "copy", "pin-1"),
             "pin-3": _truth("pin-3", "edit", "pin-1"), "pin-4": _truth("pin-4")}
    videos = video_duplicate_truth(pa.table({"content_id": ["v-a", "v-a-vp9", "v-of-pin-1", "v-b"],
                                             "dup_group": ["v-a", "v-a", "pin-1", "v-b"]}))
    assert videos["v-a-vp9"] == {"dup_group": "v-a", "dup_relation": "copy", "source_id": "v-a"}
    assert videos["v-b"] == {"dup_group": "v-b", "dup_relation": "none", "source_id": None}
    # predicted: the re-encoding with its video, the pin video with the pin and the edit (ambiguous), v-b with pin-4 (wrong)
    groups = {"pin-1": "g1", "pin-2": "g1", "pin-3": "g1", "v-of-pin-1": "g1", "v-a": "g2", "v-a-vp9": "g2", "v-b": "g3", "pin-4": "g3"}
    duplicates = pa.table({"content_id": list(groups), "group_id": list(groups.values())})
    result = evaluate_duplicates(duplicates, {**truth, **videos})
    # true pairs: (pin-1, pin-2), (pin-1, v-of-pin-1), (pin-2, v-of-pin-1), (v-a, v-a-vp9); the edit's pairs with them are ambiguous
    assert (result["true_pairs"], result["predicted_pairs"]) == (4, 5)
    assert (result["precision"], result["recall"]) == (4 / 5, 1.0)


def test_the_pin_video_is_the_pins_picture() -> None:
    corpus, truth = generate_corpus(n_items=4, seed=7)
    video = pin_video(corpus)
    assert (video.dup_group, truth["dup_relation"][0].as_py()) == ("pin-000000", "none")  # an original, its own group
    (keyframe,) = video_keyframes(video.data)
    pin = Image.open(io.BytesIO(corpus["image"][0].as_py()))
    assert hamming(perceptual_hash(keyframe.image), perceptual_hash(pin)) <= 4
    assert np.asarray(keyframe.image).std() > 10  # a picture, not a flat frame


def test_byte_identical_inputs_without_a_picture_are_not_false_positives() -> None:
    """The same error page uploaded twice (no picture in either): dedup groups its exact bytes, as
    it should; the corpus's truth has no copy relation for them, so the pair counts neither way."""
    corpus, truth = generate_corpus(n_items=480, seed=7)
    rows = {r["content_id"]: r for r in truth.to_pylist()}
    images = dict(zip(corpus["content_id"].to_pylist(), corpus["image"].to_pylist()))
    same_page = [c for c, r in rows.items() if r["bad_image_kind"] == "not_image" and images[c] == images[next(
        c for c, r in rows.items() if r["bad_image_kind"] == "not_image")]]
    assert len(same_page) >= 2  # the seeded corpus holds such uploads
    groups = {c: ("page" if c in same_page else r["dup_group"]) for c, r in rows.items()}  # a dedup exact in every other way
    result = evaluate_duplicates(pa.table({"content_id": list(groups), "group_id": list(groups.values())}), rows)
    assert (result["precision"], result["recall"]) == (1.0, 1.0)
    # a pictureless input grouped with a picture is still wrong
    wrong = {**groups, same_page[0]: groups["pin-000000"]}
    assert evaluate_duplicates(pa.table({"content_id": list(wrong), "group_id": list(wrong.values())}), rows)["precision"] < 1.0
