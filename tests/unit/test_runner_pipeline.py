"""The runner's overlap and memory machinery: prepare threads, the batch-level prepare hook on the
prefetch thread, per-row errors from the model side, stage times for the benchmark, heap trims."""
from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
import torch

from signals import model_cache
from signals.base import ModelRef, RowError, SignalConfig
from signals.contracts import STATUS_ERROR, STATUS_OK
from signals.decode import InputError
from signals.device import HeapTrimmer
from signals.embedders.base import Embedder
from signals.profiling import PROFILE_DIR_ENV, StageTimes, stage_times
from signals.runner import frame_records, rows_in_batches, run_signal

pytestmark = pytest.mark.usefixtures("empty_model_cache")


class Recorder:
    def __init__(self) -> None:
        self.prepare_threads: list[str] = []
        self.batch_threads: list[str] = []
        self.batches: list[list[Any]] = []


class HookedEmbedder(Embedder):
    """x -> [1, x, x^2]; prepare_batch doubles-then-halves x (to prove it ran) and can refuse rows."""

    input_kind: ClassVar = "text"
    input_columns: ClassVar = ("x",)
    dim = 3

    def resource_key(self) -> Any:
        return ("hooked", self.config.model.version)

    def load_resources(self, device: torch.device) -> Recorder:
        return Recorder()

    def prepare(self, row: Mapping[str, Any]) -> float:
        self.resources.prepare_threads.append(threading.current_thread().name)
        time.sleep(self.config.params.get("prepare_wait_s", 0))  # a row waiting on the network, say
        if row["x"] < 0:
            raise InputError(f"x is negative: {row['x']}")
        return float(row["x"])

    def prepare_batch(self, inputs: list[Any]) -> list[Any]:
        self.resources.batch_threads.append(threading.current_thread().name)
        if self.config.params.get("batch_crash"):
            raise RuntimeError("device out of memory")
        refuse = self.config.params.get("refuse", ())
        return [RowError(f"device refused {x:g}") if x in refuse else ("ready", x) for x in inputs]

    def compute(self, prepared: list[Any]) -> list[Any]:
        self.resources.batches.append(list(prepared))
        xs = [p[1] if isinstance(p, tuple) else p for p in prepared]
        model_refuses = self.config.params.get("model_refuses", ())
        vectors = list(self.embed(xs))
        return [RowError(f"model refused {x:g}") if x in model_refuses else v for x, v in zip(xs, vectors)]

    def forward(self, prepared: list[float]) -> torch.Tensor:
        return torch.tensor([[1.0, x, x * x] for x in prepared], dtype=torch.float32)


def make_signal(batch_size: int = 4, version: str = "1", **params) -> HookedEmbedder:
    config = SignalConfig("hooked", ModelRef("hooked", version), batch_size, "cpu", params)
    return HookedEmbedder(config).load()


def frames_of(values: list[float], sizes: list[int]) -> list[pd.DataFrame]:
    frames, start = [], 0
    for size in sizes:
        frames.append(pd.DataFrame({"x": values[start : start + size]}))
        start += size
    return frames


def expected(x: float) -> np.ndarray:
    v = np.array([1.0, x, x * x])
    return (v / np.linalg.norm(v)).astype(np.float32)


def run(signal, values, sizes=None, prefetch: int = 2) -> pd.DataFrame:
    return pd.concat(list(run_signal(signal, frames_of(values, sizes or [len(values)]), prefetch=prefetch)), ignore_index=True)


# ---------------------------------------------------------------------------------- regrouping


def test_frame_records_equals_pandas_records() -> None:
    frame = pd.DataFrame({"a": [1, 2, 3], "b": [b"x", None, b""], "c": ["t", None, "u"], "d": [1.5, float("nan"), 0.0],
                          "e": pd.array([1, None, 3], dtype="Int32"), "f": pd.to_datetime(["2026-01-01", None, "2026-01-03"], utc=True)})
    got, want = frame_records(frame), frame.to_dict("records")
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.keys() == w.keys()
        for k in g:
            assert (pd.isna(g[k]) and pd.isna(w[k])) or (g[k] == w[k] and type(g[k]) is type(w[k])), k


def test_a_huge_frame_is_cut_into_batches_without_copying_it_each_time() -> None:
    frame = pd.DataFrame({"x": range(100_000)})
    batches = rows_in_batches([frame], 7)
    first = next(batches)
    assert [r["x"] for r in first] == list(range(7))
    assert sum(len(b) for b in batches) == 100_000 - 7


# ---------------------------------------------------------------------------------- prepare threads


