"""Tests for signals.shared_forward: signals on one loaded model run it once on the same rows, and
their values are those each computes alone, on real EfficientNet-Lite0 and MiniLM weights, through
the runner, the video pass and the online scorer; the features are keyed by content, never by object."""
from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest
import skimage.data
import torch
from labels_helpers import config, jpeg
from PIL import Image

from signals.embedders.efficientnet import EfficientNetImageEmbedder
from signals.embedders.minilm import MiniLMTextEmbedder
from signals.labels.topics import ImageTopicLabeler, TextTopicLabeler
from signals.runner import run_signal
from signals.shared_forward import SharedForward, row_digest, share_backbones

IMAGES = [jpeg(getattr(skimage.data, name)()) for name in ("chelsea", "coffee", "rocket", "astronaut", "camera")]
IMAGE_FRAME = pd.DataFrame({"image": [*IMAGES, b"\x89PNG\r\n\x1a\n truncated"]})
TEXTS = pd.DataFrame({
    "title": ["Slow-cooked beef stew", "Marathon training plan", "Minimalist living room", None, "Sourdough at home"],
    "description": ["Carrots, potatoes and red wine, three hours in the oven.", "Twelve weeks from 10k to 42k.",
                    "Neutral colours, one rug, no clutter.", None, "A starter, flour, water and patience."],
})


