"""Executor side of a Delta write: each task writes its rows as parquet data files under the
table root and returns one metadata row per file. Nothing here touches the Delta log.

Files are named by run, stage, partition and attempt, so a failed or speculative attempt never
overwrites a good file; only the metadata of successful attempts reaches the driver, which
commits exactly those (`lake.delta_io.commit_files`). Files of failed attempts are orphans that
no reader sees and `vacuum` removes.
"""
from __future__ import annotations

import functools
import json
import re
import socket
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from signals.contracts import TableContract

FILE_METADATA_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string()),
        pa.field("size", pa.int64()),
        pa.field("partition_values", pa.string()),
        pa.field("num_records", pa.int64()),
        pa.field("num_ok", pa.int64()),
        pa.field("num_items", pa.int64()),
        pa.field("stats", pa.string()),
        pa.field("modification_time", pa.int64()),
        # which task and worker wrote the file (the `report` of make_file_writer; null without one, but for
        # the host, always given: the driver tells a file written elsewhere from a vacuumed one)
        pa.field("task", pa.string()),
        pa.field("host", pa.string()),
        pa.field("pid", pa.int64()),
        pa.field("parent_pid", pa.int64()),
        pa.field("cpus", pa.int64()),
        pa.field("gpus", pa.string()),
        pa.field("device", pa.string()),
        pa.field("load_s", pa.float64()),
        # the table a file belongs to, where one task writes several (make_tables_writer; null otherwise)
        pa.field("table", pa.string()),
        # what the file's rows add to their run's statistics (a Summarise's summary; null without one)
        pa.field("summary", pa.binary()),
    ]
)
REPORT_COLUMNS = ("host", "pid", "parent_pid", "cpus", "gpus", "device", "load_s")


class RowsSummary(Protocol):
    """A running summary of the rows written to one file, made on the executor beside the file."""

    def add(self, rows: pa.Table) -> None: ...

    def to_bytes(self) -> bytes | None: ...


# a new summary for each file a writer opens, given its table (None: that table's files have none)
Summarise = Callable[[TableContract], RowsSummary | None]


SAFE_PARTITION_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def refused_partition_values(contract: TableContract, values: Mapping[str, Any]) -> dict[str, Any]:
    """The partition values `partition_path` refuses (not plain ASCII names), by column, none where
    it writes them all: a partition another writer named so cannot be rewritten (lake.upkeep leaves it)."""
    return {name: values[name] for name in contract.partition_by if not SAFE_PARTITION_VALUE.match(str(values[name] or ""))}


def partition_path(contract: TableContract, values: dict[str, str]) -> str:
    """Hive-style folder of a partition, e.g. `signal=text_embedding/model_version=1`.

    Only plain ASCII values: Spark decodes a folder's percent-encoding byte by byte, so any other
    value would be read back as a different partition: this refuses it, and the rows are not written."""
    bad = refused_partition_values(contract, values)
    if bad:
        raise ValueError(f"{contract.name}: partition values {bad} are not plain ASCII names; nothing written")
    return "/".join(f"{name}={values[name]}" for name in contract.partition_by)


def _has_range(type_: pa.DataType) -> bool:
    """Whether a column of `type_` gets a min and max in a file's Delta statistics: each type delta-rs
    reads one of (a UTC timestamp's is written in milliseconds)."""
    return (pa.types.is_string(type_) or pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_boolean(type_)
            or (pa.types.is_timestamp(type_) and type_.tz in ("UTC", "+00:00")))


