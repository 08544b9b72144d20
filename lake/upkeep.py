"""Upkeep of one Delta table with delta-rs (no Spark): a checkpoint of the log once it has grown,
compaction of the small files of crowded partitions, a vacuum, and an expiry of the log past its
retention, both keeping the named versions readable. Which tables, and which versions are named, is `jobs/maintain.py`'s business.

Each step is safe beside the jobs and safe to kill:
- a checkpoint adds no commit: a reader that finds it starts from it, one that does not
  replays the log as before;
- a compaction is ONE commit (`dataChange=false`) removing a partition's small files and adding
  files that hold exactly their rows, made like the jobs' commits (`lake.delta_io.commit_files`:
  it conflicts with any commit to its partitions since it read them, and so does a job's commit
  with it); killed before that commit it leaves only files no snapshot names, which a later
  vacuum removes;
- a vacuum deletes only files that no version current within the retention, and none of the
  versions it is told to keep, names; every one of those versions is handed to delta-rs by
  number, so what is kept never depends on removal records, which a checkpoint drops once they
  are older than the table's `delta.deletedFileRetentionDuration` (a week by default);
- the log's expiry deletes only entries of versions no longer readable by policy (behind a
  checkpoint older than the log retention, neither named nor current within the retention),
  oldest first, after a named version among them has a checkpoint of its own.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
from deltalake import CommitProperties, DeltaTable, Schema, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError

from lake import delta_io
from lake.delta_io import commit_times, log_files, log_version
from lake.file_writer import make_file_writer, refused_partition_values
from signals.contracts import TableContract


@dataclass(frozen=True)
class UpkeepPolicy:
    """When a table's log is checkpointed, which files are compacted into what, and the least a vacuum keeps."""

    checkpoint_every: int  # commits since the last checkpoint past which one is written
    small_file_bytes: int  # a data file smaller than this is small
    min_small_files: int  # a partition is compacted when it holds more small files than this
    target_file_bytes: int  # compacted files are about this large
    min_retention: timedelta  # a vacuum never removes files a version younger than this names


@dataclass(frozen=True)
class Upkeep:
    """What upkeep did (or, in a dry run, would do) to one table."""

    table: str
    version: int  # the table's version when upkeep ended
    files_before: int
    files_after: int
    partitions_compacted: int = 0
    files_compacted: int = 0  # small files replaced by compacted ones
    compaction_version: int | None = None
    checkpoint: int | None = None  # the version checkpointed
    vacuumed: int = 0  # files deleted (a dry run: that would be)
    retention_hours: int | None = None
    kept_versions: tuple[int, ...] = ()
    notes: tuple[str, ...] = ()
    relayout_version: int | None = None  # the commit that laid the table out again in its contract's partitions
    log_expired: int = 0  # log files deleted past the log retention (a dry run: that would be)


def last_checkpoint(root: str) -> int | None:
    """The version of the table's latest checkpoint, from `_delta_log/_last_checkpoint` (None: none yet)."""
    filesystem, base = delta_io.filesystem_of(root)
    path = f"{base}/_delta_log/_last_checkpoint"
    if filesystem.get_file_info(path).type == pafs.FileType.NotFound:
        return None
    with filesystem.open_input_stream(path) as stream:
        return int(json.loads(stream.read())["version"])


def checkpoint_due(root: str, every: int) -> bool:
    """Whether the log has grown by more than `every` commits since its last checkpoint (or its start)."""
    last = last_checkpoint(root)
    return delta_io.snapshot(root).version() - (-1 if last is None else last) > every


def compaction_bins(root: str, version: int, policy: UpkeepPolicy) -> list[list[delta_io.LiveFile]]:
    """The small files of the snapshot at `version` to compact, in groups of about the target
    size, each group one partition's and each becoming one file; only partitions holding more
    than `min_small_files` small files, and never a group of one."""
    small: dict[tuple, list[delta_io.LiveFile]] = defaultdict(list)
    for f in delta_io.live_files(root, version):
        if f.size < policy.small_file_bytes and f.num_records > 0:  # a file without statistics is left alone
            small[tuple(sorted(f.partition_values.items()))].append(f)
    bins = []
    for files in small.values():
        if len(files) <= policy.min_small_files:
            continue
        group: list[delta_io.LiveFile] = []
        for f in files:
            if group and sum(g.size for g in group) + f.size > policy.target_file_bytes:
                bins.append(group)
                group = []
            group.append(f)
        bins.append(group)
    return [group for group in bins if len(group) > 1]


