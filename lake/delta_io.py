"""Driver side of Delta I/O with delta-rs: create tables, commit executor-written files, read
through the log. No Spark here (lake.spark_io has the Spark reads and writes).

Spark computes and delta-rs commits (docs/design.md): the files that successful tasks wrote
are committed here in ONE transaction, together with the removal of the slice they replace,
and tagged with an application transaction id so a repeated commit of the same work can be
recognised. Every read lists files from a Delta snapshot, never from the folder, because the
folder also holds files that were replaced or never committed.
"""
from __future__ import annotations

import functools
import json
import operator
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable, Field, PostCommitHookProperties
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.transaction import AddAction, CommitProperties, RemoveAction, Transaction

from conf.settings import UsageError
from signals.contracts import TableContract

# What a lakehouse must be on a cluster, said where a run finds it is not (here, and jobs.failures)
SHARED_STORAGE = ("the lakehouse must be storage the driver and every executor share (a shared folder mounted at the same path, "
                  "s3://, hdfs://), not a folder of each machine")
CLOCK_SKEW_MS = 10 * 60_000  # executors' clocks (their files' times) against the driver's (its commits'): a vacuum is looked for this much earlier


@dataclass(frozen=True)
class DataFile:
    """A parquet file a task wrote under the table root, as reported back to the driver."""

    path: str
    size: int
    partition_values: dict[str, str]
    num_records: int
    num_ok: int
    num_items: int
    stats: str
    modification_time: int
    # the task and worker that wrote it (lake.file_writer.REPORT_COLUMNS; None where not reported)
    task: str | None = None
    host: str | None = None
    pid: int | None = None
    parent_pid: int | None = None
    cpus: int | None = None
    gpus: str | None = None
    device: str | None = None
    load_s: float | None = None
    table: str | None = None  # the table it belongs to, where one task wrote several (lake.file_writer.make_tables_writer)
    summary: bytes | None = None  # what its rows add to their run's statistics (lake.file_writer.Summarise)

    @property
    def days(self) -> Days:
        """The first and last day of its rows."""
        stats = json.loads(self.stats or "{}")
        return day_range(self.partition_values, stats.get("minValues", {}), stats.get("maxValues", {}))

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> DataFile:
        summary = row.get("summary")
        return cls(**{**row, "partition_values": json.loads(row["partition_values"]), "summary": bytes(summary) if summary is not None else None})


def ensure_table(root: str, contract: TableContract) -> DeltaTable:
    """Open the table at `root`, creating it empty with the contract's schema if it is new, and
    adding the contract's newer nullable columns to a table made under an older contract (its
    rows read them as null), so files written under the current contract keep them."""
    if not DeltaTable.is_deltatable(root):
        DeltaTable.create(
            root, schema=contract.schema, partition_by=list(contract.partition_by) or None, mode="ignore", name=contract.name
        )
    table = DeltaTable(root)
    laid_out = table.metadata().partition_columns
    if laid_out != list(contract.partition_by):
        raise UsageError(f"{root} is partitioned by {laid_out}, an older layout than the {contract.name} contract's {list(contract.partition_by)}: "
                         "lay it out again with `content-signals maintain`")
    missing = _missing_fields(table, contract)
    if missing:
        try:
            table.alter.add_columns([Field.from_arrow(field) for field in missing])
        except DeltaError:
            pass  # another run added them first; anything else is still missing below
        table = DeltaTable(root)
        still = _missing_fields(table, contract)
        if still:
            raise RuntimeError(f"{root}: the table lacks the columns {[f.name for f in still]} of the {contract.name} contract")
    return table


def _missing_fields(table: DeltaTable, contract: TableContract) -> list[pa.Field]:
    """The contract's columns the table does not have; a missing column that may not be null cannot be added."""
    present = set(table.schema().to_arrow().names)
    missing = [field for field in contract.schema if field.name not in present]
    required = [field.name for field in missing if not field.nullable]
    if required:
        raise RuntimeError(f"{table.table_uri}: the table lacks the required columns {required} of the {contract.name} contract; "
                           "it was made under an older contract: rebuild it (a backfill into a new lakehouse)")
    return missing


