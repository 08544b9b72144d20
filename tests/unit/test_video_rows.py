"""A video item's rows through the image signals: keyframe rows equal the signal on the decoded
frame, the video's rows are the pooled embedding and the labels' maximum, a bad video is an error row."""
from __future__ import annotations

import io
import json
import os
import signal
import sys
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest
import torch

from sample_corpus.photos import base_photo
from sample_corpus.videos import bad_videos, encode_video, pan
from signals.contracts import EMBEDDINGS, KEYFRAMES, LABELS, is_retried_error
from signals.embedders.efficientnet import EfficientNetImageEmbedder
from signals.labels.perceptual_hash import perceptual_hash
from signals.labels.quality import ImageQualityLabeler
from signals.table_rows import RowStamp
from signals.video.decoder_process import DECODER, DecoderNotStarted
from signals.video.keyframes import VideoReading, video_keyframes
from signals.video.pooling import pooled_embedding
from signals.video.rows import NO_KEYFRAME, video_rows
from tests.unit.labels_helpers import config

FPS = 12
SIZE = (160, 120)


@pytest.fixture(scope="module")
def two_shot_video() -> bytes:
    rng = np.random.default_rng(3)
    images = [*pan(base_photo("rocket"), 1.5, rng, FPS, SIZE), *pan(base_photo("coffee"), 2.0, rng, FPS, SIZE)]
    return encode_video([np.asarray(i.convert("RGB")) for i in images], FPS)


def _stamp(signal) -> RowStamp:
    return RowStamp.of(signal, "run-1", datetime(2026, 12, 1, tzinfo=UTC))


def _item(data: bytes | None) -> dict:
    return {"content_id": "v1", "ds": "2026-12-01", "input_hash": "h", "video": data}


def test_keyframe_embeddings_are_the_signal_on_the_decoded_frame_and_the_video_row_is_pooled(two_shot_video: bytes) -> None:
    embedder = EfficientNetImageEmbedder(config("image_embedding")).load()
    keyframes_batch, video_batch = video_rows([(embedder, _stamp(embedder))], _item(two_shot_video), VideoReading())[0]
    assert keyframes_batch.schema == KEYFRAMES.schema and video_batch.schema == EMBEDDINGS.schema
    decoded = list(video_keyframes(two_shot_video))
    rows = keyframes_batch.to_pylist()
    assert [r["keyframe_index"] for r in rows] == [k.index for k in decoded] and [r["shot_index"] for r in rows] == [0, 1]
    with torch.inference_mode():  # the image signal called directly on each decoded frame
        direct = embedder.embed([embedder.transform(k.image) for k in decoded])
    for row, vector, keyframe in zip(rows, direct, decoded):
        assert row["status"] == "ok" and row["label"] is None
        assert np.allclose(row["vector"], np.asarray(vector), atol=1e-5)
        assert row["phash"] == perceptual_hash(keyframe.image)  # dedup's fingerprint of the video: its keyframes' pHash
    (video_row,) = video_batch.to_pylist()
    expected = pooled_embedding([np.asarray(v) for v in direct], [k.end_s - k.start_s for k in decoded])
    assert video_row["content_id"] == "v1" and video_row["status"] == "ok"
    assert np.allclose(video_row["vector"], expected, atol=1e-5)


def test_keyframes_that_cannot_be_pooled_are_the_videos_error_not_the_tasks(two_shot_video: bytes, monkeypatch) -> None:
    """A video whose timestamps are too large for their differences (a cluster at -1e17 s: found in
    review) has shots of no length; pooling them raised out of the task, and every retry failed."""
    import signals.video.rows as rows

    real = rows.video_keyframes
    monkeypatch.setattr(rows, "video_keyframes",
                        lambda *args, **kwargs: (replace(k, start_s=1e17, end_s=1e17) for k in real(*args, **kwargs)))
    embedder = EfficientNetImageEmbedder(config("image_embedding")).load()
    _, video_batch = video_rows([(embedder, _stamp(embedder))], _item(two_shot_video), VideoReading())[0]
    (row,) = video_batch.to_pylist()
    assert row["status"] == "error" and row["error"].startswith("keyframes cannot be pooled: durations [0.0, 0.0]")


@pytest.mark.parametrize("executable", ["/bin/false", "/nonexistent/python"], ids=["exits", "no-process"])
def test_a_decoder_that_cannot_start_fails_the_task_not_the_video(two_shot_video: bytes, executable: str, monkeypatch) -> None:
    """A worker that cannot start its decoding child is broken, not the video: the task fails (Spark
    retries it); the video got a permanent error row ("video decoding failed: ..."), never computed again."""
    DECODER.close()
    monkeypatch.setattr(sys, "executable", executable)
    embedder = EfficientNetImageEmbedder(config("image_embedding")).load()
    with pytest.raises(RuntimeError, match="video decoder process did not start"):
        video_rows([(embedder, _stamp(embedder))], _item(two_shot_video), VideoReading())


