"""The UDF layer inside Spark: one model per Python worker, hashes that match Python's."""
from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
import pytest
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf

from jobs.backfill import build_signals
from jobs.corpus import with_image_uri
from lake import spark_io
from signals import model_cache
from signals.contracts import UTC_MICROS
from signals.hashing import image_input_hash, text_input_hash
from udfs.columns import input_hash_column, result_column
from udfs.rows import evened

pytestmark = pytest.mark.spark


def test_the_model_loads_once_per_python_worker(spark, corpus_lakehouse):
    signal = build_signals(corpus_lakehouse.settings)["text_embedding"]
    key = (signal.resource_key(), "cpu")

    @pandas_udf("string")
    def loads(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        signal.load()
        for batch in batches:
            yield pd.Series([f"{os.getpid()}:{model_cache.load_count(key)}"] * len(batch))

    frame = spark.range(0, 2000, numPartitions=16).select(loads(F.col("id").cast("string")).alias("seen"))
    seen = {row.seen for row in frame.distinct().collect()}
    pids = {s.split(":")[0] for s in seen}
    assert {s.split(":")[1] for s in seen} == {"1"}  # never a second load in any worker
    assert len(pids) < 16 / 2  # workers are reused across the 16 tasks: the model is not per task


def test_the_udf_keeps_row_order_across_arrow_and_model_batches(spark, corpus_lakehouse):
    signal = build_signals(corpus_lakehouse.settings)["text_embedding"]  # model batch 9, Arrow batch 7
    corpus = spark_io.read_spark(spark, corpus_lakehouse.root).select("content_id", "title", "description")
    rows = corpus.select("content_id", "title", "description", result_column(signal).alias("r")).collect()
    direct = signal.load()
    for row in rows[:20]:
        try:
            expected = direct.compute([direct.prepare(row.asDict())])[0]
        except ValueError:
            assert row.r.status == "error"
            continue
        assert row.r.status == "ok"
        assert max(abs(a - b) for a, b in zip(row.r.vector, expected)) <= 1e-5, row.content_id


def test_spark_input_hashes_equal_the_python_definition(spark, corpus_lakehouse):
    signals = build_signals(corpus_lakehouse.settings)
    corpus = with_image_uri(spark_io.read_spark(spark, corpus_lakehouse.root))
    rows = corpus.select(
        "image",
        "title",
        "description",
        input_hash_column(signals["image_embedding"]).alias("image_hash"),
        input_hash_column(signals["text_embedding"]).alias("text_hash"),
    ).collect()
    assert len(rows) > 0
    for row in rows:
        assert row.image_hash == image_input_hash(row.image)
        assert row.text_hash == text_input_hash(row.title, row.description)


def test_spark_input_hashes_of_images_by_uri_equal_the_python_definition(spark, corpus_lakehouse):
    """Inline bytes win over a URI; a URI is hashed with updated_at (to the microsecond, before
    the epoch too, null as empty); neither is a null hash."""
    signal = build_signals(corpus_lakehouse.settings)["image_embedding"]
    times = [None, datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC), None, datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), None]
    table = pa.table({
        "image": pa.array([b"\xff\xd8bytes", b"\xff\xd8bytes", None, None, None], pa.binary()),
        "image_uri": pa.array([None, "http://images.test/a.jpg", "s3://images/caf\u00e9.jpg", "file:///a b.jpg", None], pa.string()),
        "updated_at": pa.array(times, UTC_MICROS),
    })
    hashes = [r.h for r in spark.createDataFrame(table).select(input_hash_column(signal).alias("h")).collect()]
    assert hashes == [image_input_hash(*row.values()) for row in table.to_pylist()]
    assert hashes[0] == hashes[1] and hashes[-1] is None and len(set(hashes[:4])) == 3


def test_small_jobs_are_spread_over_the_slots_and_tiny_ones_coalesced(spark):
    days = spark.range(0, 400, numPartitions=1).select(
        F.col("id").cast("string").alias("content_id"), F.concat(F.lit("2026-11-0"), (F.col("id") % 7 + 1).cast("string")).alias("ds"))
    spread = evened(days, partitions_per_slot=4, rows=400, rows_per_partition=32)
    assert spread.rdd.getNumPartitions() == 2 * 4  # local[2]: two slots
    assert sorted(r.content_id for r in spread.collect()) == sorted(r.content_id for r in days.collect())  # nothing lost
    assert evened(days, 4, rows=60, rows_per_partition=32).rdd.getNumPartitions() == 2  # never under a model batch each
    scattered = days.repartition(6)
    assert evened(scattered, 4, rows=10, rows_per_partition=32).rdd.getNumPartitions() == 1  # a refresh's few new items
    assert evened(scattered, 0, rows=10, rows_per_partition=32) is scattered  # 0: the scan's partitions, always
    many = days.repartition(12)
    assert evened(many, 4, rows=4000, rows_per_partition=32) is many  # enough partitions: no shuffle
