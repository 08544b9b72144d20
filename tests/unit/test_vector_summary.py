"""The embedding statistics' task parts, merged on the driver, against numpy on all the rows at
once: counts per group, per-dimension mean and std, norm quantiles (by rank), the sample."""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from monitoring.vector_summary import PART_INPUTS, VectorSummary, embedding_parts
from signals.contracts import QUANTILES, STATUS_OK

DIM = 16


def _rows(n: int, seed: int) -> pa.Table:
    """Rows of two days of one signal, a tenth of them errors of two reasons; the vectors far from
    0 with a small spread (a sum of squares would lose the spread there)."""
    rng = np.random.default_rng(seed)
    error = rng.random(n) < 0.1
    vectors = (100 + 0.01 * rng.standard_normal((n, DIM))).astype(np.float32)
    return pa.table({
        "signal": ["image_embedding"] * n, "model_version": ["1"] * n, "ds": rng.choice(["2026-11-14", "2026-11-15"], n).tolist(),
        "reason": [("decode failed" if i % 2 else "timeout") if e else None for i, e in enumerate(error)],
        "content_id": [f"c{i:05d}" for i in range(n)], "status": ["error" if e else STATUS_OK for e in error],
        "dim": pa.array([None if e else DIM for e in error], pa.int32()),
        "vector": pa.array([None if e else v.tolist() for e, v in zip(error, vectors)], pa.list_(pa.float32())),
        "key": rng.integers(0, 1 << 20, n), "in_sample": (~error & (rng.random(n) < 0.3)).tolist(),
    }).select(PART_INPUTS)


def _parts_of_tasks(rows: pa.Table, tasks: int, seed: int) -> list[dict]:
    """Each task's parts, the rows dealt to the tasks at random and handed over in small batches."""
    task_of_row = np.random.default_rng(seed).integers(0, tasks, rows.num_rows)
    parts = []
    for t in range(tasks):
        mine = rows.take(np.flatnonzero(task_of_row == t))
        for batch in embedding_parts(iter(mine.to_batches(max_chunksize=7))):
            parts += batch.to_pylist()
    return parts


def test_parts_merged_are_numpys_statistics_of_all_rows() -> None:
    rows = _rows(400, seed=1)
    parts = _parts_of_tasks(rows, tasks=3, seed=2)
    every = rows.to_pylist()
    for ds in ("2026-11-14", "2026-11-15"):
        mine = [p for p in parts if p["ds"] == ds]
        day = [r for r in every if r["ds"] == ds]
        for reason in ("decode failed", "timeout"):
            expected = [r for r in day if r["reason"] == reason]
            assert sum(p["rows"] for p in mine if p["reason"] == reason) == len(expected)
            assert sum(p["items"] for p in mine if p["reason"] == reason) == len({r["content_id"] for r in expected})
        ok = [r for r in day if r["reason"] is None]
        vectors = np.array([r["vector"] for r in ok], np.float64)
        summary = VectorSummary.empty()
        for p in (p for p in mine if p["reason"] is None):
            summary = summary.merged(VectorSummary.of_part(p))
        assert summary.count == len(ok)
        assert np.allclose(summary.mean, vectors.mean(axis=0), rtol=0, atol=1e-12)
        assert np.allclose(summary.std(), vectors.std(axis=0, ddof=1), rtol=1e-9, atol=0)
        norms = np.sort(np.linalg.norm(vectors, axis=1))
        by_rank = [norms[max(math.ceil(q * len(norms)) - 1, 0)] for q in QUANTILES]  # the smallest norm at or above each fraction
        assert summary.norm_quantiles() == pytest.approx(by_rank, rel=1e-12)
        candidates = sorted((r["key"], r["content_id"], r["vector"]) for r in ok if r["in_sample"])
        assert summary.chosen_sample(5) == [v for _, _, v in candidates[:5]]


def test_std_of_one_vector_is_zero_and_no_vectors_have_no_quantiles() -> None:
    one = VectorSummary.of(np.ones((1, DIM), np.float32), np.zeros(0), [], np.zeros((0, 0), np.float32))
    assert one.std().tolist() == [0.0] * DIM
    assert one.merged(VectorSummary.empty()) is one and VectorSummary.empty().merged(one) is one
    assert VectorSummary.empty().norm_quantiles() == [] and VectorSummary.empty().chosen_sample(5) == []