@pytest.mark.timeout(60)
def test_a_decoder_stopped_before_it_is_ready_fails_the_task_not_the_video(two_shot_video: bytes, tmp_path, monkeypatch) -> None:
    """A child stopped before it says it is ready held the worker for good; now it is killed after
    `max_start_s`, and as no video reached it the task fails (Spark retries it) rather than the
    video getting an error row for the worker's state."""
    DECODER.close()
    stops = tmp_path / "python"
    stops.write_text("#!/bin/sh\nkill -STOP $$\n")
    stops.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(stops))
    embedder = EfficientNetImageEmbedder(config("image_embedding"))  # never loaded: nothing reaches the model
    reading = VideoReading(replace(VideoReading().limits, max_start_s=1.0))
    with pytest.raises(DecoderNotStarted, match="not ready within 1 s"):
        video_rows([(embedder, _stamp(embedder))], _item(two_shot_video), reading)


@pytest.mark.parametrize("failing_calls", [{1, 3}, {1, 2, 3}], ids=["one-keyframe", "every-keyframe"])
def test_a_model_failure_on_a_keyframe_makes_the_video_row_a_retried_error(two_shot_video: bytes, failing_calls: set[int]) -> None:
    """A keyframe the model failed on is computed again by the next refresh (a retried error in
    `keyframes`); the video's row must be one too, or it stays for good: pooled from the other
    keyframes only, or a permanent "no keyframe has a value" error."""
    embedder = EfficientNetImageEmbedder(config("image_embedding")).load()
    real, calls = embedder.compute, []

    def flaky(inputs):  # call 1: the chunk of both keyframes; then the runner's retry of each alone
        calls.append(1)
        if len(calls) in failing_calls:
            raise RuntimeError("CUDA out of memory")
        return real(inputs)

    embedder.compute = flaky
    keyframes_batch, video_batch = video_rows([(embedder, _stamp(embedder))], _item(two_shot_video), VideoReading())[0]
    assert [is_retried_error(r["error"]) for r in keyframes_batch.to_pylist()] == [len(failing_calls) == 3, True]
    (row,) = video_batch.to_pylist()
    assert row["status"] == "error" and is_retried_error(row["error"]) and row["vector"] is None


def test_video_labels_are_the_maximum_over_keyframes_with_its_time(two_shot_video: bytes) -> None:
    labeler = ImageQualityLabeler(config("image_quality")).load()
    keyframes_batch, video_batch = video_rows([(labeler, _stamp(labeler))], _item(two_shot_video), VideoReading())[0]
    assert video_batch.schema == LABELS.schema
    keyframe_rows = keyframes_batch.to_pylist()
    item_rows = video_batch.to_pylist()
    assert {r["label"] for r in item_rows} == {r["label"] for r in keyframe_rows}
    where = json.loads(item_rows[0]["detail"])["max_over_keyframes"]
    for row in item_rows:
        mine = [r for r in keyframe_rows if r["label"] == row["label"]]
        best = max(mine, key=lambda r: r["score"])
        assert row["score"] == best["score"] and where[row["label"]]["time_s"] == best["time_s"]


def test_a_flat_keyframe_has_no_phash(two_shot_video: bytes) -> None:
    """A flat frame's pHash is noise shared by every flat picture: stored null, so it links nothing in dedup."""
    labeler = ImageQualityLabeler(config("image_quality")).load()
    grey = encode_video([np.full((120, 160, 3), 128, np.uint8)] * FPS, FPS)
    for data, has_phash in ((grey, False), (two_shot_video, True)):
        keyframes_batch, _ = video_rows([(labeler, _stamp(labeler))], _item(data), VideoReading())[0]
        assert {r["phash"] is not None for r in keyframes_batch.to_pylist()} == {has_phash}


def test_a_bad_video_is_one_error_row_in_each_table() -> None:
    embedder = EfficientNetImageEmbedder(config("image_embedding"))  # never loaded: nothing reaches the model
    for bad in bad_videos():
        keyframes_batch, video_batch = video_rows([(embedder, _stamp(embedder))], _item(bad.data), VideoReading())[0]
        (row,) = video_batch.to_pylist()
        (keyframe_row,) = keyframes_batch.to_pylist()
        assert row["status"] == "error" and row["error"], bad.kind
        assert keyframe_row["keyframe_index"] == NO_KEYFRAME and keyframe_row["time_s"] is None
        assert (keyframe_row["status"], keyframe_row["error"]) == (row["status"], row["error"])


