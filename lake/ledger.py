"""The run ledger: what each run did, one row per (run, signal) at each step of its life.

A run appends `started` rows when it begins (naming its driver's host and pid) and `succeeded`,
`nothing to do` or `failed` rows when it ends. A run that died in between (killed driver, lost machine) is
reconciled by the next run: `succeeded` if its commit is in the table's log (the commit is what
counts; for maintain, its compaction or its vacuum's end), else `abandoned`. A run that may still be alive (running in this process, its driver
pid alive on this host, or started on another host less than a day ago) is left alone, and so, said
in a warning, is one whose tables cannot be read (its commit may be in what cannot be read) until
they are healed: the other entries are closed, and only a job that reads that table stops. Operators answer "what computed these rows, over which window, how many failed,
how long did it take" from here; `run_id` on every signal row joins back to it.
"""
from __future__ import annotations

import os
import socket
import uuid
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError

from lake import delta_io
from lake.upkeep import UPKEEP_JOB, is_compaction, relayout_app_id, vacuum_of
from signals.base import ModelRef
from signals.contracts import RUNS, STATUS_OK

STARTED, SUCCEEDED, NOTHING_TO_DO, FAILED, ABANDONED = "started", "succeeded", "nothing to do", "failed", "abandoned"
TERMINAL = (SUCCEEDED, NOTHING_TO_DO, FAILED, ABANDONED)
OTHER_HOST_GRACE = timedelta(hours=24)  # a run started elsewhere is presumed alive this long
_active_here: set[str] = set()  # run ids that this process is running right now


def driver_tag() -> str:
    """Written on `started` rows, so reconcile can tell a live run from a dead one."""
    return f"driver {socket.gethostname()}:{os.getpid()}"


@contextmanager
def active(run_id: str) -> Iterator[None]:
    """Mark `run_id` as running in this process for the duration of the block."""
    _active_here.add(run_id)
    try:
        yield
    finally:
        _active_here.discard(run_id)


def _may_be_alive(record: RunRecord, now: datetime) -> bool:
    if record.run_id in _active_here:
        return True
    host, _, pid = (record.message or "").removeprefix("driver ").rpartition(":")
    if host != socket.gethostname():
        return now - record.started_at < OTHER_HOST_GRACE
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
        return True
    except OSError:
        return False


