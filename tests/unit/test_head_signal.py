"""A trained head as a signal (signals/labels/head.py), without Spark: the job's runner and row
contract over stored embedding rows, scores equal to the head called directly, error rows where
the embedding is one or is missing."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch

from signals.base import ModelRef, SignalConfig
from signals.catalog import build_signal
from signals.contracts import LABELS, TRANSIENT_PREFIX, is_retried_error
from signals.labels.head import build_head, load_head, score_vectors
from signals.runner import run_signal
from signals.table_rows import KEY_COLUMNS, RowStamp, table_rows
from training.heads import TrainedHead, save_head
from udfs.rows import output_rows

DIM = 8


@pytest.fixture
def head(tmp_path, empty_model_cache):
    torch.manual_seed(0)
    path = save_head(TrainedHead(build_head(DIM, 4), DIM, 4), tmp_path, {"task": "low_quality"})
    params = {"label": "low_quality", "weights_path": str(path), "embedding_signal": "image_embedding", "embedding_model_version": "1"}
    return build_signal("image_embedding_head", SignalConfig("head_low_quality", ModelRef("head_low_quality", "3"), batch_size=4,
                                                             params=params)), path


def test_stored_scores_equal_the_head_on_the_stored_vector_and_errors_follow_the_embedding(head):
    signal, path = head
    vectors = np.random.default_rng(0).standard_normal((9, DIM)).astype(np.float32)
    frame = pd.DataFrame({
        "content_id": [f"c{i}" for i in range(12)], "ds": "2026-11-01", "input_hash": [f"h{i}" for i in range(12)],
        "vector": [*vectors.tolist(), None, None, None],
        "embedding_status": ["ok"] * 9 + ["error", "error", None],
        "embedding_error": [None] * 9 + ["image is corrupt", f"{TRANSIENT_PREFIX}timeout", None],
        "embedding_input_hash": [*(f"h{i}" for i in range(8)), "stale", "h9", "h10", None],
    })
    result = pd.concat(run_signal(signal.load(), [frame.iloc[:5], frame.iloc[5:]], prefetch=0, carry=KEY_COLUMNS), ignore_index=True)
    rows = table_rows(LABELS, RowStamp.of(signal, "run", pd.Timestamp("2026-11-02", tz="UTC").to_pydatetime()), result).to_pandas()
    assert list(rows["content_id"]) == list(frame["content_id"]) and set(rows["signal"]) == {"head_low_quality"}
    ok = rows[rows["status"] == "ok"]
    assert list(ok["content_id"]) == [f"c{i}" for i in range(8)] and set(ok["label"]) == {"low_quality"}
    np.testing.assert_allclose(ok["score"], score_vectors(load_head(path), vectors[:8]), atol=1e-6)
    np.testing.assert_array_equal(ok["decision"], ok["score"] >= 0.5)
    errors = rows.set_index("content_id")["error"]
    assert errors["c8"].startswith(TRANSIENT_PREFIX) and is_retried_error(errors["c8"])  # an embedding of other inputs
    assert errors["c9"] == "input embedding: image is corrupt" and not is_retried_error(errors["c9"])
    assert errors["c10"] == f"{TRANSIENT_PREFIX}timeout"  # retried with its embedding
    assert is_retried_error(errors["c11"])  # no embedding row yet


def test_other_weights_than_the_registered_ones_are_refused(head, tmp_path):
    from signals.weights import WeightsMismatch

    signal, _ = head
    wrong = build_signal("image_embedding_head", SignalConfig(signal.signal, signal.config.model, params=signal.config.params,
                                                              weights_sha256="0" * 64))
    with pytest.raises(WeightsMismatch):
        wrong.load()


def test_a_head_on_joined_embeddings_scores_their_vectors_one_after_another_and_fails_with_either(tmp_path, empty_model_cache):
    torch.manual_seed(0)
    path = save_head(TrainedHead(build_head(DIM + 4, 0), DIM + 4, 0), tmp_path, {"task": "spam_text"})
    params = {"label": "spam_text", "weights_path": str(path), "embedding_signal": "image_embedding", "embedding_model_version": "1",
              "joined_embeddings": "text_embedding@2", "embedding_kinds": "image,text"}
    signal = build_signal("joined_embedding_head", SignalConfig("head_spam_text", ModelRef("head_spam_text", "1"), batch_size=4, params=params))
    assert signal.reads == (("image_embedding", "1"), ("text_embedding", "2")) and signal.input_parts == ("image", "text")
    assert signal.input_kind == "image" and signal.input_columns == ("image", "image_uri", "title", "description")
    rng = np.random.default_rng(1)
    image, text = rng.standard_normal((6, DIM)).astype(np.float32), rng.standard_normal((6, 4)).astype(np.float32)
    frame = pd.DataFrame({
        "content_id": [f"c{i}" for i in range(6)], "ds": "2026-11-01", "input_hash": [f"h{i}" for i in range(6)],
        "part_input_hash_0": [f"i{i}" for i in range(6)], "part_input_hash_1": [f"t{i}" for i in range(6)],
        "vector": image.tolist(), "embedding_status": "ok", "embedding_error": None, "embedding_input_hash": [f"i{i}" for i in range(6)],
        "vector_1": text.tolist(), "embedding_status_1": ["ok"] * 4 + ["error", None], "embedding_error_1": [None] * 4 + ["text is not UTF-8", None],
        "embedding_input_hash_1": ["t0", "t1", "t2", "stale", "t4", None],
    })
    assert set(signal.stored_columns) <= set(frame.columns)
    result = pd.concat(run_signal(signal.load(), [frame], prefetch=0, carry=KEY_COLUMNS), ignore_index=True)
    rows = table_rows(LABELS, RowStamp.of(signal, "run", pd.Timestamp("2026-11-02", tz="UTC").to_pydatetime()), result).to_pandas()
    ok = rows[rows["status"] == "ok"]
    assert list(ok["content_id"]) == ["c0", "c1", "c2"]
    np.testing.assert_allclose(ok["score"], score_vectors(load_head(path), np.hstack([image[:3], text[:3]])), atol=1e-6)
    errors = rows.set_index("content_id")["error"]
    assert is_retried_error(errors["c3"]) and "text_embedding" in errors["c3"]  # the text vector is of other inputs
    assert errors["c4"] == "input embedding: text is not UTF-8" and is_retried_error(errors["c5"])


def test_an_ok_embedding_without_a_usable_vector_is_an_error_row_that_names_it(head):
    """Another writer's ok rows: a NaN, an infinite, an empty or a missing vector is its item's error
    row naming the embedding (before: "scores outside [0, 1]" for a NaN, and a failed batch for a
    missing vector); the other items of the batch are scored."""
    signal, _ = head
    good = np.random.default_rng(1).standard_normal(DIM).astype(np.float32)
    vectors = [good.tolist(), [float("nan")] * DIM, [float("inf"), *[0.0] * (DIM - 1)], [], None]
    frame = pd.DataFrame({"content_id": [f"c{i}" for i in range(5)], "ds": "2026-11-01", "input_hash": [f"h{i}" for i in range(5)],
                          "vector": vectors, "embedding_status": "ok", "embedding_error": None,
                          "embedding_input_hash": [f"h{i}" for i in range(5)]})
    result = pd.concat(run_signal(signal.load(), [frame], prefetch=0, carry=KEY_COLUMNS), ignore_index=True)
    rows = table_rows(LABELS, RowStamp.of(signal, "run", pd.Timestamp("2026-11-02", tz="UTC").to_pydatetime()), result).to_pandas()
    by_id = rows.set_index("content_id")
    assert by_id.loc["c0", "status"] == "ok"
    for item in ("c1", "c2", "c3", "c4"):
        assert by_id.loc[item, "status"] == "error" and "image_embedding vector" in by_id.loc[item, "error"], item
        assert not is_retried_error(by_id.loc[item, "error"])


def test_a_stored_vector_of_another_width_is_a_permanent_error_row_not_a_model_failure(head):
    """Another writer's ok row whose vector is not as wide as the head reads: before, the batch
    failed in the model, was run again row by row, and the row was "model failed: ...", an error
    every refresh computes again, forever; now prepare refuses it naming both widths."""
    signal, _ = head
    good = np.random.default_rng(2).standard_normal(DIM).astype(np.float32)
    vectors = [good.tolist(), [0.5] * (DIM + 1), [0.5] * (DIM - 1), good.tolist()]
    frame = pd.DataFrame({"content_id": [f"c{i}" for i in range(4)], "ds": "2026-11-01", "input_hash": [f"h{i}" for i in range(4)],
                          "vector": vectors, "embedding_status": "ok", "embedding_error": None,
                          "embedding_input_hash": [f"h{i}" for i in range(4)]})
    result = pd.concat(run_signal(signal.load(), [frame], prefetch=0, carry=KEY_COLUMNS), ignore_index=True)
    assert result["status"].tolist() == ["ok", "error", "error", "ok"]
    for i, width in ((1, DIM + 1), (2, DIM - 1)):
        assert result["error"][i] == f"input embedding: {width} values, the head reads {DIM}"
        assert not is_retried_error(result["error"][i])


def test_a_head_runs_on_the_cpu_where_a_gpu_is_visible(head, monkeypatch):
    """With device auto a head was loaded on the first GPU, where half precision (and the TF32 another signal's load turns
    on) moved its stored scores from the head called directly: 99% of them by more than 1e-6 in a simulation of TF32."""
    signal, _ = head
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # what select_device asks
    assert signal.config.device == "auto"
    assert signal.load().device == torch.device("cpu")
    assert next(signal.resources.parameters()).device.type == "cpu"


def test_items_of_one_input_hash_whose_stored_embeddings_differ_are_each_scored_from_their_own(head):
    """Compute once (udfs.rows.output_rows) keys a task's rows by the hash of the corpus inputs; a
    head's input is the item's stored embedding row, which two items of one image URI need not
    share (a fetch that failed for one): each item's row is scored from its own, as without it."""
    signal, path = head
    vector = np.random.default_rng(1).standard_normal(DIM).astype(np.float32)
    batch = pa.RecordBatch.from_pandas(pd.DataFrame({
        "content_id": ["c0", "c1"], "ds": "2026-11-01", "input_hash": ["h", "h"], "vector": [None, vector.tolist()],
        "embedding_status": ["error", "ok"], "embedding_error": ["not found: the URI answered 404", None], "embedding_input_hash": ["h", "h"],
    }), preserve_index=False)
    stamp = RowStamp.of(signal, "run", pd.Timestamp("2026-11-02", tz="UTC").to_pydatetime())

    once, every = (pa.Table.from_batches(list(output_rows(signal, stamp, compute_once=flag)(iter([batch])))).to_pandas().set_index("content_id")
                   for flag in (True, False))

    assert once.loc["c0", "error"] == "input embedding: not found: the URI answered 404"
    assert once.loc["c1", "status"] == "ok"
    np.testing.assert_allclose(once.loc["c1", "score"], score_vectors(load_head(path), vector[None])[0], atol=1e-6)
    pd.testing.assert_frame_equal(once.drop(columns="computed_at"), every.drop(columns="computed_at"))