def _delta_bound(value: Any) -> Any:
    """A min or max as Delta's statistics JSON holds it: a timestamp to the millisecond below it."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return value


def _row_group_statistics(schema: pa.Schema) -> list[str]:
    """The columns whose row groups get parquet statistics: not a float's, whose range leaves NaN out,
    so that pyarrow skipped a row group of NaN and 0.5 for `score != 0.5`."""
    return [f.name for f in schema if not pa.types.is_floating(f.type) and not pa.types.is_nested(f.type)]


@dataclass
class _ColumnStats:
    """Running min/max/null count of one scalar column, merged batch by batch. delta-rs reads a
    column without a min or max as one that no row of the file matches in a comparison, so every
    type it reads a range of gets one, but a float column holding NaN or an infinity, which JSON
    cannot hold (`lake.delta_io.read_arrow` reads such a file without its statistics)."""

    type: pa.DataType
    min: Any = None
    max: Any = None
    nulls: int = 0
    ranged: bool = field(init=False)  # whether the file's statistics give the column its min and max

    def __post_init__(self) -> None:
        self.ranged = _has_range(self.type)

    def update(self, column: pa.ChunkedArray | pa.Array) -> None:
        self.nulls += column.null_count
        if not self.ranged or column.null_count == len(column):
            return
        if pa.types.is_floating(self.type) and not pc.all(pc.is_finite(column)).as_py():
            self.ranged = False
            return
        bounds = pc.min_max(column).as_py()
        self.min = bounds["min"] if self.min is None else min(self.min, bounds["min"])
        self.max = bounds["max"] if self.max is None else max(self.max, bounds["max"])


@dataclass
class _OpenFile:
    relative_path: str
    writer: pq.ParquetWriter
    partition_values: dict[str, str]
    rows: int = 0
    ok: int = 0
    items: set[str] = field(default_factory=set)  # distinct keys: a labelled item has a row per label
    stats: dict[str, _ColumnStats] = field(default_factory=dict)
    summary: RowsSummary | None = None

    def write(self, table: pa.Table) -> None:
        self.writer.write_table(table)
        self.rows += table.num_rows
        if "status" in table.column_names:
            self.ok += pc.sum(pc.equal(table["status"], "ok")).as_py() or 0
        if "content_id" in table.column_names:  # the run ledger, statistics and alerts have none: rows count as items
            self.items.update(table["content_id"].to_pylist())
        for f in table.schema:
            if pa.types.is_nested(f.type) or pa.types.is_binary(f.type):
                continue
            self.stats.setdefault(f.name, _ColumnStats(f.type)).update(table[f.name])

    def stats_json(self) -> str:
        """Delta `add.stats`: row count, and min/max/null counts so readers can skip files."""
        return json.dumps(
            {
                "numRecords": self.rows,
                "minValues": {n: _delta_bound(s.min) for n, s in self.stats.items() if s.ranged and s.min is not None},
                "maxValues": {n: _delta_bound(s.max) for n, s in self.stats.items() if s.ranged and s.max is not None},
                "nullCount": {n: s.nulls for n, s in self.stats.items()},
            }
        )


Batches = Iterator[pa.RecordBatch]


# Bytes of rows a task's writer gathers before splitting them by partition and appending them
# to its files: a model batch of a few rows over several days (compute once: a task holds every
# day) was a write, a row group and a statistics pass per day it held (benchmarks/README.md).
GATHER_BYTES = 8 << 20


class _TableFiles:
    """One task's open files of one table, one per partition, and their metadata rows once closed.
    Rows are gathered up to GATHER_BYTES before they are written (`flush`)."""

    def __init__(self, table_root: str, contract: TableContract, prefix: str, summarise: Summarise | None = None) -> None:
        self.fs, self.root = pafs.FileSystem.from_uri(table_root)
        self.contract, self.prefix, self.summarise = contract, prefix, summarise
        self.data_schema = pa.schema([contract.schema.field(n) for n in contract.data_columns])
        self.files: dict[tuple[str, ...], _OpenFile] = {}
        self.gathered: list[pa.RecordBatch] = []
        self.gathered_bytes = 0

    def write(self, batch: pa.RecordBatch) -> None:
        """The batch's rows gathered, and written once GATHER_BYTES of them wait."""
        self.gathered.append(batch)
        self.gathered_bytes += batch.nbytes
        if self.gathered_bytes >= GATHER_BYTES:
            self.flush()

    def flush(self) -> None:
        """The gathered rows appended, in order, to the files of their partitions (opened on first use)."""
        if not self.gathered:
            return
        contract = self.contract
        table = pa.Table.from_batches(self.gathered)
        self.gathered, self.gathered_bytes = [], 0
        keys = pa.Table.from_arrays([table[n] for n in contract.partition_by], names=list(contract.partition_by))
        groups = keys.group_by(list(contract.partition_by)).aggregate([]).to_pylist() if contract.partition_by else [{}]
        for values in groups:  # an unpartitioned table (the run ledger) is one group
            chosen = table.filter(functools.reduce(pc.and_, [pc.equal(table[n], v) for n, v in values.items()])) if values else table
            part = chosen.select(contract.data_columns).cast(self.data_schema)
            key = tuple(values[n] for n in contract.partition_by)
            if key not in self.files:
                folder = partition_path(contract, values)
                relative = "/".join(filter(None, [folder, f"{self.prefix}-{len(self.files):04d}.parquet"]))
                self.fs.create_dir("/".join(filter(None, [self.root, folder])), recursive=True)
                writer = pq.ParquetWriter(f"{self.root}/{relative}", self.data_schema, compression="zstd", filesystem=self.fs,
                                          write_statistics=_row_group_statistics(self.data_schema))
                self.files[key] = _OpenFile(relative, writer, values, summary=self.summarise(contract) if self.summarise else None)
            self.files[key].write(part)
            if self.files[key].summary is not None:
                self.files[key].summary.add(chosen)

    def close(self, task: str, worker: dict[str, Any], table: str | None = None) -> list[dict[str, Any]]:
        """Close the files, the rows still gathered written first; their metadata rows
        (FILE_METADATA_SCHEMA), naming `table` if given."""
        self.flush()
        written = []
        for f in self.files.values():
            f.writer.close()
            info = self.fs.get_file_info(f"{self.root}/{f.relative_path}")
            written.append(
                {
                    "path": f.relative_path,
                    "size": info.size,
                    "partition_values": json.dumps(f.partition_values),
                    "num_records": f.rows,
                    "num_ok": f.ok,
                    "num_items": len(f.items) if "content_id" in self.contract.schema.names else f.rows,
                    "stats": f.stats_json(),
                    "modification_time": info.mtime_ns // 1_000_000,
                    "task": task,
                    **{name: worker.get(name) for name in REPORT_COLUMNS},
                    "host": worker.get("host") or socket.gethostname(),
                    "table": table,
                    "summary": f.summary.to_bytes() if f.summary is not None else None,
                }
            )
        return written


