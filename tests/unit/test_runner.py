"""Tests for signals.runner with a fake embedder: batching, per-row errors, retries, prefetch.

The fake's vector for input x is normalise([1, x, x^2]), so every output row can be checked
against the input row it should belong to.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
import torch

from signals import model_cache
from signals.base import ModelRef, SignalConfig
from signals.contracts import STATUS_ERROR, STATUS_OK, is_retried_error
from signals.decode import InputError
from signals.embedders.base import Embedder
from signals.runner import MAX_REASON_CHARS, rows_in_batches, run_signal

pytestmark = pytest.mark.usefixtures("empty_model_cache")


class FakeModel:
    """The fake's loaded resource: records what the model was asked to do."""

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []
        self.batches: list[list[float]] = []
        self.prepare_threads: list[str] = []
        self.prepared_rows = 0


class FakeEmbedder(Embedder):
    """x -> [1, x, x^2]; negative x is bad input; params choose rows that break the model."""

    input_kind: ClassVar = "text"
    input_columns: ClassVar = ("x",)
    dim = 3

    def resource_key(self) -> Any:
        return ("fake", self.config.model.name, self.config.model.version)

    def load_resources(self, device: torch.device) -> FakeModel:
        return FakeModel()

    def prepare(self, row: Mapping[str, Any]) -> float:
        model: FakeModel = self.resources
        model.prepare_threads.append(threading.current_thread().name)
        model.prepared_rows += 1
        x = row["x"]
        if x < 0:
            raise InputError(f"x is negative: {x}")
        if x in self.config.params.get("prepare_crash", ()):
            raise KeyError("no such feature")
        return float(x)

    def forward(self, prepared: list[float]) -> torch.Tensor:
        model: FakeModel = self.resources
        model.batch_sizes.append(len(prepared))
        model.batches.append(list(prepared))
        poison = self.config.params.get("poison", ())
        for x in prepared:
            if x in poison:
                raise RuntimeError(f"cannot embed {x:g}")
        bad = self.config.params.get("non_finite", {})
        rows = [[bad[x], 1.0, 1.0] if x in bad else [1.0, x, x * x] for x in prepared]
        return torch.tensor(rows, dtype=torch.float32)


class WrongShapeEmbedder(FakeEmbedder):
    def forward(self, prepared: list[float]) -> torch.Tensor:
        super().forward(prepared)
        return torch.ones(len(prepared), 4)


class PaddedEmbedder(FakeEmbedder):
    """A fake whose batches would be padded to their longest row, its size being |x| mod 7."""

    pads_batches = True

    def sort_keys(self, frame: pd.DataFrame) -> list[int]:
        return [int(abs(x)) % 7 for x in frame["x"]]


def make_signal(batch_size: int = 4, cls: type[FakeEmbedder] = FakeEmbedder, version: str = "1", **params) -> FakeEmbedder:
    config = SignalConfig(
        signal="fake_embedding", model=ModelRef("fake-model", version), batch_size=batch_size, device="cpu", params=params
    )
    return cls(config).load()


def frames_of(sizes: list[int], values: list[float] | None = None) -> list[pd.DataFrame]:
    """Frames of the given sizes whose rows carry x = 0, 1, 2, ... (or `values`) in order."""
    total = sum(sizes)
    xs = list(range(total)) if values is None else list(values)
    assert len(xs) == total
    frames, start = [], 0
    for size in sizes:
        chunk = xs[start : start + size]
        frames.append(pd.DataFrame({"content_id": [f"c{start + i:04d}" for i in range(size)], "x": chunk}))
        start += size
    return frames


def expected_vector(x: float) -> np.ndarray:
    v = np.array([1.0, x, x * x], dtype=np.float64)
    return (v / np.linalg.norm(v)).astype(np.float32)


def run(signal: FakeEmbedder, frames, prefetch: int = 2) -> pd.DataFrame:
    out = list(run_signal(signal, frames, prefetch=prefetch))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


# --------------------------------------------------------------------------------------
# rows_in_batches
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame_sizes", "batch_size", "expected"),
    [
        pytest.param([3, 7, 1, 10], 4, [4, 4, 4, 4, 4, 1], id="uneven-frames"),
        pytest.param([21], 4, [4, 4, 4, 4, 4, 1], id="one-big-frame"),
        pytest.param([1] * 9, 4, [4, 4, 1], id="one-row-frames"),
        pytest.param([8], 4, [4, 4], id="exact-multiple"),
        pytest.param([2, 2, 1], 10, [5], id="batch-larger-than-input"),
        pytest.param([0, 3, 0, 0, 2], 2, [2, 2, 1], id="empty-frames-between"),
        pytest.param([5], 1, [1, 1, 1, 1, 1], id="batch-of-one"),
        pytest.param([], 4, [], id="no-frames"),
        pytest.param([0, 0], 4, [], id="only-empty-frames"),
    ],
)
def test_rows_in_batches_sizes(frame_sizes: list[int], batch_size: int, expected: list[int]) -> None:
    batches = list(rows_in_batches(frames_of(frame_sizes), batch_size))
    assert [len(b) for b in batches] == expected