def _rows_of(root: str, contract: TableContract, files: list[delta_io.LiveFile]) -> Iterator[pa.RecordBatch]:
    """The rows of one partition's files, in file order, with their partition columns."""
    filesystem, base = delta_io.filesystem_of(root)
    data_schema = pa.schema([contract.schema.field(n) for n in contract.data_columns])
    dataset = pads.dataset([f"{base}/{unquote(f.path)}" for f in files], schema=data_schema, format="parquet", filesystem=filesystem)
    values = files[0].partition_values
    for batch in dataset.to_batches(use_threads=False):
        table = pa.Table.from_batches([batch], data_schema)
        for name in contract.partition_by:
            table = table.append_column(contract.schema.field(name), pa.array([values[name]] * table.num_rows, contract.schema.field(name).type))
        yield from table.to_batches()


def uncompactable(root: str, contract: TableContract, version: int) -> list[str]:
    """Why compaction, which reads the files' columns by their names and writes the contract's
    columns into the contract's partitions, would not give back the rows of this table (one
    another writer made) as they are, one reason each; none where it would."""
    table = delta_io.snapshot(root, version)
    have, want = {f.name: f for f in table.schema().fields}, {f.name: f for f in Schema.from_arrow(contract.schema).fields}
    reasons = []
    if unknown := sorted(have.keys() - want.keys()):
        reasons.append(f"the table has columns its contract lacks ({', '.join(unknown)}), which it would drop")
    if other := [n for n in have if n in want and have[n].type != want[n].type]:
        reasons.append(f"its columns {', '.join(other)} are not of the contract's types, which it would cast them to")
    if set(table.metadata().partition_columns) != set(contract.partition_by):
        reasons.append(f"it is partitioned by {list(table.metadata().partition_columns)}, not {list(contract.partition_by)}")
    if delta_io.maps_columns(root, version):
        reasons.append("its files name their columns otherwise (delta.columnMapping.mode)")
    if delta_io.has_deletion_vectors(root):
        reasons.append("it may delete rows with deletion vectors, which it would bring back")
    return reasons


UPKEEP_JOB = "maintain"  # its ledger rows are one per table it maintains (named in `signal`), its commits that table's upkeep
UPKEEP, COMPACTION = "upkeep", "compaction"  # the commit metadata of a compaction, a relayout's too (it moves rows, writes none)
RELAYOUT = "relayout"  # the metadata key of a relayout's commit: the partition columns before it
VACUUM_START, VACUUM_END = "VACUUM START", "VACUUM END"  # the operations of a vacuum's commits, before and after it deletes


def is_compaction(commit: Mapping[str, Any]) -> bool:
    """Whether a log entry (`DeltaTable.history`) is a compaction's, which moves rows and writes
    none of its run's: no row tells that the run committed it."""
    return commit.get(UPKEEP) == COMPACTION


def relayout_app_id(app_id: str) -> str:
    """The app id of a maintain's relayout commit, its own: a compaction's commit, tagged the run's, comes after it."""
    return f"{app_id}-{RELAYOUT}"


def relayout(root: str, contract: TableContract, app_id: str, metadata: Mapping[str, str]) -> int | None:
    """Write the latest rows of a table made under the older layout of its contract (a partition a
    day) again in the contract's partitions, in one overwrite commit tagged `app_id`, streamed;
    None where the table is laid out as its contract says already. Older versions keep their
    layout and stay readable."""
    table = delta_io.snapshot(root)
    older = table.metadata().partition_columns
    if older == list(contract.partition_by):
        return None
    rows = table.to_pyarrow_dataset()
    before = sum(f.num_records for f in delta_io.live_files(root, table.version()))
    write_deltalake(root, pa.RecordBatchReader.from_batches(rows.schema, rows.to_batches()), mode="overwrite",
                    partition_by=list(contract.partition_by), schema_mode="overwrite",
                    commit_properties=CommitProperties(custom_metadata={**metadata, "app_id": app_id, UPKEEP: COMPACTION, RELAYOUT: json.dumps(older)},
                                                       app_transactions=[Transaction(app_id, 1, int(datetime.now(UTC).timestamp() * 1000))],
                                                       max_commit_retries=0),
                    post_commithook_properties=delta_io.KEEP_LOG)
    version = delta_io.version_of_commit(root, app_id)
    after = sum(f.num_records for f in delta_io.live_files(root, version))
    if after != before:
        raise RuntimeError(f"{root}: laying out {before} rows again gave {after} at version {version}; restore version {table.version()}")
    return version