@dataclass(frozen=True)
class SignalOutcome:
    """What one run did for one signal."""

    signal: str
    model: ModelRef
    rows_in: int
    rows_ok: int
    rows_error: int


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    job: str
    signal: str
    model_name: str | None
    model_version: str | None
    window_start: str | None
    window_end: str | None
    rows_in: int | None
    rows_ok: int | None
    rows_error: int | None
    status: str
    message: str | None
    table_version: int | None
    started_at: datetime
    finished_at: datetime

    @property
    def duration_s(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


def record_runs(root: str, records: Sequence[RunRecord]) -> None:
    """Append the records to the ledger table at `root` (created on first use), in one commit made
    like the jobs' (`delta_io.commit_files`): one racing maintain's property commit on the ledger is
    made again on the new snapshot, and its app id keeps a retried append from landing twice."""
    files = delta_io.write_driver_rows(root, RUNS, _as_rows(records), f"part-ledger-{uuid.uuid4().hex}")
    delta_io.commit_files(root, RUNS, files, f"content-signals/ledger/{uuid.uuid4().hex}", {"job": "ledger"})


def _as_rows(records: Sequence[RunRecord]) -> pa.Table:
    """The records as rows of the ledger table."""
    return pa.Table.from_pylist([{**asdict(r), "duration_s": r.duration_s} for r in records], schema=RUNS.schema)


def recorded(root: str, run_ids: Collection[str]) -> set[str]:
    """Those of `run_ids` that the ledger at `root` holds a row of (none where it has no table yet)."""
    if not run_ids or not DeltaTable.is_deltatable(root):
        return set()
    rows = delta_io.read_arrow(root, filters=pc.field("run_id").isin(sorted(run_ids)), columns=["run_id"])
    return set(rows["run_id"].to_pylist())


def outcomes_of(table_root: str, run_id: str, models: Mapping[str, ModelRef]) -> list[SignalOutcome]:
    """Items, ok items and error items each signal of `run_id` has in the table (an item has
    one row per label in the labels table, so items are counted, not rows). A table without a
    `signal` column (duplicates) counts all the run's rows for each name asked."""
    stored = pa.schema(delta_io.snapshot(table_root).schema().to_arrow()).names
    rows = delta_io.read_arrow(table_root, filters=pc.field("run_id") == run_id,
                               columns=[c for c in ("signal", "content_id", "status") if c in stored])  # not the vectors
    if "signal" not in rows.column_names:
        rows = rows.append_column("signal", pa.array([None] * rows.num_rows, pa.string()))
    rows = rows.select(["signal", "content_id", "status"])
    items = rows.group_by(["signal", "status"]).aggregate([("content_id", "count_distinct")]).to_pylist()
    count = {(r["signal"], r["status"]): r["content_id_count_distinct"] for r in items}
    outcomes = []
    for name, model in models.items():
        ok, error = 0, 0
        for signal in (name, None):  # None: a table without a signal column
            ok, error = ok + count.get((signal, STATUS_OK), 0), error + count.get((signal, "error"), 0)
        outcomes.append(SignalOutcome(name, model, ok + error, ok, error))
    return outcomes


def run_app_id(run_id: str) -> str:
    """The Delta application transaction id of run `run_id`'s commits (one per table), by which a
    retry and the reconciliation know whether it committed."""
    return f"content-signals/{run_id}"


def committed_outcome(run_id: str, signal: str, model: ModelRef, table_roots: Sequence[str]) -> tuple[SignalOutcome | None, int | None] | None:
    """What run `run_id` committed for `signal` (its outcome and the table version: None where the
    commit's log entry was cleaned up behind a checkpoint, which keeps its app id), or None if
    the run committed to none of the tables holding the signal: a commit of the run to another
    table (the embeddings, before a kill) does not count for a label signal. A commit that wrote no
    row of the signal counts where the table holds it (a refresh that only dropped takedowns), and
    a compaction (maintain's, whose rows name the table in `signal`) counts as is, with no outcome:
    it wrote no row of its own."""
    app_id = run_app_id(run_id)
    for root in table_roots:
        if not delta_io.committed(root, app_id):
            continue
        commit = delta_io.commit_of(root, app_id)  # None: its log entry is gone (the log's retention): its rows still tell what it wrote
        version = None if commit is None else int(commit["version"])
        if commit is not None and is_compaction(commit):
            return None, version
        outcome = outcomes_of(root, run_id, {signal: model})[0]
        if outcome.rows_in or any(f.partition_values.get("signal") == signal and f.partition_values.get("model_version") == model.version
                                  for f in delta_io.live_files(root)):
            return outcome, version
    return None


def reconcile(root: str, tables_of: Callable[[RunRecord], Sequence[str]], max_attempts: int = 8) -> list[RunRecord]:
    """Close the ledger entries of runs that started but never ended: `succeeded` where one of
    the tables the entry's run commits to (`tables_of`: their roots) holds the signal's rows from
    the run's commit (or its compaction, or a maintain's vacuum), else `abandoned`; an entry whose tables
    cannot be read is left open, said in a warning, until they are healed. The closing rows are committed against
    the ledger version read: if anything was appended since (another job starting at once may have
    closed the same entries), the ledger is read again, so no entry is closed twice; after
    `max_attempts` the entries are left to the next run. Returns what was added."""
    if not DeltaTable.is_deltatable(root):
        return []
    for _ in range(max_attempts):
        version = delta_io.snapshot(root).version()
        closed = _closing(root, version, tables_of)
        if not closed:
            return []
        files = delta_io.write_driver_rows(root, RUNS, _as_rows(closed), f"part-reconcile-{uuid.uuid4().hex}")
        try:
            delta_io.commit_files(root, RUNS, files, f"content-signals/reconcile/{uuid.uuid4().hex}", {"job": "reconcile"},
                                  read_version=version)
        except delta_io.CommitConflict:
            continue
        return closed
    return []


def _closing(root: str, read: int, tables_of: Callable[[RunRecord], Sequence[str]]) -> list[RunRecord]:
    """The closing rows of the entries open at version `read` of the ledger whose runs are dead."""
    runs = delta_io.read_arrow(root, read).to_pylist()
    ended = {(r["run_id"], r["signal"]) for r in runs if r["status"] in TERMINAL}
    now = datetime.now(UTC)
    open_runs = [record for record in (RunRecord(**{k: v for k, v in r.items() if k != "duration_s"}) for r in runs
                                       if r["status"] == STARTED and (r["run_id"], r["signal"]) not in ended)
                 if not _may_be_alive(record, now)]
    closed = []
    for record in open_runs:
        try:
            closed.append(_closing_of(record, tables_of(record), now))
        except (DeltaError, OSError) as damaged:  # its commit may be in what cannot be read: closed once the table is healed
            warnings.warn(f"the ledger entry of {record.job} run {record.run_id} for {record.signal} is left open: a table it may have "
                          f"committed to cannot be read ({type(damaged).__name__}: {str(damaged).strip()[:300]}); a run after the "
                          "table is healed closes it", stacklevel=2)
    return closed


_LOG_GONE = " (its log entry was since cleaned up behind a checkpoint: the version is no longer known)"


def _closing_of(record: RunRecord, table_roots: Sequence[str], now: datetime) -> RunRecord:
    """The closing row of a dead run's entry, by what the tables it commits to (`table_roots`) hold of it."""
    found = committed_outcome(record.run_id, record.signal, ModelRef(record.model_name, record.model_version), table_roots)
    if found:
        outcome, version = found
        counts = {"rows_in": outcome.rows_in, "rows_ok": outcome.rows_ok, "rows_error": outcome.rows_error} if outcome else {}
        return replace(record, status=SUCCEEDED, message=f"recovered: committed before the run died{_LOG_GONE if version is None else ''}",
                       table_version=version, finished_at=now, **counts)
    if record.job == UPKEEP_JOB:
        return _closing_of_upkeep(record, table_roots, now)
    return replace(record, status=ABANDONED, message="died before committing; its files were never visible", finished_at=now)


def _closing_of_upkeep(record: RunRecord, table_roots: Sequence[str], now: datetime) -> RunRecord:
    """The closing row of a dead maintain's entry for a table it made no compaction commit to, by
    what its vacuum of the table did: deleted files (`succeeded`, at its end commit), died while
    deleting, or never began (both `abandoned`: no row of the table moved, unless it laid the
    table out again first: `succeeded`, at that commit). A compaction commit whose log entry is
    gone is known by its app id alone (`committed_outcome` cannot tell it)."""
    if any(delta_io.committed(root, run_app_id(record.run_id)) for root in table_roots):
        return replace(record, status=SUCCEEDED, message=f"recovered: its compaction committed before the run died{_LOG_GONE}", finished_at=now)
    found = next(filter(None, (vacuum_of(root, record.run_id, record.started_at) for root in table_roots
                               if DeltaTable.is_deltatable(root))), None)
    relayout = relayout_app_id(run_app_id(record.run_id))
    relaid = next((root for root in table_roots if delta_io.committed(root, relayout)), None)
    if found is None and relaid is not None:
        commit = delta_io.commit_of(relaid, relayout)
        return replace(record, status=SUCCEEDED, message="recovered: it laid the table out again before the run died"
                       f"{_LOG_GONE if commit is None else ''}", table_version=None if commit is None else int(commit["version"]), finished_at=now)
    if found is None:
        return replace(record, status=ABANDONED, finished_at=now, message="died before compacting or vacuuming the table: no row moved "
                       "and no file was deleted (a compaction's files were never visible; a checkpoint changes no row)")
    version, ended = found
    if ended:
        return replace(record, status=SUCCEEDED, message="recovered: its vacuum committed before the run died", table_version=version,
                       finished_at=now)
    return replace(record, status=ABANDONED, finished_at=now, message=f"died during its vacuum (started at version {version}): some "
                   "files no kept version reads may be deleted, no row moved; the next maintain vacuums the rest")
