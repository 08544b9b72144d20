"""Spark side of Delta I/O: read a table's snapshot into Spark, and have the executors write a
table's data files (lake.file_writer), whose metadata comes back for lake.delta_io to commit.

Sources that ask for different task resources (stage-level scheduling) are written by separate
Spark actions: a stage runs with one resource profile, and a union of differently placed
sources would be one stage (docs/design.md, Per-signal resources)."""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlparse

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs as pafs
from pyspark import TaskContext
from pyspark.errors import SparkRuntimeException
from pyspark.resource import ResourceProfile, ResourceProfileBuilder, TaskResourceRequests
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from conf.settings import UsageError
from lake.delta_io import DataFile, ensure_table, filesystem_of, parquet_dataset, snapshot
from lake.file_writer import FILE_METADATA_SCHEMA, Summarise, make_file_writer, make_tables_writer
from signals.contracts import TableContract


def read_spark(
    spark: SparkSession, root: str, version: int | None = None, partitions: Any = None, only: set[str] | None = None,
    file_column: str | None = None,
) -> DataFrame:
    """The table's rows as a Spark DataFrame, reading only the files of the snapshot (and of
    those, with `only`, the files whose unescaped relative paths it names); with `file_column`,
    each row's file URI in that column.

    Partition columns come from the hive-style folders, typed by the Delta schema, so Spark sees
    the same columns delta-rs does.
    """
    table = snapshot(root, version)
    arrow_schema = pa.schema(table.schema().to_arrow())
    uris = table.file_uris(partitions)
    if only is not None:
        uris = [u for u in uris if stored_path(table.table_uri, u) in only]
    partition_columns = table.metadata().partition_columns
    return read_parquet(spark, table.table_uri, uris, arrow_schema, partition_columns, file_column)


def read_parquet(
    spark: SparkSession, base: str, uris: Sequence[str], schema: pa.Schema, partition_columns: Sequence[str] = (),
    file_column: str | None = None,
) -> DataFrame:
    """Parquet files under `base` (hive-style partition folders) as a DataFrame of `schema`;
    `base` percent-encoded and `uris` under it, as delta-rs gives them.

    Spark's own reader where Hadoop can open the files (a local or cluster file system), given
    the root unescaped (Hadoop takes a path as written: an escaped space was read as `%20`) and
    the rest as stored (`hadoop_path`); on an
    object store (s3://, ...), for which this job ships no Hadoop connector, the executors read
    the files with pyarrow, which takes the store's settings from the standard environment
    (docs/design.md, The lakehouse on object storage). Files in a partition folder without a
    value (`ds=`, where delta-rs writes an empty string and logs null) or whose value is not
    ASCII are read with pyarrow too: Spark's partition discovery refuses the whole read
    (EMPTY_PARTITION_COLUMN_VALUE), or decodes delta-rs's escape of each UTF-8 byte as a character
    of its own (`ds=2026-11-2%C3%A9` read as `2026-11-2Ã©`).
    """
    spark_schema = from_arrow_schema(schema)
    if file_column is not None:
        spark_schema = spark_schema.add(file_column, "string")
    if not uris:
        return spark.createDataFrame([], spark_schema)
    refused = {u for u in uris if not hadoop_reads(base) or _misread_by_spark(stored_path(base, u))}  # by Spark's reader
    spark_reads, pyarrow_reads = [u for u in uris if u not in refused], [u for u in uris if u in refused]
    frames = []
    if spark_reads:
        with listed_on_driver(spark):
            frame = spark.read.schema(from_arrow_schema(schema)).option("basePath", unquote(base)).parquet(
                *(hadoop_path(base, u) for u in spark_reads)).select(*schema.names)
        frames.append(frame.withColumn(file_column, F.input_file_name()) if file_column else frame)
    if pyarrow_reads:
        files = spark.sparkContext.parallelize([(u,) for u in pyarrow_reads], len(pyarrow_reads)).toDF("uri string")
        frames.append(files.mapInArrow(_parquet_reader(base, schema, tuple(partition_columns), file_column), spark_schema))
    return functools.reduce(DataFrame.unionByName, frames)


def hadoop_path(base: str, uri: str) -> str:
    """A data file's path on disk, from delta-rs's URI of it under the table root `base`: the root
    unescaped (delta-rs escapes it: a root with a space is `d%20x`), the rest as stored
    (`stored_path`: a partition folder `ds=x%20y` holds the escape Delta writes into its name)."""
    relative = stored_path(base, uri)
    return f"{unquote(uri.removesuffix(relative))}{relative}"