def compact(root: str, contract: TableContract, bins: list[list[delta_io.LiveFile]], read_version: int, app_id: str,
            file_prefix: str, metadata: Mapping[str, str]) -> int:
    """Write each group's rows as one file and commit them, with the removal of the groups'
    files, in one `dataChange=false` commit; CommitConflict if a commit since `read_version`
    changed one of their partitions (nothing committed). Returns the version."""
    files = []
    for number, group in enumerate(bins):
        write = make_file_writer(root, contract, file_prefix, lambda number=number: f"group{number:05d}")
        written = [delta_io.DataFile.from_row(row) for report in write(_rows_of(root, contract, group)) for row in report.to_pylist()]
        rows_in, rows_out = sum(f.num_records for f in group), sum(f.num_records for f in written)
        if rows_in != rows_out:
            raise RuntimeError(f"{root}: compacting {len(group)} files of {rows_in} rows wrote {rows_out}; nothing committed")
        files += written
    inputs = {f.path for group in bins for f in group}
    return delta_io.commit_files(root, contract, files, app_id, {**metadata, UPKEEP: COMPACTION},
                                 remove=lambda live: live.path in inputs, read_version=read_version, data_change=False, keep_log=True)


def versions_current_since(times: Mapping[int, datetime], cutoff: datetime) -> set[int]:
    """The versions that were the latest at some moment from `cutoff` on: those committed since,
    and the one that was the latest at the cutoff."""
    since = {v for v, at in times.items() if at >= cutoff}
    before = [v for v, at in times.items() if at < cutoff]
    return since | ({max(before)} if before else set())


def vacuum_of(root: str, run_id: str, since: datetime) -> tuple[int, bool] | None:
    """The version of the latest vacuum commit that run `run_id` (started at `since`) made to the
    table, and whether it is the vacuum's end (between its start and end it deletes files); None
    where the run made none. Only the commits since the run started are read."""
    for entry in delta_io.newest_commits(root):
        if entry.get("timestamp", 0) < since.timestamp() * 1000:
            return None
        if entry.get("run_id") == run_id and entry.get("operation") in (VACUUM_START, VACUUM_END):
            return int(entry["version"]), entry["operation"] == VACUUM_END
    return None


LOG_RETENTION = "delta.logRetentionDuration"  # log entries older than this, behind a checkpoint as old, expire (`expire_log`)
LOG_CLEANUP = "delta.enableExpiredLogCleanup"  # whether delta-rs expires log entries itself at each commit: maintain turns it off
TXN_RETENTION = "delta.setTransactionRetentionDuration"  # delta-rs forgets an app id whose txn's lastUpdated is older than this
APP_ID_RETENTION = timedelta(days=90)  # a retry of a run id within this is recognised as committed (docs/design.md, Table upkeep)
UPKEEP_PROPERTIES = {TXN_RETENTION: f"interval {APP_ID_RETENTION.days} days", LOG_CLEANUP: "false"}
_INTERVAL_UNITS = {"nanosecond": 1e-9, "microsecond": 1e-6, "millisecond": 1e-3, "second": 1, "minute": 60, "hour": 3600, "day": 86400,
                   "week": 604800}


def log_retention(table: DeltaTable) -> timedelta | None:
    """The table's `delta.logRetentionDuration` (`interval 30 days`, the default; several units, as
    `interval 1 day 12 hours`, add up, and the word `interval` may be left out, as Delta reads it);
    None where it cannot be read."""
    words = table.metadata().configuration.get(LOG_RETENTION, "interval 30 days").lower().split()
    words = words[1:] if words[:1] == ["interval"] else words
    amounts = list(zip(words[::2], (w.removesuffix("s") for w in words[1::2]), strict=False))
    if not words or len(words) % 2 or any(not n.isdigit() or unit not in _INTERVAL_UNITS for n, unit in amounts):
        return None
    return timedelta(seconds=sum(int(n) * _INTERVAL_UNITS[unit] for n, unit in amounts))