def make_file_writer(
    table_root: str, contract: TableContract, file_prefix: str, task_id: Callable[[], str],
    rows: Callable[[Batches], Batches] | None = None, report: Callable[[], dict[str, Any]] | None = None,
    summarise: Summarise | None = None,
) -> Callable[[Batches], Batches]:
    """A `mapInArrow` function writing rows of `contract` under `table_root`, one file per
    partition; `rows`, if given, makes those rows from the task's input batches first (in the
    same Python worker: a signal's model, say), `report`, asked once they are all written,
    says which worker made them (`REPORT_COLUMNS`), and `summarise` gives each file a summary of
    its rows (`summary`)."""

    def write(batches: Batches) -> Batches:
        task = task_id()
        files = _TableFiles(table_root, contract, f"{file_prefix}-{task}-{uuid.uuid4().hex[:8]}", summarise)
        for batch in rows(batches) if rows else batches:
            files.write(batch)
        files.flush()  # the files exist before the report is asked for
        worker = report() if report and files.files else {}
        yield pa.RecordBatch.from_pylist(files.close(task, worker), schema=FILE_METADATA_SCHEMA)

    return write


def make_tables_writer(
    tables: Mapping[str, tuple[str, TableContract]], file_prefix: str, task_id: Callable[[], str],
    rows: Callable[[Batches], Iterator[tuple[str, pa.RecordBatch]]], report: Callable[[], dict[str, Any]] | None = None,
    summarise: Summarise | None = None,
) -> Callable[[Batches], Batches]:
    """A `mapInArrow` function writing rows of several tables (name -> (root, contract)) from one
    computation: `rows` yields (table name, rows of that table) from the task's input batches, so
    work that feeds several tables (a video's one decode) is done once; each file's metadata row
    names its table in `table`; `summarise` as for make_file_writer."""

    def write(batches: Batches) -> Batches:
        task = task_id()
        prefix = f"{file_prefix}-{task}-{uuid.uuid4().hex[:8]}"
        files = {name: _TableFiles(root, contract, prefix, summarise) for name, (root, contract) in tables.items()}
        for name, batch in rows(batches):
            files[name].write(batch)
        for f in files.values():
            f.flush()  # the files exist before the report is asked for
        worker = report() if report and any(f.files for f in files.values()) else {}
        yield pa.RecordBatch.from_pylist([row for name, f in files.items() for row in f.close(task, worker, name)],
                                         schema=FILE_METADATA_SCHEMA)

    return write