def test_rows_in_batches_keeps_every_row_in_order() -> None:
    frames = frames_of([3, 7, 1, 10])
    batches = list(rows_in_batches(frames, 4))
    rows = [row for batch in batches for row in batch]
    assert rows == pd.concat(frames, ignore_index=True).to_dict("records")
    assert [r["content_id"] for r in rows] == [f"c{i:04d}" for i in range(21)]


def test_rows_in_batches_is_lazy() -> None:
    """Batches come out while frames are still arriving (no full materialisation)."""
    pulled: list[int] = []

    def frames() -> Iterator[pd.DataFrame]:
        for i, frame in enumerate(frames_of([4, 4, 4])):
            pulled.append(i)
            yield frame

    batches = rows_in_batches(frames(), 4)
    next(batches)
    assert pulled == [0]


# --------------------------------------------------------------------------------------
# run_signal
# --------------------------------------------------------------------------------------


def test_one_output_row_per_input_row_in_order_with_error_rows() -> None:
    values = [0, 1, -1, 3, 4, -5, 6, 7, 8, 9, -10, 11, 12, 13, 14, 15, 16, 17, 18, 19, -20]
    signal = make_signal(batch_size=4)
    out = run(signal, frames_of([3, 7, 1, 10], values))

    assert list(out.columns) == ["status", "error", "vector", "dim"]
    assert len(out) == len(values)
    for x, row in zip(values, out.to_dict("records")):
        if x < 0:
            assert row["status"] == STATUS_ERROR
            assert row["error"] == f"x is negative: {x}"
            assert row["vector"] is None
            assert pd.isna(row["dim"])
        else:
            assert row["status"] == STATUS_OK
            assert row["error"] is None
            assert row["dim"] == 3
            assert row["vector"].dtype == np.float32 and row["vector"].shape == (3,)
            np.testing.assert_allclose(row["vector"], expected_vector(x), rtol=1e-6)
    assert str(out["dim"].dtype) == "Int32"


@pytest.mark.parametrize(
    ("frame_sizes", "batch_size", "expected"),
    [
        pytest.param([3, 7, 1, 10], 4, [4, 4, 4, 4, 4, 1], id="uneven-frames"),
        pytest.param([1] * 21, 4, [4, 4, 4, 4, 4, 1], id="one-row-frames"),
        pytest.param([21], 4, [4, 4, 4, 4, 4, 1], id="one-big-frame"),
        pytest.param([7, 7, 7], 5, [5, 5, 5, 5, 1], id="arrow-7-model-5"),
        pytest.param([2, 2], 8, [4], id="batch-larger-than-input"),
    ],
)
def test_model_sees_batches_of_the_configured_size(frame_sizes: list[int], batch_size: int, expected: list[int]) -> None:
    signal = make_signal(batch_size=batch_size)
    out = run(signal, frames_of(frame_sizes))
    assert signal.resources.batch_sizes == expected
    assert (out["status"] == STATUS_OK).all() and len(out) == sum(frame_sizes)


def test_bad_inputs_never_reach_the_model() -> None:
    # batch 1: two bad rows of four; batch 2: all bad; batch 3: all good
    values = [0, -1, 2, -3, -4, -5, -6, -7, 8, 9, 10, 11]
    signal = make_signal(batch_size=4)
    out = run(signal, frames_of([12], values))
    assert signal.resources.batch_sizes == [2, 4]
    assert out["status"].tolist() == [STATUS_ERROR if x < 0 else STATUS_OK for x in values]


def test_unexpected_prepare_failure_is_that_rows_error() -> None:
    signal = make_signal(batch_size=4, prepare_crash=(2,))
    out = run(signal, frames_of([4]))
    assert out["status"].tolist() == [STATUS_OK, STATUS_OK, STATUS_ERROR, STATUS_OK]
    assert out["error"][2] == "preprocessing failed: KeyError: 'no such feature'"