SHOWN_FILES = 5  # a refusal names this many files, then counts the rest
PARALLEL_LISTING = "spark.sql.sources.parallelPartitionDiscovery.threshold"  # more paths than this: Spark lists them with a job


@contextmanager
def listed_on_driver(spark: SparkSession) -> Iterator[None]:
    """Within the block, Spark looks up the paths a read names on the driver instead of starting
    a job to list them: a snapshot's files are known from its log, and a listing job of a task
    per file cost a refresh more than the lookups it spreads (docs/design.md, Refresh)."""
    threshold = spark.conf.get(PARALLEL_LISTING)
    spark.conf.set(PARALLEL_LISTING, str(2**31 - 1))
    try:
        yield
    finally:
        spark.conf.set(PARALLEL_LISTING, threshold)


def read_parquet_dataset(spark: SparkSession, location: str, file_column: str | None = None) -> DataFrame:
    """A parquet dataset (a folder of files, hive-style partition folders allowed, or one file) as a
    DataFrame, in the schema of all its files together (`delta_io.parquet_dataset`). A local one
    whose partition values Spark's discovery would misread (`_misread_values`) is read as one in an
    object store is (`read_parquet`: those files with pyarrow, the others by Spark's reader)."""
    if hadoop_reads(location) and not _misread_values(location):
        try:
            frame = spark.read.option("mergeSchema", "true").parquet(location)
        except SparkRuntimeException as exc:
            if exc.getCondition() != "EMPTY_PARTITION_COLUMN_VALUE":
                raise
            raise UsageError(_without_value(location)) from None
        return frame.withColumn(file_column, F.input_file_name()) if file_column else frame
    return read_parquet(spark, *stored_parquet_dataset(location), file_column)


def _misread_values(location: str) -> bool:
    """Whether a file of the local dataset at `location` lies in a partition folder whose value is
    not ASCII, which Spark's discovery decodes byte by byte (pyarrow writes `ds=2026-11-2%C3%A9`, read
    as `2026-11-2Ã©`), in a dataset it reads at all (no folder without a value): one listing."""
    filesystem, path = filesystem_of(location)
    if filesystem.get_file_info(path).type != pafs.FileType.Directory:
        return False
    listed = filesystem.get_file_info(pafs.FileSelector(path, recursive=True))
    relative = [info.path.removeprefix(path.rstrip("/") + "/") for info in listed if info.type == pafs.FileType.File]
    return any(_non_ascii_value(r) for r in relative) and not any(_empty_partition_value(r) for r in relative)


def _without_value(location: str) -> str:
    """Why Spark cannot read the parquet dataset at `location`, and how to fix it: its files in a
    `column=` folder without a value, which Spark's partition discovery refuses (a Delta table's
    are read from its log with pyarrow instead; a plain dataset is read by Spark's discovery alone)."""
    base = filesystem_of(location)[1].rstrip("/") + "/"
    refused = sorted(r for f in parquet_dataset(location).files if _empty_partition_value(r := f.removeprefix(base)))
    folders = sorted({folder for r in refused for folder in r.split("/")[:-1] if folder.endswith("=")})
    shown = ", ".join(refused[:SHOWN_FILES]) + (f" and {len(refused) - SHOWN_FILES} more" if len(refused) > SHOWN_FILES else "")
    return (f"the parquet corpus at {location} has {len(refused)} file{'s' if len(refused) != 1 else ''} in a partition folder without a "
            f"value, which Spark cannot read: {shown}; rename each such folder "
            + " or ".join(f"`{folder}{HIVE_NULL}`" for folder in folders) + " (Hive's null) or move its files out of the corpus")


def stored_parquet_dataset(location: str) -> tuple[str, list[str], pa.Schema, list[str]]:
    """(base folder, file URIs, schema, partition columns) of a parquet dataset in an object store
    or on a local disk (a `file:` base, percent-encoded as delta-rs gives a table's), each URI the
    base and the file's path under it as stored: the partition columns are those named by the
    files' `column=value` folders under the base (a flat dataset has none, whatever pyarrow's
    discovery lists), and one file's base is its folder."""
    filesystem, path = filesystem_of(location)
    base, path = (location.rstrip("/") if "://" in location else Path(path).as_uri()), path.rstrip("/")
    if filesystem.get_file_info(path).type == pafs.FileType.File:
        base, path = base.rsplit("/", 1)[0], path.rsplit("/", 1)[0]
    dataset = parquet_dataset(location)
    relative = [f.removeprefix(f"{path}/") for f in dataset.files]
    folders = {name for r in relative for name in _hive_values(r)}
    return base, [f"{base}/{r}" for r in relative], dataset.schema, [n for n in dataset.schema.names if n in folders]