def committed(root: str, app_id: str) -> bool:
    """Whether a commit tagged with application transaction `app_id` is already in the log."""
    return DeltaTable.is_deltatable(root) and DeltaTable(root).transaction_version(app_id) is not None


DAY = "ds"  # the corpus day of a row: a partition column of day-partitioned tables, in the files' statistics of the others
Days = tuple[str, str] | None  # a file's first and last day (None: not known, any day)


def day_range(partition_values: Mapping[str, str | None], min_values: Mapping[str, Any], max_values: Mapping[str, Any]) -> Days:
    """The first and last day of a file's rows: its day partition's where the table has one, else its
    statistics' (None where it has neither: any day)."""
    if DAY in partition_values:
        return (partition_values[DAY], partition_values[DAY]) if partition_values[DAY] is not None else None
    first, last = min_values.get(DAY), max_values.get(DAY)
    return (first, last) if first is not None and last is not None else None


@dataclass(frozen=True)
class Slice:
    """What a commit adds or removes rows of: a partition, and the days of the rows (None: any day)."""

    partition: tuple
    days: Days

    def __str__(self) -> str:
        return f"{'/'.join(map(str, self.partition))}, days {self.days[0]}..{self.days[1]}" if self.days else '/'.join(map(str, self.partition))

    def meets(self, other: Slice) -> bool:
        """Whether the two may hold rows of one item's day: the same partition and overlapping days."""
        if self.partition != other.partition:
            return False
        return self.days is None or other.days is None or (self.days[0] <= other.days[1] and other.days[0] <= self.days[1])


@dataclass(frozen=True)
class LiveFile:
    """A file in a snapshot: its log path (as the log spells it), partition values and the days of its rows."""

    path: str
    size: int
    partition_values: dict[str, str | None]
    num_records: int
    days: Days = None


class CommitConflict(RuntimeError):
    """Another run changed the slices this run read, after it read them; re-run to include them."""


def live_files(root: str, version: int | None = None) -> list[LiveFile]:
    """The data files of the snapshot at `version` (latest if None), with the partition values
    of the table's own partition columns (a table someone else owns has its own)."""
    return [_live_file(a) for a in pa.table(snapshot(root, version).get_add_actions(flatten=True)).to_pylist()]


def _live_file(action: dict[str, Any]) -> LiveFile:
    """A snapshot's flattened add action as a LiveFile."""
    partition_values = {k.removeprefix("partition."): v for k, v in action.items() if k.startswith("partition.")}
    days = day_range(partition_values, {DAY: action.get(f"min.{DAY}")}, {DAY: action.get(f"max.{DAY}")})
    return LiveFile(action["path"], action["size_bytes"], partition_values, action["num_records"] or 0, days)


def files_with_errors(root: str, version: int | None = None) -> set[str]:
    """Unescaped relative paths of the snapshot's files that may hold error rows: by their
    statistics, fewer nulls in `error` than rows (or no statistics)."""
    actions = pa.table(snapshot(root, version).get_add_actions(flatten=True)).to_pylist()
    return {unquote(a["path"]) for a in actions if a.get("null_count.error") is None or a["null_count.error"] < (a["num_records"] or 0)}


def files_of_run(root: str, run_id: str, version: int | None = None) -> list[LiveFile]:
    """The snapshot's files that may hold rows of `run_id`: by their statistics, those whose
    `run_id` range holds it (or that have no statistics)."""
    return files_of_runs(root, [run_id], version)


def files_of_runs(root: str, run_ids: Sequence[str], version: int | None = None) -> list[LiveFile]:
    """`files_of_run` of several runs, from one read of the snapshot's files."""
    actions = pa.table(snapshot(root, version).get_add_actions(flatten=True)).to_pylist()
    return [_live_file(a) for a in actions if a.get("min.run_id") is None or a.get("max.run_id") is None
            or any(a["min.run_id"] <= run_id <= a["max.run_id"] for run_id in run_ids)]