class LongReasonEmbedder(FakeEmbedder):
    """A fake whose bad rows say why at length: x = 1 in its InputError, x = 2 in another exception,
    x = 3 in the model's failure (each 5 MB, as an exception quoting a whole input would)."""

    def prepare(self, row: Mapping[str, Any]) -> float:
        if row["x"] == 1:
            raise InputError("input embedding: " + "e" * 5_000_000)
        if row["x"] == 2:
            raise ValueError("could not convert string to float: " + "t" * 5_000_000)
        return super().prepare(row)

    def forward(self, prepared: list[float]) -> torch.Tensor:
        if 3.0 in prepared:
            raise RuntimeError("m" * 5_000_000)
        return super().forward(prepared)


def test_an_error_reason_is_short_whatever_the_failure_said() -> None:
    """A reason is stored on every row of its item: a 5 MB message (an upstream error, an exception
    quoting the input) went into the table whole; now it is cut to MAX_REASON_CHARS, its start
    (and so its kind: "model failed: " is retried) kept."""
    out = run(make_signal(batch_size=4, cls=LongReasonEmbedder), frames_of([4]))
    assert out["status"].tolist() == [STATUS_OK, STATUS_ERROR, STATUS_ERROR, STATUS_ERROR]
    for i, start in ((1, "input embedding: eee"), (2, "preprocessing failed: ValueError: could not convert"), (3, "model failed: RuntimeError: mmm")):
        assert out["error"][i].startswith(start) and len(out["error"][i]) <= MAX_REASON_CHARS, i
    assert out["error"][1].endswith("(5000017 characters)")
    assert is_retried_error(out["error"][3])


def test_model_failing_on_one_row_fails_only_that_row() -> None:
    signal = make_signal(batch_size=4, poison=(13.0,))
    out = run(signal, frames_of([3, 7, 1, 10]))
    statuses = out["status"].tolist()
    assert statuses == [STATUS_ERROR if i == 13 else STATUS_OK for i in range(21)]
    assert out["error"][13] == "model failed: RuntimeError: cannot embed 13"
    assert out["vector"][13] is None
    for i in (12, 14, 15):  # the culprit's batch mates were retried alone and kept
        np.testing.assert_allclose(out["vector"][i], expected_vector(i), rtol=1e-6)
    # the batch [12..15] failed as a whole, then ran row by row; other batches ran once
    assert signal.resources.batch_sizes == [4, 4, 4, 4, 1, 1, 1, 1, 4, 1]


def test_model_failing_on_every_row_makes_every_row_an_error() -> None:
    signal = make_signal(batch_size=3, cls=WrongShapeEmbedder)
    out = run(signal, frames_of([5]))
    assert (out["status"] == STATUS_ERROR).all()
    assert out["error"].str.contains(r"model failed: RuntimeError: .*shape", regex=True).all()
    assert out["vector"].isna().all()


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_non_finite_output_is_an_error_row(bad_value: float) -> None:
    signal = make_signal(batch_size=4, non_finite={5.0: bad_value})
    out = run(signal, frames_of([8]))
    assert out["status"].tolist() == [STATUS_ERROR if i == 5 else STATUS_OK for i in range(8)]
    assert "non-finite" in out["error"][5]
    assert out["vector"][5] is None and pd.isna(out["dim"][5])
    np.testing.assert_allclose(out["vector"][4], expected_vector(4), rtol=1e-6)
    np.testing.assert_allclose(out["vector"][6], expected_vector(6), rtol=1e-6)


@pytest.mark.parametrize("prefetch", [0, 1, 3])
def test_input_iterator_failure_propagates_to_the_caller(prefetch: int) -> None:
    def frames() -> Iterator[pd.DataFrame]:
        yield frames_of([6])[0]
        raise ConnectionError("lost the shuffle block")

    results = run_signal(make_signal(batch_size=4), frames(), prefetch=prefetch)
    first = next(results)  # the full batch before the failure is delivered
    assert first["status"].tolist() == [STATUS_OK] * 4
    with pytest.raises(ConnectionError, match="lost the shuffle block"):
        next(results)


@pytest.mark.parametrize("prefetch", [0, 2])
def test_input_iterator_failing_at_once_propagates(prefetch: int) -> None:
    def frames() -> Iterator[pd.DataFrame]:
        raise ValueError("cannot read partition")
        yield  # pragma: no cover

    with pytest.raises(ValueError, match="cannot read partition"):
        list(run_signal(make_signal(), frames(), prefetch=prefetch))