def stored_path(base: str, uri: str) -> str:
    """The path under the table root `base` of a file delta-rs lists, as stored (as
    `unquote(LiveFile.path)`): delta-rs percent-encodes the root in the URI but gives the rest as
    the folders are named, Hive-escaped (`ds=a%20b`), which unescaping again named another folder."""
    return urlparse(uri).path.split(urlparse(base).path.rstrip("/") + "/", 1)[-1]


def hadoop_reads(uri: str) -> bool:
    """Whether Spark's JVM can open files at `uri`: local paths and `file:` URIs (the job ships no
    object-store connector jars)."""
    return urlparse(uri).scheme in ("", "file")


def _parquet_reader(
    base: str, schema: pa.Schema, partition_columns: tuple[str, ...], file_column: str | None
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """An executor function: URIs of parquet files in, their rows out in `schema` (partition
    columns filled from the files' `column=value` folders), with the URI in `file_column`."""
    def read(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for uri, relative, file in _opened(base, batch.column("uri").to_pylist()):
                yield from _file_rows(file, _hive_values(relative), schema, partition_columns, file_column, uri)
    return read


def _opened(base: str, uris: Sequence[str]) -> Iterator[tuple[str, str, pq.ParquetFile]]:
    """Each of `uris` (files under `base`) as (URI, percent-encoded throughout as Spark's reader
    names a file; path relative to `base` as stored, `stored_path`; the file opened with pyarrow),
    on the executor."""
    fs, base_path = pafs.FileSystem.from_uri(base)
    for uri in uris:
        relative = stored_path(base, uri)
        yield f"{uri.removesuffix(relative)}{quote(relative, safe='/=')}", relative, pq.ParquetFile(f"{base_path.rstrip('/')}/{relative}", filesystem=fs)


def summarise_files(spark: SparkSession, root: str, only: set[str],
                    summarise: Callable[[Iterator[pa.RecordBatch]], bytes | None]) -> list[bytes]:
    """`summarise` of each file of the table's latest snapshot whose unescaped relative path is in
    `only`, given the file's rows with its partition columns: one Spark job, the files dealt to
    no more tasks than there are task slots, each read with pyarrow on an executor; files it
    gives no summary (None) are left out."""
    table = snapshot(root)
    uris = [u for u in table.file_uris() if stored_path(table.table_uri, u) in only]
    if not uris:
        return []
    base, schema, partition_columns = table.table_uri, pa.schema(table.schema().to_arrow()), tuple(table.metadata().partition_columns)

    def per_file(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        out = [summarise(_file_rows(file, _hive_values(relative), schema, partition_columns, None, uri))
               for batch in batches for uri, relative, file in _opened(base, batch.column("uri").to_pylist())]
        yield pa.RecordBatch.from_pydict({"summary": out}, schema=pa.schema([pa.field("summary", pa.binary())]))

    files = spark.sparkContext.parallelize([(u,) for u in uris], min(len(uris), spark.sparkContext.defaultParallelism)).toDF("uri string")
    return [bytes(r.summary) for r in files.mapInArrow(per_file, "summary binary").collect() if r.summary is not None]


def _file_rows(file: pq.ParquetFile, values: dict[str, str | None], schema: pa.Schema, partition_columns: tuple[str, ...],
               file_column: str | None, uri: str) -> Iterator[pa.RecordBatch]:
    """One parquet file's rows in `schema`, its partition columns set to `values`, a column the file
    lacks (a dataset's later files added it) null, with its `uri` in `file_column` where one is asked for."""
    data = [f for f in schema if f.name not in partition_columns]
    held = [f.name for f in data if f.name in file.schema_arrow.names]
    for rows in file.iter_batches(columns=held):
        columns = {f.name: rows.column(f.name).cast(f.type) if f.name in held else pa.nulls(rows.num_rows, f.type) for f in data}
        columns.update({name: pa.array([values.get(name)] * rows.num_rows, pa.string()).cast(schema.field(name).type)
                        for name in partition_columns})
        out = pa.RecordBatch.from_arrays([columns[f.name] for f in schema], schema=schema)
        yield out if file_column is None else out.append_column(file_column, pa.array([uri] * rows.num_rows, pa.string()))


HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


def _hive_values(relative: str) -> dict[str, str | None]:
    """The partition values of a file from its `column=value` folders, unescaped; null for Hive's
    null folder and for one without a value (`ds=`: delta-rs writes an empty string so, and logs null)."""
    values: dict[str, str | None] = {}
    for folder in relative.split("/")[:-1]:
        name, sep, value = folder.partition("=")
        if sep:
            values[unquote(name)] = None if value in (HIVE_NULL, "") else unquote(value)
    return values


def _empty_partition_value(relative: str) -> bool:
    """Whether a file lies in a `column=` folder without a value, which Spark's reader refuses."""
    return any(folder.endswith("=") for folder in relative.split("/")[:-1])


def _misread_by_spark(relative: str) -> bool:
    """Whether Spark's reader would refuse a file's partition folders (`_empty_partition_value`) or
    read a value other than the one stored (`_non_ascii_value`): it unescapes a folder's `%XX` byte
    by byte, each byte a character, so only an ASCII value comes back as written."""
    return _empty_partition_value(relative) or _non_ascii_value(relative)


def _non_ascii_value(relative: str) -> bool:
    """Whether a file lies in a partition folder whose value, unescaped, is not ASCII."""
    return not all(v.isascii() for v in _hive_values(relative).values() if v is not None)


TaskResources = tuple[tuple[str, float], ...]  # what each task of a stage asks for, e.g. (("cpus", 4), ("gpu", 1))


@dataclass(frozen=True)
class WriteSource:
    """Rows for a table: a frame, and the executor function that turns its Arrow batches into
    rows of the table's contract (None: the frame has the contract's columns already; for
    `write_tables_files`, (table name, rows) pairs); what each
    of its tasks asks Spark for (empty: the job's defaults, and no resource profile), and what
    says which worker ran a task (lake.file_writer.REPORT_COLUMNS)."""

    frame: DataFrame
    rows: Callable[[Iterator[pa.RecordBatch]], Iterator[Any]] | None = None
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


def write_files(sources: Sequence[WriteSource], root: str, contract: TableContract, file_prefix: str,
                summarise: Summarise | None = None) -> list[DataFile]:
    """Have the executors write the sources' rows as data files of the table; return what they
    wrote (with `summarise`, each file's summary of its rows). One Spark action per distinct task
    resources (`by_resources`: one for all sources without a profile, as on a local master); each
    task turns its rows into files in the same Python worker. Nothing is committed.
    """
    ensure_table(root, contract)
    return _written(sources, lambda source: make_file_writer(root, contract, file_prefix, _task_id, source.rows, source.report, summarise),
                    lambda source: source.frame if source.rows else source.frame.select(*contract.schema.names))


def write_tables_files(sources: Sequence[WriteSource], tables: Mapping[str, tuple[str, TableContract]], file_prefix: str,
                       summarise: Summarise | None = None) -> dict[str, list[DataFile]]:
    """Like `write_files`, for sources whose `rows` yield (table name, rows) pairs: one computation
    writing files of several tables (name -> (root, contract)); what was written, by table."""
    for root, contract in tables.values():
        ensure_table(root, contract)
    files = _written(sources, lambda source: make_tables_writer(tables, file_prefix, _task_id, source.rows, source.report, summarise),
                     lambda source: source.frame)
    return {name: [f for f in files if f.table == name] for name in tables}


def _task_id() -> str:
    """The running task's stage, partition and attempt, which name its files."""
    ctx = TaskContext.get()
    return f"s{ctx.stageId()}-p{ctx.partitionId():05d}-a{ctx.attemptNumber()}"


def _written(sources: Sequence[WriteSource], writer: Callable[[WriteSource], Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]],
             frame: Callable[[WriteSource], DataFrame]) -> list[DataFile]:
    """The files the sources' `writer`s wrote from their `frame`s: one Spark action per distinct
    task resources, with one resource profile object each."""
    files = []
    for resources, group in by_resources(sources).items():
        profile = stage_profile(resources)
        written = [frame(source).mapInArrow(writer(source), from_arrow_schema(FILE_METADATA_SCHEMA), profile=profile) for source in group]
        files += [DataFile.from_row(row.asDict()) for row in functools.reduce(lambda a, b: a.unionByName(b), written).collect()]
    return files