def rows_per_partition(root: str, columns: Sequence[str], version: int | None = None) -> dict[tuple[str | None, ...], int] | None:
    """Rows per value of the partition `columns`, added up from the snapshot's add actions (their
    row counts) without opening a data file: a count the log already holds. None when some file
    has no row count in its statistics, or when the table is not partitioned by `columns` (another writer's)."""
    table = snapshot(root, version)
    if not set(columns) <= set(table.metadata().partition_columns):
        return None
    actions = pa.table(table.get_add_actions(flatten=True)).to_pylist()
    if any(a["num_records"] is None for a in actions):
        return None
    counts: dict[tuple[str | None, ...], int] = {}
    for a in actions:
        key = tuple(a[f"partition.{c}"] for c in columns)
        counts[key] = counts.get(key, 0) + a["num_records"]
    return counts


def changed_files(root: str, since: int, version: int) -> tuple[list[LiveFile], list[LiveFile]]:
    """(added, removed): the files live at `version` and not at `since`, and the other way round.
    Every row that changed between the two versions is in one of them (Delta rewrites a file to
    change a row), as long as the table does not use deletion vectors (see `has_deletion_vectors`)."""
    before = {f.path: f for f in live_files(root, since)}
    after = {f.path: f for f in live_files(root, version)}
    return [after[p] for p in after.keys() - before.keys()], [before[p] for p in before.keys() - after.keys()]


def removed_by(root: str, version: int) -> list[LiveFile]:
    """The files the commit of `version` removed, as they were live before it: their paths read from
    its log entry alone (one small read, for a commit that removed none), their days from the
    snapshot before it, any day where that snapshot can no longer be loaded (its log expired)."""
    filesystem, base = filesystem_of(root)
    with filesystem.open_input_stream(f"{base}/_delta_log/{version:020d}.json") as stream:
        actions = [json.loads(line) for line in stream.read().decode().splitlines() if line.strip()]
    removes = [a["remove"] for a in actions if "remove" in a]
    if not removes:
        return []
    try:
        before = {unquote(f.path): f for f in live_files(root, version - 1)}
    except DeltaError:
        before = {}
    return [before.get(unquote(r["path"])) or LiveFile(r["path"], r.get("size") or 0, r.get("partitionValues") or {}, 0) for r in removes]


def has_deletion_vectors(root: str, version: int | None = None) -> bool:
    """Whether the table (at `version`) may delete rows by marking them in a deletion vector, leaving the file in place."""
    return "deletionVectors" in (snapshot(root, version).protocol().reader_features or [])


def maps_columns(root: str, version: int | None = None) -> bool:
    """Whether the table (at `version`) names its files' columns otherwise than its schema does
    (`delta.columnMapping.mode`): reading a file's columns by their names gives nulls."""
    return snapshot(root, version).metadata().configuration.get("delta.columnMapping.mode", "none") != "none"


def parquet_dataset(location: str) -> pads.FileSystemDataset:
    """A parquet dataset (a folder of files, hive-style partition folders allowed, or one file)
    in the schema of all its files together: a column only its later files have (one its writer
    added) was left out by the first file's schema, and read as null in every row."""
    filesystem, base = filesystem_of(location)
    found = pads.dataset(base, filesystem=filesystem, format="parquet", partitioning=pads.HivePartitioning.discover(infer_dictionary=False))
    try:
        return found.replace_schema(pa.unify_schemas([found.schema, *(f.physical_schema for f in found.get_fragments())]))
    except (pa.ArrowTypeError, pa.ArrowInvalid) as exc:
        raise UsageError(f"the parquet files at {location} disagree on a column's type: {str(exc).splitlines()[0]}") from None