def test_prepare_threads_prepare_rows_in_parallel_and_keep_order() -> None:
    # batches of 40 rows go to the threads in chunks of 16: bad rows on both sides of the chunk edges
    values = [-x if x % 7 == 3 or x in (15, 16, 31, 32) else x for x in range(90)]
    signal = make_signal(batch_size=40, prepare_threads=3)
    out = run(signal, values, [30, 45, 15])
    assert out["status"].tolist() == [STATUS_ERROR if x < 0 else STATUS_OK for x in values]
    for x, v in zip(values, out["vector"]):
        if x >= 0:
            np.testing.assert_allclose(v, expected(x), rtol=1e-6)
    assert {name.rsplit("_", 1)[0] for name in signal.resources.prepare_threads} == {"prepare"}


def test_a_batch_smaller_than_a_chunk_is_spread_over_the_prepare_threads() -> None:
    # a CPU batch of a signal that fetches (8 rows, 4 threads): its rows wait on the network together
    wait = 0.05
    signal = make_signal(batch_size=8, prepare_threads=4, prepare_wait_s=wait)
    start = time.perf_counter()
    out = run(signal, list(range(16)), prefetch=0)
    took = time.perf_counter() - start
    assert out["status"].tolist() == [STATUS_OK] * 16
    assert len(set(signal.resources.prepare_threads)) == 4
    assert took < 16 * wait / 2  # on one thread the rows would wait one after the other


def test_one_prepare_thread_is_the_default() -> None:
    signal = make_signal()
    run(signal, [1, 2, 3])
    assert set(signal.resources.prepare_threads) == {"prefetch"}


# ---------------------------------------------------------------------------------- prepare_batch


@pytest.mark.parametrize(("prefetch", "thread"), [(0, "MainThread"), (2, "prefetch")])
def test_prepare_batch_runs_where_prepare_runs_and_only_on_good_rows(prefetch: int, thread: str) -> None:
    signal = make_signal()
    run(signal, [0, -1, 2, 3, 4, 5], prefetch=prefetch)
    assert set(signal.resources.batch_threads) == {thread}
    assert signal.resources.batches == [[("ready", 0.0), ("ready", 2.0), ("ready", 3.0)], [("ready", 4.0), ("ready", 5.0)]]


def test_a_row_refused_by_prepare_batch_is_that_rows_error() -> None:
    out = run(make_signal(refuse=(2.0,)), [0, 1, 2, 3])
    assert out["status"].tolist() == [STATUS_OK, STATUS_OK, STATUS_ERROR, STATUS_OK]
    assert out["error"][2] == "device refused 2"
    np.testing.assert_allclose(out["vector"][3], expected(3), rtol=1e-6)


def test_a_failing_prepare_batch_leaves_the_rows_to_compute() -> None:
    signal = make_signal(batch_crash=True)
    out = run(signal, [0, 1, -2, 3])
    assert out["status"].tolist() == [STATUS_OK, STATUS_OK, STATUS_ERROR, STATUS_OK]
    assert signal.resources.batches == [[0.0, 1.0, 3.0]]


def test_a_row_error_from_compute_fails_only_that_row() -> None:
    out = run(make_signal(model_refuses=(1.0,)), [0, 1, 2, 3, 4])
    assert out["status"].tolist() == [STATUS_OK, STATUS_ERROR, STATUS_OK, STATUS_OK, STATUS_OK]
    assert out["error"][1] == "model refused 1"
    assert out["vector"][1] is None and pd.isna(out["dim"][1])


# ---------------------------------------------------------------------------------- stage times