def checkpoint_versions(root: str) -> list[int]:
    """The versions the log holds a whole checkpoint of: a single or v2 file, or every part of a
    multi-part one (`<v>.checkpoint.<part>.<parts>.parquet`, as Spark's Delta writes for large
    tables): a writer killed midway leaves some parts, and expiring the entries behind those would
    leave their version and every one before it unreadable."""
    whole, parts = set(), defaultdict(set)
    for info in log_files(root):
        if (version := log_version(info.base_name)) is None or not info.base_name[20:].startswith(".checkpoint."):
            continue
        fields = info.base_name[len(".checkpoint.") + 20:].split(".")
        if len(fields) == 3 and fields[0].isdigit() and fields[1].isdigit():
            parts[version, int(fields[1])].add(int(fields[0]))
        else:
            whole.add(version)
    return sorted(whole | {version for (version, count), seen in parts.items() if seen == set(range(1, count + 1))})


def set_upkeep_properties(root: str, dry_run: bool, metadata: Mapping[str, str]) -> list[str]:
    """Give the table the properties upkeep relies on where it has none (`UPKEEP_PROPERTIES`), in one
    property commit (`metadata`) per table, ever, made before maintain's other commits; a value an
    operator set is kept, and a concurrent commit that wins leaves it to the next maintain (said):
    - an app id retention (`APP_ID_RETENTION`), so that its checkpoints stop carrying the app id of
      every run ever made: delta-rs then forgets, and leaves out of its checkpoints, the app ids
      committed (their txn's lastUpdated) longer ago than that;
    - delta-rs's own expiry of log entries off, which at any commit deletes every entry before a
      checkpoint older than the log retention, named or not: `expire_log` expires them instead,
      keeping the named versions readable. This commit itself expires nothing (checked).
    An operator's `false` in another case (`FALSE`, which Delta reads as false) is written `false`:
    delta-rs reads only that, and takes any other value for its default, on. A value meaning on is
    kept, and said: delta-rs then expires named versions' entries too. An operator's app id retention
    in another case (`INTERVAL 90 DAYS`, which Delta reads) is written in lower case: delta-rs reads
    only that, and otherwise keeps every app id."""
    table = DeltaTable(root)
    configuration = table.metadata().configuration
    missing = {name: value for name, value in UPKEEP_PROPERTIES.items() if name not in configuration}
    if (retention := configuration.get(TXN_RETENTION)) is not None and retention != retention.lower():
        missing[TXN_RETENTION] = retention.lower()
    cleanup = configuration.get(LOG_CLEANUP)
    if cleanup is not None and cleanup != "false" and cleanup.lower() == "false":
        missing[LOG_CLEANUP] = "false"
    notes = [] if cleanup is None or cleanup.lower() == "false" else [
        f"{LOG_CLEANUP}={cleanup} kept, as set on the table: delta-rs expires the log past its retention at each commit, "
        "named versions' entries too"]
    if not missing:
        return notes
    if not dry_run:
        try:
            table.alter.set_table_properties(missing, commit_properties=CommitProperties(custom_metadata=dict(metadata)),
                                             post_commithook_properties=delta_io.KEEP_LOG)
        except CommitFailedError as exc:
            return [*notes, f"table properties {', '.join(missing)} not set: a concurrent commit ({exc}); the next maintain sets them"]
    return [*notes, f"table properties {'would be set' if dry_run else 'set'}: {', '.join(f'{k}={v}' for k, v in missing.items())}"]