def filesystem_of(root: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem holding `root` (a URI, or a local path, relative ones included) and the path in it."""
    return pafs.FileSystem.from_uri(root if "://" in root else str(Path(root).resolve()))


def absent(root: str, paths: Sequence[str]) -> list[str]:
    """Those of `paths` (unescaped, relative to the table root) that are not in storage, asked in one call."""
    filesystem, base = filesystem_of(root)
    infos = filesystem.get_file_info([f"{base}/{p}" for p in paths])
    return [p for p, info in zip(paths, infos) if info.type == pafs.FileType.NotFound]


def all_exist(root: str, files: Sequence[LiveFile]) -> bool:
    """Whether the data files are still in storage (a vacuum deletes the files of old versions)."""
    return not absent(root, [unquote(f.path) for f in files])


def slices(contract: TableContract, files: Sequence[DataFile | LiveFile]) -> set[Slice]:
    """The slices the files hold rows of."""
    return {Slice(tuple(f.partition_values[n] for n in contract.partition_by), f.days) for f in files}


def _slices_changed_since(root: str, contract: TableContract, read_version: int, version: int) -> set[Slice]:
    """The slices of the files added or removed by commits after `read_version`."""
    added, removed = changed_files(root, read_version, version)
    return slices(contract, [*added, *removed])


KEEP_LOG = PostCommitHookProperties(cleanup_expired_logs=False)  # maintain's commits: the log's expiry is its own (lake.upkeep.expire_log)


def commit_files(
    root: str,
    contract: TableContract,
    files: Sequence[DataFile],
    app_id: str,
    metadata: Mapping[str, str],
    remove: Callable[[LiveFile], bool] | None = None,
    read_version: int | None = None,
    max_attempts: int = 8,
    data_change: bool = True,
    keep_log: bool = False,
) -> int | None:
    """Commit `files` in one transaction, together with the removal of every live file that
    `remove` selects (a slice replacement, or the rewrite of files holding stale rows).

    Optimistic concurrency at the level of partitions: if commits after `read_version` (the
    version the run read) added or removed files in a partition this commit touches (where it
    adds files, or removes files it selects now or selected at `read_version`: a file that a
    compaction moved elsewhere meanwhile still counts), raise CommitConflict; commits to other
    partitions are fine and the commit is retried on top of them. A commit whose `app_id` is
    already in the log is not made twice, and one whose data files are no longer all in storage
    is not made at all: CommitConflict where a vacuum with a retention shorter than the run deleted
    them, UsageError where other machines wrote them to storage the driver does not see.
    `data_change=False` marks a commit that only moves rows between files (a compaction); `keep_log`
    one after which delta-rs expires no log entry, whatever the table says (maintain's: `KEEP_LOG`).
    Returns the version: None only where `app_id`'s commit was in the log already and its entry is
    gone (`commit_of`).
    """
    return commit_files_made(root, contract, files, app_id, metadata, remove=remove, read_version=read_version, max_attempts=max_attempts,
                             data_change=data_change, keep_log=keep_log)[0]


def commit_files_made(
    root: str,
    contract: TableContract,
    files: Sequence[DataFile],
    app_id: str,
    metadata: Mapping[str, str],
    remove: Callable[[LiveFile], bool] | None = None,
    read_version: int | None = None,
    max_attempts: int = 8,
    data_change: bool = True,
    keep_log: bool = False,
) -> tuple[int | None, bool]:
    """`commit_files`, and whether this call made the commit: not where the log held `app_id`'s
    already (another process's with the same run id, whose files are not `files`; its version None
    where its log entry was cleaned up since, as in a retry long after a run killed between its tables' commits)."""
    touched = slices(contract, files)
    if read_version is not None and remove is not None:
        touched |= slices(contract, [f for f in live_files(root, read_version) if remove(f)])
    for _ in range(max_attempts):
        table = ensure_table(root, contract)
        if table.transaction_version(app_id) is not None:
            return version_of_commit(root, app_id), False
        gone = absent(root, [f.path for f in files])
        if gone:
            raise _gone_before_commit(root, files, gone)
        live = live_files(root, table.version())
        removed = [f for f in live if remove is not None and remove(f)]
        mine = touched | slices(contract, removed)
        if read_version is not None:
            theirs = _slices_changed_since(root, contract, read_version, table.version())
            clash = sorted({str(m) for m in mine if any(m.meets(t) for t in theirs)})
            if clash:
                raise CommitConflict(
                    f"{root} changed in {len(clash)} of this run's slices (e.g. {clash[0]}) after version "
                    f"{read_version}, which this run read; nothing was committed. Re-run to include those changes."
                )
        now_ms = int(time.time() * 1000)
        # the log's paths are percent-encoded; delta-rs encodes a RemoveAction's path again
        removes = [RemoveAction(unquote(f.path), data_change, now_ms, f.size, f.partition_values) for f in removed]
        adds = [AddAction(f.path, f.size, f.partition_values, f.modification_time, data_change, f.stats) for f in files]
        try:
            table.create_write_transaction(
                [*adds, *removes],
                mode="append",
                schema=contract.schema,
                partition_by=list(contract.partition_by) or None,
                commit_properties=CommitProperties(
                    custom_metadata={**metadata, "app_id": app_id},
                    app_transactions=[Transaction(app_id, 1, now_ms)],  # dated: a table's app id retention expires it by this
                    max_commit_retries=0,  # a concurrent commit comes back here, to be checked above
                ),
                post_commithook_properties=KEEP_LOG if keep_log else None,
            )
        except CommitFailedError:
            continue
        return version_of_commit(root, app_id), True
    raise CommitConflict(f"{root}: gave up after {max_attempts} attempts lost to concurrent commits")


def _gone_before_commit(root: str, files: Sequence[DataFile], gone: Sequence[str]) -> Exception:
    """Why data files the tasks reported are not in storage at their commit: written on other
    machines with no vacuum since, the driver does not see the storage they wrote to (a lakehouse
    path that is a folder of each machine: a usage error, a retry writes them there again); else
    a vacuum with a retention shorter than the run deleted them (a conflict: a retry succeeds)."""
    gone_paths = set(gone)
    missing = [f for f in files if f.path in gone_paths]
    elsewhere = sorted({f.host for f in missing if f.host is not None} - {socket.gethostname()})
    if elsewhere and not _vacuumed_since(root, min(f.modification_time for f in missing) - CLOCK_SKEW_MS):
        return UsageError(f"{len(gone)} of this run's {len(files)} data files under {root} are not there for the driver (e.g. {gone[0]}, "
                          f"written on {elsewhere[0]}), and no vacuum ran since: {SHARED_STORAGE}. Nothing was committed.")
    return CommitConflict(f"{len(gone)} of this run's {len(files)} data files under {root} were deleted before its commit (e.g. {gone[0]}): "
                          "a vacuum with a retention shorter than the run (maintain.min_retention_hours) removed them; nothing was "
                          "committed. Re-run.")


def _vacuumed_since(root: str, ms: int) -> bool:
    """Whether the table's log holds a vacuum's commit made at or after `ms` (epoch milliseconds)."""
    for entry in newest_commits(root):
        if entry.get("timestamp", 0) < ms:
            return False
        if str(entry.get("operation", "")).startswith("VACUUM"):
            return True
    return False


def replace_run_rows(root: str, contract: TableContract, rows: pa.Table, run_id: str, metadata: Mapping[str, str],
                     max_attempts: int = 8) -> int:
    """Commit rows made on the driver (statistics, verdicts: small) in place of the rows the table
    held for `run_id`, in one transaction: done again, it replaces them and never duplicates."""
    return replace_rows(root, contract, rows, run_id, [run_id], pc.field("run_id") == run_id, metadata, max_attempts)


def replace_rows(root: str, contract: TableContract, rows: pa.Table, run_id: str, runs: Sequence[str], dropped: pc.Expression,
                 metadata: Mapping[str, str], max_attempts: int = 8, app_id: str | None = None) -> int | None:
    """Commit `rows` of `run_id` in place of the rows `dropped` selects, all of them rows of `runs`
    (a monitor's verdicts in place of its earlier ones and of verdicts its run superseded), in one
    transaction. The files that may hold them (by their `run_id` statistics) are rewritten with the
    other rows they hold (a compaction merges runs); a commit to their partitions since they were
    read (another run keeping its rows of the same day, a compaction) makes it read and replace
    again, which is exact: a CommitConflict only after `max_attempts` (it came after a job's own
    commits, which had landed). A change to be made once gives its own `app_id`: where a commit with
    it is in the log already, nothing is committed and that commit's version is returned (None
    where its log entry is gone); otherwise each call commits under an app id of its own."""
    for _ in range(max_attempts - 1):
        try:
            return _replace_rows_once(root, contract, rows, run_id, runs, dropped, metadata, app_id)
        except CommitConflict:
            continue
    return _replace_rows_once(root, contract, rows, run_id, runs, dropped, metadata, app_id)


def _replace_rows_once(root: str, contract: TableContract, rows: pa.Table, run_id: str, runs: Sequence[str], dropped: pc.Expression,
                       metadata: Mapping[str, str], app_id: str | None) -> int | None:
    """One attempt of `replace_rows`, against the table's latest version."""
    made = time.time_ns()
    version = ensure_table(root, contract).version()
    held = list({f.path: f for run in runs for f in files_of_run(root, run, version)}.values())
    others = contract.schema.empty_table()
    if held:
        others = read_files(root, version, held, contract.schema.names).select(contract.schema.names).cast(contract.schema)
        others = others.filter(~dropped | dropped.is_null())  # a row the selection cannot judge (a null run id) stays
    files = write_driver_rows(root, contract, pa.concat_tables([others, rows.select(contract.schema.names)]), f"part-{run_id}-{made}")
    mine = {f.path for f in held}
    return commit_files(root, contract, files, app_id or f"content-signals/{run_id}/{contract.name}/{made}", {"run_id": run_id, **metadata},
                        remove=lambda f: f.path in mine, read_version=version)


def write_driver_rows(root: str, contract: TableContract, rows: pa.Table, prefix: str) -> list[DataFile]:
    """Write small rows made on the driver as data files of the table (created if new), uncommitted:
    the caller commits them, in one transaction, with `commit_files`."""
    from lake.file_writer import make_file_writer

    ensure_table(root, contract)
    writer = make_file_writer(root, contract, prefix, lambda: "driver")
    return [DataFile.from_row(r) for batch in writer(iter(rows.to_batches())) for r in batch.to_pylist()] if rows.num_rows else []


def version_of_commit(root: str, app_id: str) -> int | None:
    """The table version whose commit carries `app_id`, however old; None where its log entry is gone (`commit_of`)."""
    commit = commit_of(root, app_id)
    return None if commit is None else int(commit["version"])


def commit_of(root: str, app_id: str) -> dict[str, Any] | None:
    """The log's record of the commit that carries `app_id` (its version, operation and custom
    metadata), however old: the newest commits are searched first (a run just committed is found
    in one short read), then ever more of the log. None where the table holds the commit but its
    log entry was cleaned up behind a checkpoint (past the log's retention), which keeps only its app id."""
    searched = 0
    for entry in newest_commits(root):
        if entry.get("app_id") == app_id:
            return entry
        searched += 1
    if committed(root, app_id):
        return None
    raise LookupError(f"no commit tagged {app_id!r} in the {searched} versions of {root} still in its log")


def log_files(root: str) -> list[pafs.FileInfo]:
    """The files directly in the table's `_delta_log` (one listing), with their modification times."""
    filesystem, base = filesystem_of(root)
    return [info for info in filesystem.get_file_info(pafs.FileSelector(f"{base}/_delta_log")) if info.type == pafs.FileType.File]


def log_version(name: str) -> int | None:
    """The version a log file's name starts with (a commit, a checkpoint, a checksum); None for `_last_checkpoint`."""
    return int(name[:20]) if name[:20].isdigit() else None


def commit_times(root: str) -> dict[int, datetime]:
    """When each version whose commit is still in the log was committed: its log file's
    modification time, as Delta's log retention counts it, from one listing (the commits'
    own records take a read each)."""
    return {version: datetime.fromtimestamp(info.mtime.timestamp(), UTC) for info in log_files(root)
            if (version := log_version(info.base_name)) is not None and info.base_name == f"{version:020d}.json"}


def newest_commits(root: str) -> Iterator[dict[str, Any]]:
    """The log's records of the table's commits, newest first, down to the first version missing
    from the log: delta-rs numbers the commits its history finds by counting down from the latest,
    so a commit kept behind expired ones (a named version's, `lake.upkeep.expire_log`) came with
    the number of a version that is gone. Read in ever larger pieces, so that a search that stops
    at a recent commit reads little of the log."""
    table, limit, seen, present = DeltaTable(root), 64, 0, None
    while True:
        entries = table.history(limit)
        if present is None:  # listed after the history: a commit landing in between is no gap
            present = commit_times(root).keys()
        for entry in entries[seen:]:
            if int(entry["version"]) not in present:
                return
            yield entry
        if len(entries) < limit:
            return
        seen, limit = len(entries), limit * 8


def snapshot(root: str, version: int | None = None) -> DeltaTable:
    """The table at its latest version, or at `version` (time travel)."""
    return DeltaTable(root) if version is None else DeltaTable(root, version=version)


def latest_version(root: str) -> int | None:
    """The latest version of the Delta table at `root`, None when there is no table."""
    return DeltaTable(root).version() if DeltaTable.is_deltatable(root) else None


FILE_COLUMN = "__filename"  # a column `read_arrow` may be asked for: each row's data file (unescaped, relative to the root)
Where = Sequence[tuple[str, str, Any]]  # (column, op, value) filters, all of which hold: ("ds", "=", day), ("signal", "in", [...])


def read_arrow(root: str, version: int | None = None, filters: Any = None, columns: Sequence[str] | None = None,
               where: Where = ()) -> pa.Table:
    """The table's rows as Arrow, through the Delta log (partition columns included): those that
    match `where` and the pyarrow expression `filters`. Only the files whose partition values or
    statistics may match `where` are opened: a day's read costs that day's files, not the table's.
    A filter on the empty string prunes no file (`_prunes`); it still selects the rows."""
    condition = pq.filters_to_expression(list(where)) if where else None
    if filters is not None:
        condition = filters if condition is None else condition & filters
    table = snapshot(root, version)
    dataset = table.to_pyarrow_dataset(file_pruning_predicate=[f for f in where if _prunes(f)] or None)
    try:
        return _scan(dataset if condition is None else _filterable(table, dataset), condition, None if columns is None else list(columns))
    except FileNotFoundError:
        if version is None or version == snapshot(root).version():
            raise  # the latest version missing a file is damage (jobs.failures says what to do), not a question of time
        raise vacuumed(root, version) from None


def _filterable(table: DeltaTable, dataset: pads.FileSystemDataset) -> pads.FileSystemDataset:
    """The dataset, with each file whose statistics leave a scalar column without a range given its
    partition values alone as what its rows satisfy. delta-rs makes such a column `>= null` in the
    file's guarantee, which no comparison on it meets, so a filter on it skipped the file: a file
    this project wrote before 2026-12-08 (no range of a float, boolean or timestamp) or with a NaN
    or an infinity in a float column (JSON holds neither), or Spark's beyond the 32 columns Delta
    keeps statistics of. A NaN bound (Spark's max of a float column holding NaN) is no range either:
    a comparison with it is never true, so the file was skipped or its NaN rows kept unfiltered."""
    partitions = set(table.metadata().partition_columns)
    scalar = [f.name for f in dataset.schema if f.name not in partitions and not pa.types.is_nested(f.type)
              and not pa.types.is_binary(f.type) and not pa.types.is_large_binary(f.type)]
    actions = pa.table(table.get_add_actions(flatten=True)).to_pylist()
    blind = {unquote(a["path"]): a for a in actions if a["num_records"] is not None and any(
        (_unbounded(a.get(f"min.{c}")) or _unbounded(a.get(f"max.{c}"))) and (a.get(f"null_count.{c}") or 0) < a["num_records"] for c in scalar)}
    if not blind:
        return dataset
    fragments = [dataset.format.make_fragment(f.path, dataset.filesystem, _partition_of(blind[f.path], dataset.schema))
                 if f.path in blind else f for f in dataset.get_fragments()]
    return pads.FileSystemDataset(fragments, dataset.schema, dataset.format, dataset.filesystem)


def _unbounded(bound: Any) -> bool:
    """Whether a file's min or max of a column bounds nothing: absent, or NaN (which compares false with every value)."""
    return bound is None or bound != bound


def _partition_of(action: Mapping[str, Any], schema: pa.Schema) -> pc.Expression:
    """What every row of a file holds by its (flattened) add action's partition values alone."""
    terms = [pc.field(name) == pa.scalar(value).cast(schema.field(name).type) if value is not None else pc.field(name).is_null()
             for key, value in action.items() if key.startswith("partition.") and (name := key.removeprefix("partition.")) in schema.names]
    return functools.reduce(operator.and_, terms, pc.scalar(True))


def vacuumed(root: str, version: int) -> UsageError:
    """The refusal of a read of an old version whose data files are gone, whichever reader (delta-rs or Spark) tried."""
    return UsageError(f"version {version} of {root} can no longer be read: a vacuum (content-signals maintain) removed its "
                      f"data files, keeping only versions still named (docs/design.md, Table upkeep); read a later version")


def _prunes(condition: tuple[str, str, Any]) -> bool:
    """Whether a `where` filter may choose the files read: not one on the empty string, which
    delta-rs takes for null in a tuple filter (its way to match a null partition value), so that
    `content_id = ''` (a valid id: jobs/corpus.py) opened no file and found no row."""
    _, _, value = condition
    return "" not in (value if isinstance(value, (list, tuple, set, frozenset)) else [value])


def _scan(dataset: pads.FileSystemDataset, condition: pc.Expression | None, columns: list[str] | None) -> pa.Table:
    """The dataset's rows that match `condition`, in the table's types whatever wrote the files.

    A file whose columns are not in the table's types (delta-rs writes string_view where it
    rewrites a file: a delete, an update) fails a filtered scan in pyarrow 25, which cannot test
    such a column's row-group statistics against the filter ("no kernel matching input types
    (string, string_view)"). Then such files are read in the table's types a batch at a time and
    filtered after, the others scanned as before; only then, since telling them apart reads the
    files' footers one by one (on an object store, a round trip each)."""
    try:
        return dataset.to_table(filter=condition, columns=columns)
    except pa.ArrowNotImplementedError:
        if condition is None:
            raise
    typed, other = [], []
    for fragment in dataset.get_fragments(filter=condition):
        physical = fragment.physical_schema
        same = all(dataset.schema.field(f.name).type == f.type for f in physical if f.name in dataset.schema.names)
        (typed if same else other).append(fragment)
    parts = [pads.FileSystemDataset(typed, dataset.schema, dataset.format, dataset.filesystem).to_table(filter=condition, columns=columns)]
    for fragment in other:
        for batch in fragment.to_batches(schema=dataset.schema):
            rows = pa.Table.from_batches([batch]).filter(condition)
            if columns is not None and FILE_COLUMN in columns:
                rows = rows.append_column(FILE_COLUMN, pa.array([fragment.path] * len(rows), pa.string()))
            parts.append(rows if columns is None else rows.select(columns))
    return pa.concat_tables(parts)


def read_files(root: str, version: int, files: Sequence[LiveFile], columns: Sequence[str]) -> pa.Table:
    """The rows of some data files of the snapshot at `version` (partition columns filled from
    the log): what changed between two versions is read without reading the rest. A fragment's
    path is the file's as stored (the log's, unescaped once): unescaped again, a Hive-escaped
    partition folder (`ds=a%20b`) matched no file of the log."""
    dataset = snapshot(root, version).to_pyarrow_dataset()
    wanted = {unquote(f.path) for f in files}
    parts = [fragment.to_table(schema=dataset.schema, columns=list(columns))
             for fragment in dataset.get_fragments() if fragment.path in wanted]
    return pa.concat_tables(parts) if parts else dataset.schema.empty_table().select(list(columns))


@functools.lru_cache(maxsize=64)
def _table_path(root: str) -> str:
    """The path part of the table's URI (a table's root never moves: cached, not re-read per file)."""
    return unquote(urlparse(snapshot(root).table_uri).path).rstrip("/")


def relative_path(root: str, uri: str) -> str:
    """A data file's path relative to the table root, unescaped (as `unquote(LiveFile.path)`)."""
    base = _table_path(root)
    path = unquote(urlparse(uri).path)
    if not path.startswith(base + "/"):
        raise ValueError(f"{uri} is not under the table root {base}")
    return path[len(base) + 1 :]