def test_prefetch_gives_identical_results() -> None:
    values = [0, 1, -2, 3, 4, 5, 6, -7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]
    params = {"poison": (9.0,), "non_finite": {16.0: float("nan")}}
    outs = {p: run(make_signal(batch_size=4, version=f"p{p}", **params), frames_of([3, 7, 1, 10], values), prefetch=p) for p in (0, 3)}
    a, b = outs[0], outs[3]
    assert len(a) == len(b) == len(values)
    assert a["status"].tolist() == b["status"].tolist()
    assert a["error"].tolist() == b["error"].tolist()
    assert a["dim"].tolist() == b["dim"].tolist()
    for va, vb in zip(a["vector"], b["vector"]):
        assert (va is None and vb is None) or np.array_equal(va, vb)
    assert a["status"].tolist().count(STATUS_ERROR) == 4  # two bad inputs, one model failure, one NaN


@pytest.mark.parametrize(("prefetch", "on_background_thread"), [(0, False), (2, True)])
def test_prefetch_prepares_on_a_background_thread(prefetch: int, on_background_thread: bool) -> None:
    signal = make_signal(batch_size=4)
    run(signal, frames_of([10]), prefetch=prefetch)
    threads = set(signal.resources.prepare_threads)
    assert len(signal.resources.prepare_threads) == 10
    assert (threading.current_thread().name not in threads) is on_background_thread


def test_abandoned_run_stops_the_prefetch_thread_and_prepares_boundedly() -> None:
    signal = make_signal(batch_size=4)
    results = run_signal(signal, frames_of([400]), prefetch=2)
    next(results)
    results.close()
    assert not any(t.name == "prefetch" and t.is_alive() for t in threading.enumerate())
    # the producer stops a few batches ahead instead of preparing all 100 batches
    assert signal.resources.prepared_rows <= 8 * 4


def test_signals_sharing_a_model_load_it_once() -> None:
    a = make_signal(batch_size=4)
    b = make_signal(batch_size=8)
    c = make_signal(batch_size=4, version="2")
    assert a.resources is b.resources
    assert c.resources is not a.resources
    assert model_cache.load_count(a.cache_key) == 1


def test_using_the_model_before_load_is_an_error() -> None:
    signal = FakeEmbedder(SignalConfig(signal="fake_embedding", model=ModelRef("fake-model", "1"), device="cpu"))
    with pytest.raises(RuntimeError, match="call load"):
        _ = signal.resources


# --------------------------------------------------------------------------------------
# rows of similar size batched together (signals that pad batches)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("frame_sizes", "windows"), [([70], [70]), ([20, 20, 20, 9], [40, 40, 9])])
def test_padded_models_see_rows_by_size_and_results_keep_input_order(frame_sizes: list[int], windows: list[int]) -> None:
    values = [(-1 if i % 11 == 5 else 1) * ((i * 37) % 50) for i in range(sum(frame_sizes))]  # some bad (negative) rows
    padded = make_signal(batch_size=4, cls=PaddedEmbedder)
    out = run(padded, frames_of(frame_sizes, values))
    in_order = run(make_signal(batch_size=4, version="in-order"), frames_of(frame_sizes, values))

    assert out["status"].tolist() == in_order["status"].tolist() and out["error"].tolist() == in_order["error"].tolist()
    good = out["status"] == STATUS_OK
    np.testing.assert_array_equal(np.stack(out.loc[good, "vector"]), np.stack(in_order.loc[good, "vector"]))
    # runner.SORT_WINDOW_BATCHES (8) batches of 4 = 32 rows at least per window, whole frames
    expected, start = [], 0
    for size in windows:
        window = values[start : start + size]
        expected += [float(x) for x in sorted(window, key=lambda x: int(abs(x)) % 7) if x >= 0]
        start += size
    seen = [x for batch in padded.resources.batches for x in batch]
    assert seen == expected


def test_text_sizes_count_title_and_description_and_ignore_missing_ones() -> None:
    from signals.inputs import TextInput

    frame = pd.DataFrame({"title": ["ab", None, float("nan"), ""], "description": ["cde", "fg", None, None]})
    assert TextInput().sort_keys(frame) == [5, 2, 0, 0]


def test_only_cpu_signals_with_fixed_batch_shapes_keep_the_worker_heap() -> None:
    from udfs.worker import keeps_freed_heap

    assert keeps_freed_heap(make_signal())
    assert not keeps_freed_heap(make_signal(cls=PaddedEmbedder))  # activations change size every batch
    assert not keeps_freed_heap(FakeEmbedder(make_signal().config))  # not loaded: no device yet


def test_only_gpu_workers_prepare_batches_ahead() -> None:
    from udfs.worker import batches_ahead

    cpu = make_signal()
    assert batches_ahead(cpu, 2) == 0  # the model has the task's cores already
    gpu = make_signal()
    gpu.device = torch.device("cuda", 0)  # as signal.load on a GPU worker leaves it
    assert batches_ahead(gpu, 2) == 2