def expire_log(root: str, keep: Collection[int], min_retention: timedelta, dry_run: bool) -> tuple[int, list[str]]:
    """Delete the log entries past the table's log retention, as Delta's own cleanup would, but keep
    each version of `keep` readable by a checkpoint of its own: the entries before the newest
    checkpoint committed longer than the retention ago, and not after any version current within
    `min_retention`, are deleted, oldest first, except a kept version's commit and checkpoint,
    which is written first where there is none. So the log holds the retention's commits and two
    files a kept version, not every commit since the oldest kept one, and a kill leaves every
    version it keeps readable; another maintain expiring the same entries at once is no failure, and
    one whose checkpoint of a named version fails to be written expires nothing.
    Returns (log files deleted (dry: that would be), notes)."""
    retention = log_retention(table := DeltaTable(root))
    if retention is None:
        return 0, [f"log not expired: its {LOG_RETENTION} cannot be read"]
    times, checkpoints, now = commit_times(root), set(checkpoint_versions(root)), datetime.now(UTC)
    floor = min(versions_current_since(times, now - min_retention), default=table.version())
    old = [c for c in checkpoints if c <= floor and c in times and times[c] <= now - retention]
    if not old:
        return 0, []
    cut, notes, kept = max(old), [], set()
    for version in sorted(v for v in keep if v < cut and v in times):
        if version not in checkpoints and not dry_run:
            try:
                named = delta_io.snapshot(root, version)
            except DeltaError as exc:
                notes.append(f"version {version} is named but its log cannot be read ({exc}); not kept")
                continue
            try:
                named.create_checkpoint()
            except (DeltaError, OSError) as exc:  # the store failed: expiring would lose a version that can still be kept
                return 0, [*notes, f"log not expired: named version {version}'s checkpoint could not be written ({exc}); "
                                   "the next maintain tries again"]
        kept.add(version)
    filesystem, _ = delta_io.filesystem_of(root)
    expired = sorted((v, info.path) for info in log_files(root) if (v := log_version(info.base_name)) is not None and v < cut and v not in kept)
    if not dry_run:
        for _, path in expired:
            try:
                filesystem.delete_file(path)
            except FileNotFoundError:  # a maintain running beside this one deleted it first
                pass
    if expired:
        notes.append(f"{len(expired)} log files before version {cut} {'would be expired' if dry_run else 'expired'}"
                     + (f", versions {sorted(kept)} kept by checkpoints of their own" if kept else ""))
    return len(expired), notes


def readable(root: str, version: int) -> bool:
    """Whether delta-rs can load the table at `version` (its entry, and those it is read from, in the log)."""
    try:
        delta_io.snapshot(root, version)
    except DeltaError:
        return False
    return True


def vacuum(root: str, keep: Collection[int], min_retention: timedelta, dry_run: bool,
           metadata: Mapping[str, str]) -> tuple[list[str], int, tuple[int, ...], list[str]]:
    """Delete the files no snapshot needs (replaced files, and files of runs and compactions that
    never committed), keeping every file of the versions `keep` names and of every version current
    within `min_retention` (a reader or a run in flight may hold one), and never a file younger than
    `min_retention`; its commits carry `metadata` (the run's, so that `vacuum_of` finds them).
    A named version whose entry is in the log but cannot be loaded (the entries it is read from are
    gone, or the store failed), which delta-rs's vacuum fails on, skips the vacuum, said: nothing is
    deleted on a read that failed. Returns (files deleted, retention hours, named versions kept,
    notes on named versions that could no longer be read and on a vacuum skipped)."""
    times = commit_times(root)
    named = sorted(v for v in set(keep) if v in times)
    notes = [f"version {v} is named but cannot be read any more (its log entry is gone)" for v in sorted(set(keep) - set(times))]
    hours = math.ceil(min_retention.total_seconds() / 3600)
    if unreadable := [v for v in named if not readable(root, v)]:
        return [], hours, tuple(named), [*notes, f"vacuum skipped: named versions {unreadable} cannot be loaded (the log entries they are read "
                                                 "from are gone, or the store failed); a maintain after they are no longer named vacuums"]
    current = versions_current_since(times, datetime.now(UTC) - min_retention)
    options = {"retention_hours": hours, "enforce_retention_duration": False, "full": True, "keep_versions": sorted({*named, *current})}
    # delta-rs lists a replaced file until its removal expires from the log, deleted or not: only files still there count
    listed = DeltaTable(root).vacuum(dry_run=True, **options)
    gone = set(delta_io.absent(root, listed))
    deletable = [p for p in listed if p not in gone]
    if deletable and not dry_run:
        try:  # the latest snapshot, loaded now: a file a job committed since the listing is named, not deleted
            deletable = [p for p in DeltaTable(root).vacuum(dry_run=False, commit_properties=CommitProperties(custom_metadata=dict(metadata)),
                                                            **options) if p not in gone]
        except CommitFailedError as exc:  # a commit that removed files landed as the vacuum started
            return [], hours, tuple(named), [*notes, f"vacuum skipped: a concurrent commit ({exc}); the next maintain vacuums"]
    return deletable, hours, tuple(named), notes


