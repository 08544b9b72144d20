"""The three arms of the benchmark, each over the same corpus with the same signal object.

- `raw_loop`: read the corpus with delta-rs, then decode, preprocess and run the model in a
  plain Python loop in this process with torch using every core; write the vectors as parquet.
  No Spark, no prefetch, no error bookkeeping: the practical limit of the machine (with the C
  heap kept as our CPU workers keep it, udfs.worker.keeps_freed_heap).
- `pbu_arm`: Spark's `pyspark.ml.functions.predict_batch_udf` over the same Spark read of the
  corpus (lake.spark_io.read_spark), its predict function doing decode, preprocess and forward
  with the same signal object (same model, batch size, torch threads per task as our job),
  writing content_id + vector as plain parquet.
- `ours_arm`: jobs.backfill.run_backfill end to end (input hashes, error rows, data files with
  statistics, the Delta commit and the run ledger).
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from benchmarks import stages
from benchmarks.memory import RssPoller
from signals.base import Signal
from signals.decode import InputError
from signals.device import keep_freed_heap
from udfs.worker import keeps_freed_heap


@dataclass
class ArmResult:
    arm: str
    items: int
    wall_s: float
    ok: int
    stages_s: dict[str, float] = field(default_factory=dict)
    stage_kind: str = ""  # what the stage numbers are
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def items_per_s(self) -> float:
        return self.items / self.wall_s if self.wall_s > 0 else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {"items": self.items, "ok": self.ok, "wall_s": round(self.wall_s, 3), "items_per_s": round(self.items_per_s, 2),
                "stages_s": {k: round(v, 3) for k, v in self.stages_s.items()}, "stage_kind": self.stage_kind, **self.extra}


@contextmanager
def _clock(totals: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        totals[stage] = totals.get(stage, 0.0) + time.perf_counter() - start


def _vectors_table(ids: list[str], vectors: list[np.ndarray | None]) -> pa.Table:
    return pa.table({"content_id": pa.array(ids, pa.string()), "vector": pa.array(vectors, pa.list_(pa.float32()))})


def raw_loop(signal: Signal, corpus_root: str, out_path: Path, threads: int) -> ArmResult:
    """The plain loop; the model is loaded and run once on a batch before the clock starts."""
    from deltalake import DeltaTable

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        signal.load()
        if keeps_freed_heap(signal):  # as our workers do (a text run after an image one inherits it)
            keep_freed_heap()
        is_image = signal.input_kind == "image"
        batch_size = signal.batch_size
        dataset = DeltaTable(corpus_root).to_pyarrow_dataset()
        columns = ["content_id", *[c for c in signal.input_columns if c in dataset.schema.names]]  # the inputs the corpus has (images inline)
        warm = dataset.head(batch_size, columns=columns).to_pylist()
        _raw_batch(signal, warm, is_image, {})  # warm-up, not timed

        totals: dict[str, float] = {}
        ids: list[str] = []
        vectors: list[np.ndarray | None] = []
        start = time.perf_counter()
        with _clock(totals, "read"):
            batches = dataset.to_batches(columns=columns, batch_size=batch_size)
        while True:
            with _clock(totals, "read"):
                batch = next(batches, None)
                rows = batch.to_pylist() if batch is not None else None
            if rows is None:
                break
            ids.extend(r["content_id"] for r in rows)
            vectors.extend(_raw_batch(signal, rows, is_image, totals))
        with _clock(totals, "write"):
            pq.write_table(_vectors_table(ids, vectors), out_path)
        wall = time.perf_counter() - start
    finally:
        torch.set_num_threads(previous)
    ok = sum(v is not None for v in vectors)
    return ArmResult("raw", len(ids), wall, ok, totals, "seconds of one process, sequential (they add up to the wall time)",
                     {"torch_threads": threads})


def _raw_batch(signal: Signal, rows: list[dict[str, Any]], is_image: bool, totals: dict[str, float]) -> list[np.ndarray | None]:
    inputs: list[Any] = []
    where: list[int] = []
    for i, row in enumerate(rows):
        try:
            if is_image:
                with _clock(totals, "decode"):
                    image = signal.decode(row)  # type: ignore[attr-defined]
                with _clock(totals, "preprocess"):
                    inputs.append(signal.transform(image))  # type: ignore[attr-defined]
            else:
                with _clock(totals, "preprocess"):
                    inputs.append(signal.text(row))  # type: ignore[attr-defined]
            where.append(i)
        except InputError:
            continue
    out: list[np.ndarray | None] = [None] * len(rows)
    if inputs:
        with _clock(totals, "forward"):
            embedded = signal.embed(inputs)  # type: ignore[attr-defined]
        for i, vector in zip(where, embedded):
            out[i] = vector
    return out


def make_pbu_udf(signal: Signal, torch_threads: int) -> Any:
    """Spark's predict_batch_udf for `signal`: the predict function prepares each row with the
    signal (decode + preprocess, or the composed text) and runs the signal's model on the batch;
    rows whose input is unusable get a NaN vector (predict_batch_udf has no error rows)."""
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql import types as T

    dim = signal.dim  # type: ignore[attr-defined]
    is_image = signal.input_kind == "image"

    def make_predict_fn() -> Callable[..., np.ndarray]:
        # everything referenced here is pickled by value or imported from `signals` on the worker
        from signals.device import configure_threads
        from signals.profiling import stage_times

        configure_threads(torch_threads)
        signal.load()

        def run(rows: list[dict[str, Any]]) -> np.ndarray:
            out = np.full((len(rows), dim), np.nan, dtype=np.float32)
            inputs, where = [], []
            for i, row in enumerate(rows):
                try:
                    inputs.append(signal.prepare(row))
                    where.append(i)
                except Exception:  # noqa: BLE001 - an unusable input: NaN row
                    continue
            if inputs:
                out[where] = signal.embed(inputs)  # type: ignore[attr-defined]
            stage_times.dump()
            return out

        if is_image:
            def predict(images: np.ndarray, uris: np.ndarray) -> np.ndarray:
                return run([{"image": b, "image_uri": u} for b, u in zip(images, uris)])
        else:
            def predict(titles: np.ndarray, descriptions: np.ndarray) -> np.ndarray:
                return run([{"title": t, "description": d} for t, d in zip(titles, descriptions)])
        return predict

    return predict_batch_udf(make_predict_fn, return_type=T.ArrayType(T.FloatType()), batch_size=signal.batch_size)


def pbu_arm(spark: Any, signal: Signal, udf: Any, corpus_root: str, out_dir: Path, profile_dir: Path) -> ArmResult:
    from pyspark.sql import functions as F

    from conf.settings import CorpusSettings
    from jobs.corpus import CorpusSource

    before = stages.snapshot(profile_dir)
    start = time.perf_counter()
    items = CorpusSource(CorpusSettings(), corpus_root).read(spark)  # the corpus as the jobs read it
    result = items.select("content_id", udf(*[F.col(c) for c in signal.input_columns]).alias("vector"))
    result.write.mode("overwrite").parquet(str(out_dir))
    wall = time.perf_counter() - start
    busy = stages.difference(before, stages.snapshot(profile_dir))
    written = pq.read_table(str(out_dir))
    n = written.num_rows
    ok = sum(1 for v in written["vector"].to_pylist() if v is not None and not np.isnan(v[0]))
    return ArmResult("predict_batch_udf", n, wall, ok, busy["seconds"],
                     "busy seconds inside the Python workers, summed over tasks (overlapping)", {"worker_items": busy["items"]})


def ours_arm(spark: Any, settings: Any, profile_dir: Path, expect_items: int, poll: bool = True) -> ArmResult:
    """run_backfill end to end; driver-side phases timed by wrapping lake.spark_io.write_files
    (the Spark job) and lake.delta_io.commit_files."""
    from jobs.backfill import run_backfill
    from jobs.corpus import Window
    from lake import delta_io, spark_io

    phases: dict[str, float] = {}
    modules = {"write_files": spark_io, "commit_files": delta_io}
    real = {name: getattr(module, name) for name, module in modules.items()}

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with _clock(phases, name):
                return fn(*args, **kwargs)
        return wrapper

    for name, fn in real.items():
        setattr(modules[name], name, timed(name, fn))
    before = stages.snapshot(profile_dir)
    poller = RssPoller()
    try:
        with poller if poll else _nothing():
            start = time.perf_counter()
            result = run_backfill(spark, settings, Window(), run_id=f"bench-{uuid.uuid4().hex[:8]}")
            wall = time.perf_counter() - start
    finally:
        for name, fn in real.items():
            setattr(modules[name], name, fn)
    busy = stages.difference(before, stages.snapshot(profile_dir))
    if result.status != "succeeded":
        raise RuntimeError(f"backfill did not succeed: {result}")
    wrong = {o.signal: o.rows_in for o in result.outcomes if o.rows_in != expect_items}
    if wrong or not result.outcomes:
        raise RuntimeError(f"backfill computed {wrong or 'nothing'}, expected {expect_items} rows per signal")
    driver = {"spark_job_s (read+compute+write files)": round(phases.get("write_files", 0.0), 3),
              "delta_commit_s": round(phases.get("commit_files", 0.0), 3),
              "other_driver_s (ledger, planning, outcomes)": round(wall - sum(phases.values()), 3)}
    extra: dict[str, Any] = {"driver_phases_s": driver, "worker_items": busy["items"], "table_versions": getattr(result, "table_versions", None) or getattr(result, "table_version", None)}
    if poll:
        extra["worker_rss"] = poller.peaks.as_dict()
    return ArmResult("ours", expect_items, wall, sum(o.rows_ok for o in result.outcomes), busy["seconds"],
                     "busy seconds inside the Python workers, summed over tasks (overlapping)", extra)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def compare_vectors(reference: pa.Table, other: pa.Table) -> dict[str, float]:
    """How far another arm's vectors are from a reference arm's, the raw loop's say (same model:
    float noise only); a null or NaN vector is a row without a value."""
    theirs = {cid: v for cid, v in zip(other["content_id"].to_pylist(), other["vector"].to_pylist())}
    worst, compared, disagree = 0.0, 0, 0
    for cid, v in zip(reference["content_id"].to_pylist(), reference["vector"].to_pylist()):
        w = theirs.get(cid)
        w = None if w is None or (len(w) and np.isnan(w[0])) else w
        if (v is None) != (w is None):
            disagree += 1
            continue
        if v is not None:
            worst = max(worst, float(np.max(np.abs(np.subtract(v, w)))))
            compared += 1
    return {"max_abs_diff": worst, "compared": compared, "ok_status_disagreements": disagree}


def compare_tables(a: pa.Table, b: pa.Table, key: list[str], ignore: tuple[str, ...] = (), tolerance: float = 1e-5) -> dict[str, Any]:
    """Whether two signal tables hold the same rows: sorted by `key`, every column but `ignore`
    equal, vectors null in the same rows and elsewhere within `tolerance` (float noise of
    batching); a NaN where the other has a number is a difference."""
    if sorted(a.column_names) != sorted(b.column_names) or a.num_rows != b.num_rows:
        return {"identical": False, "rows": [a.num_rows, b.num_rows], "differing_columns": sorted(set(a.column_names) ^ set(b.column_names)),
                "vector_nulls_differ": None, "largest_vector_difference": None}
    a, b = (t.sort_by([(k, "ascending") for k in key]) for t in (a, b))
    differing = [c for c in a.column_names if c not in ignore and c != "vector" and not a[c].equals(b[c])]
    nulls, largest = 0, 0.0
    if "vector" in a.column_names:
        for v, w in zip(a["vector"].to_pylist(), b["vector"].to_pylist()):
            if v is None or w is None:
                nulls += (v is None) != (w is None)
                continue
            v, w = np.asarray(v, np.float64), np.asarray(w, np.float64)
            if v.shape != w.shape or not np.array_equal(np.isnan(v), np.isnan(w)):
                largest = float("inf")
            elif (present := ~np.isnan(v)).any():
                largest = max(largest, float(np.max(np.abs(v[present] - w[present]))))
    return {"identical": not differing and not nulls and largest <= tolerance, "rows": [a.num_rows, b.num_rows], "differing_columns": differing,
            "vector_nulls_differ": nulls, "largest_vector_difference": largest}