def test_a_video_whose_decoder_stopped_is_a_retried_error_in_each_table(two_shot_video: bytes) -> None:
    """A decoding child stopped without using CPU is killed after `max_wait_s`: the machine's
    doing, so the next refresh computes the video again (a permanent error would keep it for good)."""
    embedder = EfficientNetImageEmbedder(config("image_embedding"))  # never loaded: nothing reaches the model
    assert list(video_keyframes(two_shot_video))  # the worker's child is idle now
    os.kill(DECODER._idle.pid, signal.SIGSTOP)
    reading = VideoReading(replace(VideoReading().limits, max_wait_s=1.0))
    padded = two_shot_video + bytes(4 * 2**20)  # more than the pipe holds: the stopped child must take it
    keyframes_batch, video_batch = video_rows([(embedder, _stamp(embedder))], _item(padded), reading)[0]
    (row,), (keyframe_row,) = video_batch.to_pylist(), keyframes_batch.to_pylist()
    assert row["error"].startswith("transient: video decoding kept the worker waiting over 1 s") and is_retried_error(row["error"])
    assert keyframe_row["keyframe_index"] == NO_KEYFRAME and keyframe_row["error"] == row["error"]


def test_output_rows_give_video_items_their_video_rows_and_photos_theirs(two_shot_video: bytes) -> None:
    """A task's batches mixing photos and videos: one labels row per (item, label), the videos'
    their maxima over keyframes, the photos' the labeler's own, a bad video its error."""
    from udfs.rows import output_rows

    labeler = ImageQualityLabeler(config("image_quality"))
    photo = io.BytesIO()
    base_photo("camera").resize((160, 120)).save(photo, "PNG")
    ids = ["photo", "video", "bad-video"]
    batch = pa.record_batch({
        "content_id": ids, "ds": ["2026-12-01"] * 3, "input_hash": ["h"] * 3,
        "image": [photo.getvalue(), None, None], "image_uri": pa.nulls(3, pa.string()),
        "video": [None, two_shot_video, b""],
    })
    rows = pa.Table.from_batches(list(output_rows(labeler, _stamp(labeler))(iter([batch])))).to_pylist()
    by_id = {i: [r for r in rows if r["content_id"] == i] for i in ids}
    assert all(r["status"] == "ok" for r in by_id["photo"] + by_id["video"]) and len(by_id["photo"]) == len(by_id["video"]) > 1
    assert "max_over_keyframes" in by_id["video"][0]["detail"] and "max_over_keyframes" not in (by_id["photo"][0]["detail"] or "")
    assert [(r["status"], r["error"]) for r in by_id["bad-video"]] == [("error", "video is empty (0 bytes)")]


def test_one_decode_serves_every_signal_and_both_tables(two_shot_video: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """The video pass's function: each video decoded once for an embedder and a labeler, its rows
    for the keyframes table and each signal's table the same as each signal's own pass gives."""
    from signals.video import keyframes
    from udfs.rows import video_output_rows

    embedder, labeler = EfficientNetImageEmbedder(config("image_embedding")).load(), ImageQualityLabeler(config("image_quality")).load()
    alone = [video_rows([(s, _stamp(s))], _item(two_shot_video), VideoReading())[0] for s in (embedder, labeler)]
    decodes, frames = [], keyframes.DECODER.frames
    monkeypatch.setattr(keyframes.DECODER, "frames", lambda *a, **k: decodes.append(1) or frames(*a, **k))
    batch = pa.RecordBatch.from_pylist([{**_item(two_shot_video), "content_id": "v1"}, {**_item(b"junk"), "content_id": "v2"}])
    out = list(video_output_rows([(embedder, _stamp(embedder)), (labeler, _stamp(labeler))])(iter([batch])))
    assert len(decodes) == 2  # one per video, for both signals and all three tables
    tables = [name for name, _ in out]
    assert tables == [KEYFRAMES.name, EMBEDDINGS.name, KEYFRAMES.name, LABELS.name] * 2
    (k_embed, embed), (k_label, label) = [(out[i][1].to_pylist(), out[i + 1][1].to_pylist()) for i in (0, 2)]
    (alone_k_embed, alone_embed), (alone_k_label, alone_label) = [(k.to_pylist(), v.to_pylist()) for k, v in alone]
    for shared, own in ((k_embed, alone_k_embed), (embed, alone_embed)):
        assert len(shared) == len(own) and all(np.allclose(a["vector"], b["vector"], atol=1e-6) for a, b in zip(shared, own))
    assert [(r["label"], r["score"]) for r in k_label + label] == [(r["label"], r["score"]) for r in alone_k_label + alone_label]
    bad = [batch.to_pylist() for _, batch in out[4:]]
    assert all(rows[0]["content_id"] == "v2" and rows[0]["status"] == "error" for rows in bad)