def maintain_table(root: str, contract: TableContract, policy: UpkeepPolicy, keep: Collection[int], app_id: str, file_prefix: str,
                   metadata: Mapping[str, str], compaction: bool = True, dry_run: bool = False) -> Upkeep:
    """Give the table the properties upkeep relies on (`set_upkeep_properties`, before any other commit
    of the run's, so that none of them has delta-rs expire the log), compact (unless `compaction` is
    off), vacuum, checkpoint the table if its log has grown enough (the checkpoint then holds the
    compaction and leaves out the expired app ids), then expire the log past its retention,
    keeping the named versions (`expire_log`); in a dry run, only say what would be done. Its
    commits leave the log to `expire_log` (`delta_io.KEEP_LOG`), and its vacuum waits for a run
    whose property commit landed (delta-rs's own cleanup follows a vacuum's first commit regardless)."""
    property_notes = set_upkeep_properties(root, dry_run, metadata)
    older = compaction and contract.partition_by and delta_io.snapshot(root).metadata().partition_columns == [*contract.partition_by, delta_io.DAY]
    before = len(delta_io.live_files(root))
    relaid = relayout(root, contract, relayout_app_id(app_id), metadata) if older and not dry_run else None
    version = delta_io.snapshot(root).version()
    reasons = uncompactable(root, contract, version) if compaction else []
    crowded = compaction_bins(root, version, policy) if compaction and not reasons else []
    refused = {tuple(g[0].partition_values.items()) for g in crowded if refused_partition_values(contract, g[0].partition_values)}
    bins = [group for group in crowded if tuple(group[0].partition_values.items()) not in refused]
    notes, compacted_at = [f"compaction skipped: {'; '.join(reasons)}"] if reasons else [], None
    if older:
        notes.insert(0, f"{'would lay' if dry_run else 'laid'} out again by {list(contract.partition_by)}, without day partitions")
    if refused:
        notes.append(f"{len(refused)} partitions not compacted: their values are not plain names the file writer writes "
                     f"(another writer's, e.g. {dict(min(refused, key=str))})")
    if bins and not dry_run:
        try:
            compacted_at = compact(root, contract, bins, version, app_id, file_prefix, metadata)
        except delta_io.CommitConflict as exc:
            bins, notes = [], [*notes, f"compaction skipped: {exc}"]
    if dry_run or LOG_CLEANUP in delta_io.snapshot(root).metadata().configuration:
        deleted, hours, kept, vacuum_notes = vacuum(root, keep, policy.min_retention, dry_run, metadata)
    else:  # delta-rs runs its log cleanup after a vacuum's first commit as the table says, whatever it is told: named versions' entries too
        deleted, hours, kept, vacuum_notes = [], None, (), [f"vacuum skipped: the table's {LOG_CLEANUP} is not set yet (above), and delta-rs "
                                                            "would expire the log at the vacuum's first commit, named versions' entries too; "
                                                            "the next maintain vacuums"]
    checkpoint = None
    if checkpoint_due(root, policy.checkpoint_every):
        table = delta_io.snapshot(root)
        if not dry_run:
            table.create_checkpoint()
        checkpoint = table.version()
    log_expired, log_notes = expire_log(root, keep, policy.min_retention, dry_run)
    after = before - sum(len(group) - 1 for group in bins) if dry_run else len(delta_io.live_files(root))
    return Upkeep(contract.name, delta_io.snapshot(root).version(), before, after, len({tuple(g[0].partition_values.items()) for g in bins}),
                  sum(len(g) for g in bins), compacted_at, checkpoint, len(deleted), hours, kept,
                  (*notes, *vacuum_notes, *log_notes, *property_notes), relaid, log_expired)