def test_stage_times_are_off_without_the_environment_variable(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv(PROFILE_DIR_ENV, raising=False)
    clock = StageTimes()
    with clock.time("forward", 3):
        pass
    clock.dump()
    assert clock.snapshot() == {"seconds": {}, "items": {}}
    assert not list(tmp_path.iterdir())


def test_the_runner_records_its_stages_per_process(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(PROFILE_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(stage_times, "seconds", {})
    monkeypatch.setattr(stage_times, "items", {})
    run(make_signal(), [0, 1, -2, 3, 4, 5, 6], [4, 3])
    data = json.loads((tmp_path / f"{os.getpid()}.json").read_text())
    assert data["pid"] == os.getpid()
    assert data["items"]["read"] == 7 and data["items"]["prepare"] == 7 and data["items"]["emit"] == 7
    assert data["items"]["prepare_batch"] == 6 and data["items"]["compute"] == 6 and data["items"]["forward"] == 6
    assert all(seconds >= 0 for seconds in data["seconds"].values())


# ---------------------------------------------------------------------------------- heap trims


@pytest.fixture
def fresh_trimmers(monkeypatch):
    """HeapTrimmer's per-process levels, empty for this test."""
    monkeypatch.setattr(HeapTrimmer, "_levels", {})


def _trimmer_with(monkeypatch, rss_mb: list[float], calls: list[int], **kwargs) -> HeapTrimmer:
    trimmer = HeapTrimmer(**kwargs)
    readings = iter(rss_mb)
    monkeypatch.setattr("signals.device.resident_mb", lambda: next(readings))
    monkeypatch.setattr(trimmer, "_trim", lambda pad: calls.append(pad) or 1)
    return trimmer


def test_the_heap_is_trimmed_only_past_the_settled_peak_plus_headroom(monkeypatch, fresh_trimmers) -> None:
    calls: list[int] = []
    # three batches settle at 1000 MB; then within 5%, past it; after the trim three batches
    # settle again (at 1010), then within 5% of that, past it
    trimmer = _trimmer_with(monkeypatch, [900, 1000, 980, 1040, 1060, 1000, 1010, 1005, 1040, 1100], calls, settle_batches=3, headroom=0.05)
    assert [trimmer() for _ in range(10)] == [False] * 4 + [True] + [False] * 4 + [True]
    assert calls == [0, 0]


def test_a_working_set_that_outgrew_the_first_batches_is_trimmed_once_not_every_batch(monkeypatch, fresh_trimmers) -> None:
    calls: list[int] = []
    # a warm-up's small batches settle at 1080 MB; the job's batches need 1170 MB each
    trimmer = _trimmer_with(monkeypatch, [1050, 1080, 1080] + [1170, 1175, 1168, 1172, 1170, 1174, 1169], calls, settle_batches=3)
    assert [trimmer() for _ in range(10)] == [False] * 3 + [True] + [False] * 6
    assert trimmer.settled_mb == 1175
    assert calls == [0]


def test_the_settled_level_is_the_process_s_until_a_model_loads(monkeypatch, fresh_trimmers) -> None:
    calls: list[int] = []
    first = _trimmer_with(monkeypatch, [1000, 1020], calls, settle_batches=1)
    assert [first(), first()] == [False, False]
    # the next task's trimmer does not settle again on what the last task left
    second = _trimmer_with(monkeypatch, [1500], calls, settle_batches=1)
    assert second() is True
    # a model loaded since: its memory is legitimate, the process settles again
    model_cache.get_or_load(("another", "model"), object)
    third = _trimmer_with(monkeypatch, [1500, 1500], calls, settle_batches=1)
    assert [third(), third()] == [False, False]
    assert calls == [0]


def test_without_glibc_trimming_is_a_no_op(monkeypatch, fresh_trimmers) -> None:
    trimmer = HeapTrimmer(settle_batches=0)
    monkeypatch.setattr(trimmer, "_trim", None)
    monkeypatch.setattr("signals.device.resident_mb", lambda: 10**6)
    assert trimmer() is False


# ---------------------------------------------------------------------------------- three stages


class StagedEmbedder(HookedEmbedder):
    """A signal whose batch preparation is real work (like GPU decoding): its own thread."""

    @property
    def prepares_batches(self) -> bool:
        return True


def staged(batch_size: int = 4, **params) -> StagedEmbedder:
    return StagedEmbedder(SignalConfig("staged", ModelRef("staged", "1"), batch_size, "cpu", params)).load()


def test_batch_preparation_gets_its_own_thread_and_changes_no_result() -> None:
    values = [0, 1, -2, 3, 4, 5, 6, -7, 8, 9, 10]
    signal = staged(refuse=(5.0,), model_refuses=(9.0,))
    out = run(signal, values, [3, 5, 3])
    reference = run(make_signal(version="2", refuse=(5.0,), model_refuses=(9.0,)), values, [3, 5, 3])
    assert out["status"].tolist() == reference["status"].tolist()
    assert out["error"].tolist() == reference["error"].tolist()
    assert set(signal.resources.prepare_threads) == {"prefetch-rows"}
    assert set(signal.resources.batch_threads) == {"prefetch"}


def test_without_prefetch_the_three_stages_run_in_line() -> None:
    signal = staged()
    out = run(signal, [0, 1, 2, 3, 4], prefetch=0)
    assert (out["status"] == STATUS_OK).all()
    assert set(signal.resources.prepare_threads) == set(signal.resources.batch_threads) == {"MainThread"}


def test_an_abandoned_three_stage_run_stops_both_threads() -> None:
    signal = staged()
    results = run_signal(signal, frames_of(list(range(400)), [400]), prefetch=2)
    next(results)
    results.close()
    assert not any(t.name in ("prefetch", "prefetch-rows") and t.is_alive() for t in threading.enumerate())
    assert len(signal.resources.prepare_threads) <= 12 * 4


def test_a_failure_in_the_row_stage_reaches_the_caller() -> None:
    def frames():
        yield pd.DataFrame({"x": [0, 1, 2, 3, 4]})
        raise ConnectionError("lost the shuffle block")

    results = run_signal(staged(), frames(), prefetch=2)
    assert next(results)["status"].tolist() == [STATUS_OK] * 4
    with pytest.raises(ConnectionError, match="lost the shuffle block"):
        list(results)
