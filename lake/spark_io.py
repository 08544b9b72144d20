"""Spark side of Delta I/O: read a table's snapshot into Spark, and have the executors write a
table's data files (lake.file_writer), whose metadata comes back for lake.delta_io to commit."""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from pyspark import TaskContext
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import from_arrow_schema

from lake.delta_io import DataFile, ensure_table, relative_path, snapshot
from lake.file_writer import FILE_METADATA_SCHEMA, make_file_writer
from signals.contracts import TableContract


def read_spark(
    spark: SparkSession, root: str, version: int | None = None, partitions: Any = None, only: set[str] | None = None
) -> DataFrame:
    """The table's rows as a Spark DataFrame, reading only the files of the snapshot (and of
    those, with `only`, the files whose unescaped relative paths it names).

    Partition columns come back from the hive-style folders (`basePath`), typed by the Delta
    schema, so Spark sees the same columns delta-rs does.
    """
    table = snapshot(root, version)
    arrow_schema = pa.schema(table.schema().to_arrow())
    spark_schema = from_arrow_schema(arrow_schema)
    uris = table.file_uris(partitions)
    if only is not None:
        uris = [u for u in uris if relative_path(root, u) in only]
    if not uris:
        return spark.createDataFrame([], spark_schema)
    frame = spark.read.schema(spark_schema).option("basePath", table.table_uri).parquet(*uris)
    return frame.select(*arrow_schema.names)


@dataclass(frozen=True)
class WriteSource:
    """Rows for a table: a frame, and the executor function that turns its Arrow batches into
    rows of the table's contract (None: the frame has the contract's columns already)."""

    frame: DataFrame
    rows: Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]] | None = None


def write_files(sources: Sequence[WriteSource], root: str, contract: TableContract, file_prefix: str) -> list[DataFile]:
    """Have the executors write the sources' rows as data files of the table; return what they
    wrote. One Spark action; each task turns its rows into files in the same Python worker.
    Nothing is committed.
    """
    def task_id() -> str:
        ctx = TaskContext.get()
        return f"s{ctx.stageId()}-p{ctx.partitionId():05d}-a{ctx.attemptNumber()}"

    ensure_table(root, contract)
    written = [
        (source.frame if source.rows else source.frame.select(*contract.schema.names)).mapInArrow(
            make_file_writer(root, contract, file_prefix, task_id, source.rows), from_arrow_schema(FILE_METADATA_SCHEMA)
        )
        for source in sources
    ]
    return [DataFile.from_row(row.asDict()) for row in functools.reduce(lambda a, b: a.unionByName(b), written).collect()]
