"""A signal as Spark columns, for ad-hoc use (notebooks, benchmarks): its result as an iterator
pandas UDF, its input hash, a stable slice of items. The jobs run signals through `udfs.rows`.

The UDF's output is a struct (status, error, then the signal's values) with exactly one value
per input row; each task runs the signal as `udfs.worker.run_in_worker` does for the jobs.
"""
from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.functions import pandas_udf

from signals.base import InputKind, Signal
from signals.embedders.base import Embedder
from signals.hashing import TEXT_FIELD_ESCAPES, TEXT_FIELD_SEPARATOR, URI_HASH_TAG
from signals.inputs import INPUT_COLUMNS
from signals.labels.base import Labeler
from udfs.worker import run_in_worker

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


URI_COLUMNS = ("image_uri",)  # string inputs handed to the workers as bytes (decoded per row: signals.inputs)


def result_column(signal: Signal, prefetch: int = 2, torch_threads: int = 1) -> Column:
    """The signal's UDF applied to its input columns: a struct column of `result_type(signal)`."""

    @pandas_udf(result_type(signal))  # type: ignore[call-overload]
    def compute(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        yield from run_in_worker(signal, frames, prefetch, torch_threads)

    return compute(F.struct(*input_columns(signal)))


def input_columns(signal: Signal) -> list[Column]:
    """The signal's input columns as its workers receive them: text and URIs as bytes, so that a
    value that is not valid UTF-8 reaches the signal (an error row) instead of failing Arrow's conversion."""
    return [F.col(c).cast("binary").alias(c) if signal.input_kind == "text" or c in URI_COLUMNS else F.col(c)
            for c in signal.input_columns]


def in_slice(percent: int) -> Column:
    """A stable pseudo-random `percent` of the items, by a hash of content_id: the same items
    in every run, so a canary's slice does not drift."""
    return F.pmod(F.xxhash64("content_id"), F.lit(100)) < F.lit(percent)


def input_hash_column(signal: Signal, video: bool = False) -> Column:
    """sha256 of the signal's inputs, computed in the JVM; equals signals.hashing's Python (an
    image by URI: its URI and `updated_at`). With `video` (the frame has a `video` column), an
    item's video, when it has one, is what an image signal reads: its bytes are hashed. A signal
    of several inputs (a head on joined embeddings) hashes the hashes of each, in order."""
    parts = part_hash_columns(signal, video)
    return parts[0] if len(parts) == 1 else F.sha2(F.concat_ws(TEXT_FIELD_SEPARATOR, *parts), 256)


def part_hash_columns(signal: Signal, video: bool = False) -> list[Column]:
    """The hash of each kind of input the signal reads (`Signal.input_parts`), as `input_hash_column` makes it."""
    parts = signal.input_parts
    return [kind_hash_column(kind, video, signal.input_columns if len(parts) == 1 else INPUT_COLUMNS[kind]) for kind in parts]


def kind_hash_column(kind: InputKind, video: bool = False, columns: tuple[str, ...] | None = None) -> Column:
    """The hash of one kind of input, of its `columns` (default: what that kind reads)."""
    columns = columns or INPUT_COLUMNS[kind]
    if kind == "image":
        by_uri = F.concat_ws(TEXT_FIELD_SEPARATOR, F.lit(URI_HASH_TAG), F.col("image_uri"),
                             F.coalesce(F.unix_micros(F.col("updated_at")).cast("string"), F.lit("")))
        image = F.when(F.col("image").isNotNull(), F.sha2(F.col("image"), 256)).when(F.col("image_uri").isNotNull(), F.sha2(by_uri, 256))
        return F.when(F.col("video").isNotNull(), F.sha2(F.col("video"), 256)).otherwise(image) if video else image
    fields = [escaped_field(F.coalesce(F.col(c), F.lit(""))) for c in columns]
    return F.sha2(F.concat_ws(TEXT_FIELD_SEPARATOR, *fields), 256)


def escaped_field(field: Column) -> Column:
    """A text field escaped as `signals.hashing.escape_text_field` escapes it: plain (not regex)
    replacements of the same characters, byte for byte, so text that is not UTF-8 keeps its bytes."""
    for character, escaped in TEXT_FIELD_ESCAPES:
        field = F.replace(field, F.lit(character), F.lit(escaped))
    return field
