"""Turn an embedder into an iterator pandas UDF.

Per task: find the GPU Spark assigned (if any), attach the worker's cached model (loaded once
per Python worker), then stream Arrow batches through `signals.runner.run_embedder`, which
regroups rows into model batches, prefetches, and turns bad rows into error rows. The output
is a struct (status, error, vector, dim) with exactly one value per input row.
"""
from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
from pyspark import TaskContext
from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.functions import pandas_udf

from signals.device import configure_threads
from signals.embedders.base import Embedder
from signals.hashing import TEXT_FIELD_SEPARATOR
from signals.runner import run_embedder

RESULT_TYPE = T.StructType(
    [
        T.StructField("status", T.StringType(), True),
        T.StructField("error", T.StringType(), True),
        T.StructField("vector", T.ArrayType(T.FloatType(), containsNull=False), True),
        T.StructField("dim", T.IntegerType(), True),
    ]
)


def task_gpu_addresses() -> tuple[str, ...]:
    """The GPU addresses Spark's resource scheduler gave this task (empty without GPUs)."""
    context = TaskContext.get()
    resources = context.resources() if context is not None else {}
    return tuple(resources["gpu"].addresses) if "gpu" in resources else ()


def embedding_column(embedder: Embedder, prefetch: int = 2, torch_threads: int = 1) -> Column:
    """The UDF applied to the embedder's input columns: a struct column of RESULT_TYPE."""

    @pandas_udf(RESULT_TYPE)  # type: ignore[call-overload]
    def embed(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        configure_threads(torch_threads)
        embedder.load(task_gpu_addresses())
        yield from run_embedder(embedder, frames, prefetch)

    return embed(F.struct(*[F.col(c) for c in embedder.input_columns]))


def input_hash_column(embedder: Embedder) -> Column:
    """sha256 of the embedder's inputs, computed in the JVM; equals signals.hashing's Python."""
    if embedder.input_kind == "image":
        return F.sha2(F.col("image"), 256)
    fields = [F.coalesce(F.col(c), F.lit("")) for c in embedder.input_columns]
    return F.sha2(F.concat_ws(TEXT_FIELD_SEPARATOR, *fields), 256)