@contextmanager
def forward_calls(cls: type, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The rows of every call of `cls.forward` (the backbone's network) while the block runs."""
    calls: list[int] = []
    forward = cls.forward

    def counted(self, prepared):
        calls.append(len(prepared))
        return forward(self, prepared)

    with monkeypatch.context() as patch:
        patch.setattr(cls, "forward", counted)
        yield calls


def _rows(signal, frame: pd.DataFrame) -> pd.DataFrame:
    return pd.concat(list(run_signal(signal, [frame], prefetch=0)), ignore_index=True)


def _values(rows: pd.DataFrame) -> list:
    """Per row: its status and error, and its vector or {label: score}."""
    column = "vector" if "vector" in rows else "scores"
    return [(s, e, None if v is None else np.asarray(v) if column == "vector" else {x["label"]: x["score"] for x in v})
            for s, e, v in zip(rows["status"], rows["error"], rows[column])]


def _assert_same(shared: pd.DataFrame, alone: pd.DataFrame) -> None:
    for (status, error, value), (status_alone, error_alone, value_alone) in zip(_values(shared), _values(alone), strict=True):
        assert (status, error) == (status_alone, error_alone)
        if isinstance(value, dict):
            assert value.keys() == value_alone.keys()
            assert all(abs(value[k] - value_alone[k]) <= 1e-6 for k in value)
        elif value is not None:
            assert np.abs(value - value_alone).max() <= 1e-6


@pytest.mark.parametrize(("embedder_cls", "labeler_cls", "frame", "batches"), [
    (EfficientNetImageEmbedder, ImageTopicLabeler, IMAGE_FRAME, (2, 8)),  # the embedding's batches of 2 serve the topics' one of 8
    (MiniLMTextEmbedder, TextTopicLabeler, TEXTS, (4, 4)),
], ids=["efficientnet", "minilm"])
def test_an_embedding_and_its_topics_run_the_backbone_once_and_equal_each_alone(embedder_cls, labeler_cls, frame, batches,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def pair():
        embedder = embedder_cls(config(f"{labeler_cls.input_kind}_embedding", batch_size=batches[0])).load()
        labeler = labeler_cls(config(f"{labeler_cls.input_kind}_topics", batch_size=batches[1])).load()
        return embedder, labeler

    alone, alone_calls = [], []
    for signal in pair():
        with forward_calls(embedder_cls, monkeypatch) as calls:
            alone.append(_rows(signal, frame))
        alone_calls.append(calls)
    embedder, labeler = pair()
    assert share_backbones([embedder, labeler], len(frame)) == 1
    with forward_calls(embedder_cls, monkeypatch) as shared_calls:
        shared = [_rows(embedder, frame), _rows(labeler, frame)]
    good = int((alone[0]["status"] == "ok").sum())
    assert sum(alone_calls[0]) == sum(alone_calls[1]) == good  # alone, each signal runs the network on every good row
    assert shared_calls == alone_calls[0]  # shared: the embedding's batches, and nothing more for the topics
    for rows, rows_alone in zip(shared, alone):
        _assert_same(rows, rows_alone)


def test_the_video_pass_runs_the_backbone_once_per_chunk_of_keyframes(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime

    from sample_corpus.photos import base_photo
    from sample_corpus.videos import encode_video, pan
    from signals.table_rows import RowStamp
    from signals.video.keyframes import VideoReading
    from signals.video.rows import video_rows

    rng = np.random.default_rng(5)
    frames = [*pan(base_photo("rocket"), 1.5, rng, 12, (160, 120)), *pan(base_photo("coffee"), 2.0, rng, 12, (160, 120))]
    item = {"content_id": "v1", "ds": "2026-12-01", "input_hash": "h", "video": encode_video([np.asarray(f.convert("RGB")) for f in frames], 12)}

    def stamped(*signals):
        return [(s, RowStamp.of(s, "run-1", datetime(2026, 12, 1, tzinfo=UTC))) for s in signals]

    def pair():
        return (EfficientNetImageEmbedder(config("image_embedding", batch_size=4)).load(),
                ImageTopicLabeler(config("image_topics", batch_size=4)).load())

    with forward_calls(EfficientNetImageEmbedder, monkeypatch) as alone_calls:
        alone = [video_rows(stamped(s), item, VideoReading())[0] for s in pair()]
    with forward_calls(EfficientNetImageEmbedder, monkeypatch) as shared_calls:
        shared = video_rows(stamped(*pair()), item, VideoReading())
    keyframes = alone[0][0].num_rows
    assert keyframes == 2 and alone_calls == [keyframes, keyframes] and shared_calls == [keyframes]
    for (k_shared, own_shared), (k_alone, own_alone) in zip(shared, alone):
        for rows, rows_alone in ((k_shared, k_alone), (own_shared, own_alone)):
            rows, rows_alone = rows.to_pandas(), rows_alone.to_pandas()
            values = ["vector", "score"]
            assert rows.drop(columns=values, errors="ignore").equals(rows_alone.drop(columns=values, errors="ignore"))
            for column in set(values) & set(rows.columns):
                for value, value_alone in zip(rows[column], rows_alone[column]):  # None or NaN where a row has no value
                    value, value_alone = (np.asarray(np.nan if v is None else v, dtype=np.float64) for v in (value, value_alone))
                    assert value.shape == value_alone.shape and np.allclose(value, value_alone, rtol=0, atol=1e-6, equal_nan=True)


def test_the_scorer_runs_each_backbone_once_per_batch(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from conf.settings import load_settings
    from serving.scorer import Item, Scorer

    backbone_signals = ("image_embedding", "image_topics", "text_embedding", "text_topics")
    others = [name for name in load_settings("local").signals if name not in backbone_signals]
    settings = load_settings("local", [f"lakehouse={tmp_path}", "registry.enabled=false", "serve.max_batch=4",
                                       *(f"signals.{name}.model.version=1" for name in backbone_signals + tuple(others)),
                                       *(f"signals.{name}.enabled=false" for name in others)])
    scorer = Scorer.load(settings)
    items = [Item(image=IMAGES[i], title=TEXTS["title"][i], description=TEXTS["description"][i]) for i in range(3)]
    with forward_calls(EfficientNetImageEmbedder, monkeypatch) as image_calls, forward_calls(MiniLMTextEmbedder, monkeypatch) as text_calls:
        results = scorer.score(items)
    assert image_calls == [3] and text_calls == [3]
    for signal in backbone_signals:  # each signal alone, on the same items
        alone = _rows(type(scorer.signals[signal])(scorer.signals[signal].config).load(),
                      pd.DataFrame({"image": IMAGES[:3], "image_uri": [None] * 3, "title": TEXTS["title"][:3], "description": TEXTS["description"][:3]}))
        for result, row in zip(results, alone.to_dict("records")):
            if signal.endswith("embedding"):
                assert np.abs(np.asarray(result.embeddings[signal]["vector"]) - row["vector"]).max() <= 1e-6
            else:
                scores = {s["label"]: s["score"] for s in result.labels[signal]["labels"]}
                assert all(abs(scores[s["label"]] - s["score"]) <= 1e-6 for s in row["scores"])


def _tensor(seed: int) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(io.BytesIO(IMAGES[seed])).resize((8, 8)), dtype=np.float32)).permute(2, 0, 1)


def _sums(rows: list[torch.Tensor]) -> torch.Tensor:
    """A stand-in backbone: per row, the sum of each channel."""
    return torch.stack([r.sum(dim=(1, 2)) for r in rows])


def test_features_are_kept_by_content_not_by_object() -> None:
    """Equal rows in other objects are hits; a row changed in place, or another row, is not; a
    kept row beyond `rows` is forgotten; texts are named by their text."""
    computed: list[int] = []

    def forward(rows: list[torch.Tensor]) -> torch.Tensor:
        computed.append(len(rows))
        return _sums(rows)

    shared = SharedForward(rows=3)
    first = [_tensor(0), _tensor(1)]
    assert torch.equal(shared.pooled(forward, first), _sums(first)) and computed == [2]
    again = [_tensor(1), _tensor(0)]  # new objects, the same content
    assert torch.equal(shared.pooled(forward, again), _sums(again)) and computed == [2]
    first[0] += 1  # the same object, other content
    assert torch.equal(shared.pooled(forward, [first[0], _tensor(2), _tensor(1)]), _sums([first[0], _tensor(2), _tensor(1)]))
    assert computed == [2, 2]
    shared.pooled(forward, [_tensor(0)])  # kept: 1, first[0] and 2; 0 was forgotten
    assert computed == [2, 2, 1]
    assert row_digest("a text") == row_digest("a text") != row_digest("a text ") and row_digest(b"bytes") is None


def test_threads_sharing_features_each_get_their_own_rows() -> None:
    shared, rows = SharedForward(rows=2), [_tensor(i) for i in range(5)]
    expected = _sums(rows)
    wrong: list[int] = []

    def work(offset: int) -> None:
        for step in range(50):
            i = (offset + step) % len(rows)
            if not torch.equal(shared.pooled(_sums, [rows[i]])[0], expected[i]):
                wrong.append(i)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not wrong
