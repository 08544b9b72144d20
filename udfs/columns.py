"""Turn a signal into Spark columns: its result (an iterator pandas UDF) and its input hash.

Per task: find the GPU Spark assigned (if any), attach the worker's cached model (loaded once
per Python worker), then stream Arrow batches through `signals.runner.run_signal`, which
regroups rows into model batches, prefetches on GPUs, and turns bad rows into error rows. The output
is a struct (status, error, then the signal's values) with exactly one value per input row.
"""
from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
from pyspark import TaskContext
from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.functions import pandas_udf

from signals.base import Signal
from signals.device import configure_threads, keep_freed_heap
from signals.embedders.base import Embedder
from signals.hashing import TEXT_FIELD_SEPARATOR
from signals.labels.base import Labeler
from signals.runner import run_signal

_STATUS = [T.StructField("status", T.StringType()), T.StructField("error", T.StringType())]
EMBEDDING_RESULT = T.StructType(
    [*_STATUS, T.StructField("vector", T.ArrayType(T.FloatType(), containsNull=False)), T.StructField("dim", T.IntegerType())]
)
_LABEL = T.StructType(
    [
        T.StructField("label", T.StringType()),
        T.StructField("score", T.DoubleType()),
        T.StructField("threshold", T.DoubleType()),
        T.StructField("decision", T.BooleanType()),
    ]
)
LABEL_RESULT = T.StructType([*_STATUS, T.StructField("scores", T.ArrayType(_LABEL)), T.StructField("detail", T.StringType())])


def result_type(signal: Signal) -> T.StructType:
    """The Spark type of a signal's result struct."""
    if isinstance(signal, Embedder):
        return EMBEDDING_RESULT
    if isinstance(signal, Labeler):
        return LABEL_RESULT
    raise TypeError(f"no Spark result type for {type(signal).__name__}")


def task_gpu_addresses() -> tuple[str, ...]:
    """The GPU addresses Spark's resource scheduler gave this task (empty without GPUs)."""
    context = TaskContext.get()
    resources = context.resources() if context is not None else {}
    return tuple(resources["gpu"].addresses) if "gpu" in resources else ()


def attach_worker(signal: Signal, torch_threads: int) -> None:
    """What a task does in its Python worker before the first batch: cap torch's threads, load
    the signal (the worker's cached model) on the GPU Spark assigned, if any, and on a CPU
    worker make the C heap keep freed memory (signals.device.keep_freed_heap: the next batch
    reuses the pages the last one freed instead of faulting them in again). Not for a signal
    that pads each batch to its longest text: its activations change size every batch, and a
    heap that keeps them fragments (the worker's peak grew 9% from 1x to 4x the corpus)."""
    configure_threads(torch_threads)
    signal.load(task_gpu_addresses())
    if keeps_freed_heap(signal):
        keep_freed_heap()


def keeps_freed_heap(signal: Signal) -> bool:
    """Whether a worker running `signal` (loaded) keeps its C heap: on a CPU, batches of fixed shapes."""
    return signal.device is not None and signal.device.type == "cpu" and not signal.pads_batches


def batches_ahead(signal: Signal, prefetch: int) -> int:
    """Batches a task prepares ahead on a background thread: `prefetch` where the model runs on
    a GPU (the CPU decodes while the GPU computes), none on a CPU. There each task's model
    already keeps its cores busy (`torch_threads` per task slot), and a preparing thread only
    takes turns with it for the cores and the GIL: image embedding, 960 items, four rounds in
    fresh sessions, 63-78 images/s inline against 59-71 prefetched, inline ahead in every round."""
    return prefetch if signal.device is not None and signal.device.type == "cuda" else 0


def run_in_worker(signal: Signal, frames: Iterator[pd.DataFrame], prefetch: int, torch_threads: int) -> Iterator[pd.DataFrame]:
    """A task's result frames for `frames`: the worker attached (`attach_worker`) when the first
    one is asked for, then `run_signal` with the prefetch depth the worker's device wants."""
    attach_worker(signal, torch_threads)
    yield from run_signal(signal, frames, batches_ahead(signal, prefetch))


def result_column(signal: Signal, prefetch: int = 2, torch_threads: int = 1) -> Column:
    """The signal's UDF applied to its input columns: a struct column of `result_type(signal)`."""

    @pandas_udf(result_type(signal))  # type: ignore[call-overload]
    def compute(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        yield from run_in_worker(signal, frames, prefetch, torch_threads)

    return compute(F.struct(*[F.col(c) for c in signal.input_columns]))


def in_slice(percent: int) -> Column:
    """A stable pseudo-random `percent` of the items, by a hash of content_id: the same items
    in every run, so a canary's slice does not drift."""
    return F.pmod(F.xxhash64("content_id"), F.lit(100)) < F.lit(percent)


def input_hash_column(signal: Signal) -> Column:
    """sha256 of the signal's inputs, computed in the JVM; equals signals.hashing's Python."""
    if signal.input_kind == "image":
        return F.sha2(F.col("image"), 256)
    fields = [F.coalesce(F.col(c), F.lit("")) for c in signal.input_columns]
    return F.sha2(F.concat_ws(TEXT_FIELD_SEPARATOR, *fields), 256)
