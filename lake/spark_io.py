"""Spark side of Delta I/O: read a table's snapshot into Spark, and have the executors write a
table's data files (lake.file_writer), whose metadata comes back for lake.delta_io to commit.

Sources that ask for different task resources (stage-level scheduling) are written by separate
Spark actions: a stage runs with one resource profile, and a union of differently placed
sources would be one stage (docs/design.md, Per-signal resources)."""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from pyspark import TaskContext
from pyspark.resource import ResourceProfile, ResourceProfileBuilder, TaskResourceRequests
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


TaskResources = tuple[tuple[str, float], ...]  # what each task of a stage asks for, e.g. (("cpus", 4), ("gpu", 1))


@dataclass(frozen=True)
class WriteSource:
    """Rows for a table: a frame, and the executor function that turns its Arrow batches into
    rows of the table's contract (None: the frame has the contract's columns already); what each
    of its tasks asks Spark for (empty: the job's defaults, and no resource profile), and what
    says which worker ran a task (lake.file_writer.REPORT_COLUMNS)."""

    frame: DataFrame
    rows: Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]] | None = None
    resources: TaskResources = ()
    report: Callable[[], dict[str, Any]] | None = None


def by_resources(sources: Sequence[WriteSource]) -> dict[TaskResources, list[WriteSource]]:
    """The sources grouped by the task resources they ask for, in order of first appearance:
    each group is one stage, with one resource profile."""
    groups: dict[TaskResources, list[WriteSource]] = {}
    for source in sources:
        groups.setdefault(source.resources, []).append(source)
    return groups


def stage_profile(resources: TaskResources) -> ResourceProfile | None:
    """The task resource profile of a stage whose tasks ask for `resources` (None: none asked).
    One profile object per stage: Spark refuses a stage whose RDDs carry two profiles, even equal ones."""
    if not resources:
        return None
    requests = TaskResourceRequests()
    for name, amount in resources:
        requests = requests.cpus(int(amount)) if name == "cpus" else requests.resource(name, amount)
    return ResourceProfileBuilder().require(requests).build


def write_files(sources: Sequence[WriteSource], root: str, contract: TableContract, file_prefix: str) -> list[DataFile]:
    """Have the executors write the sources' rows as data files of the table; return what they
    wrote. One Spark action per distinct task resources (`by_resources`: one for all sources
    without a profile, as on a local master); each task turns its rows into files in the same
    Python worker. Nothing is committed.
    """
    def task_id() -> str:
        ctx = TaskContext.get()
        return f"s{ctx.stageId()}-p{ctx.partitionId():05d}-a{ctx.attemptNumber()}"

    ensure_table(root, contract)
    files = []
    for resources, group in by_resources(sources).items():
        profile = stage_profile(resources)
        written = [
            (source.frame if source.rows else source.frame.select(*contract.schema.names)).mapInArrow(
                make_file_writer(root, contract, file_prefix, task_id, source.rows, source.report),
                from_arrow_schema(FILE_METADATA_SCHEMA), profile=profile,
            )
            for source in group
        ]
        files += [DataFile.from_row(row.asDict()) for row in functools.reduce(lambda a, b: a.unionByName(b), written).collect()]
    return files
