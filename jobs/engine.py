"""What every signal-computing job shares (backfill, refresh): build the signals, place them on
the cluster (what each task asks for; refused before anything runs if it cannot), turn corpus
rows into rows of their output tables, write them with one Spark action per table and resource
profile, check that nothing was lost, commit each table once, report which executors ran what,
and record the run in the ledger from start to end.

Embedders write to `embeddings` (a row per item), labelers to `labels` (a row per item and
label; one row with the error for an item that failed).
"""
from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow.compute as pc
from deltalake.exceptions import DeltaError
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from conf.settings import Settings
from jobs.corpus import Window
from jobs.progress import spark_progress
from jobs.session import await_executor
from lake import delta_io, ledger, spark_io
from lake.ledger import SignalOutcome
from lake.upkeep import UPKEEP_JOB
from monitoring.file_summary import FileSummaries
from monitoring.monitor import read_stats, stats_of_run
from monitoring.stats import keep_run_stats
from monitoring.superseded import drop_superseded
from signals.base import ModelRef, Signal
from signals.contracts import DUPLICATES, EMBEDDINGS, LABELS, RUNS, TableContract
from signals.labels.head import STORED_COLUMNS
from signals.table_rows import RowStamp, output_of
from udfs.resources import Cluster, Placement, placement
from udfs.rows import computes_once, derived_inputs, evened, grouped_by_input, output_rows, signal_inputs
from udfs.worker import worker_report


@dataclass(frozen=True)
class Run:
    """One execution of a job: its id names its files, its commits and its ledger rows."""

    job: str
    run_id: str
    started: datetime

    @classmethod
    def begin(cls, job: str, run_id: str | None = None) -> Run:
        now = datetime.now(UTC)
        return cls(job, run_id or f"{job}-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}", now)

    @property
    def app_id(self) -> str:
        """The Delta application transaction id of this run's commits (one per table)."""
        return ledger.run_app_id(self.run_id)


@dataclass(frozen=True)
class ExecutorUse:
    """What one executor (its Python workers) did for one signal in a run: which executors ran
    what, as the tasks reported it with the files they wrote."""

    signal: str
    host: str
    executor_pid: int  # the executor's Python daemon, parent of its workers (udfs.worker.worker_report)
    workers: int  # Python worker processes: each holds its own copy of the model
    tasks: int
    items: int
    cpus: int | None  # per task: what its resource profile gave it
    gpus: str  # the GPU addresses its tasks held, comma-separated ("" none)
    device: str  # where the model ran
    load_s: float  # seconds its tasks waited for a model load (0.0: the worker had it cached)

    def describe(self) -> str:
        """One line for the run's output."""
        return (f"{self.signal} on {self.host} executor pid {self.executor_pid}: {self.workers} workers, {self.tasks} tasks, {self.items} items, "
                f"{self.cpus} cpus, GPU {self.gpus or 'none'} ({self.device}), model load {self.load_s:.1f}s")


def executor_uses(files: Sequence[delta_io.DataFile]) -> list[ExecutorUse]:
    """Per (signal, executor), what its tasks wrote, from the files' task reports (files written
    without one, such as a refresh's rewrites, are left out)."""
    tasks: dict[tuple[str, str, int], dict[str, list[delta_io.DataFile]]] = defaultdict(lambda: defaultdict(list))
    for f in files:
        if f.host is not None and f.parent_pid is not None and f.task is not None:
            tasks[(f.partition_values["signal"], f.host, f.parent_pid)][f.task].append(f)
    uses = []
    for (signal, host, executor), by_task in sorted(tasks.items()):
        firsts = [written[0] for written in by_task.values()]  # a task reports once, on each of its files
        uses.append(ExecutorUse(
            signal, host, executor, len({f.pid for f in firsts}), len(by_task), sum(f.num_items for written in by_task.values() for f in written),
            firsts[0].cpus, ",".join(sorted({a for f in firsts for a in (f.gpus or "").split(",") if a})),
            ",".join(sorted({f.device or "?" for f in firsts})), sum(f.load_s or 0.0 for f in firsts),
        ))
    return uses


@dataclass(frozen=True)
class Committed:
    """A table's commit: its version, which executors computed its rows, and what its files add
    to the run's statistics (monitoring.file_summary)."""

    version: int | None  # None: not made here, and the log entry of the run id's commit is gone (delta_io.commit_of)
    executors: list[ExecutorUse]
    summaries: tuple[bytes, ...] = ()
    made: bool = True  # False: the log held the run id's commit already (another process's), not of these files


@dataclass(frozen=True)
class RunResult:
    run_id: str
    status: str  # succeeded | skipped (already committed) | nothing to do
    table_versions: dict[str, int | None] = field(default_factory=dict)  # table -> version committed (None: no longer known)
    outcomes: list[SignalOutcome] = field(default_factory=list)
    message: str | None = None
    executors: list[ExecutorUse] = field(default_factory=list)  # which executors ran what (signals computed by this run)
    closes: tuple[str, ...] | None = None  # the ledger entries it closes (None: all of the run's; the rest close as the run ends)


def by_output(signals: dict[str, Signal]) -> dict[TableContract, dict[str, Signal]]:
    """Signals grouped by the table they write, embeddings first."""
    grouped: dict[TableContract, dict[str, Signal]] = {}
    for contract in (EMBEDDINGS, LABELS):
        mine = {name: s for name, s in signals.items() if output_of(s) is contract}
        if mine:
            grouped[contract] = mine
    return grouped


def placements(spark: SparkSession, settings: Settings, signals: dict[str, Signal]) -> dict[str, Placement]:
    """Where each signal's tasks run (udfs.resources); a UsageError, before anything is computed,
    where the cluster cannot run one: by the configuration, or because no executor registered by
    spark.executor_wait_s can run a signal's task (a standalone executor's cores are its worker's,
    which no setting says: its stage would wait forever)."""
    cluster = Cluster.of(spark.sparkContext)
    placed = {name: placement(name, settings.signals[name], cluster) for name in signals}
    for name, where in placed.items():
        if where.resources:
            await_executor(spark.sparkContext, settings.spark.executor_wait_s, dict(where.resources), f"a task of signals.{name}",
                           f"signals.{name}.resources")
    return placed


def stored_embeddings(spark: SparkSession, settings: Settings, signal: str, model_version: str) -> DataFrame:
    """The embeddings table's rows of one signal and model version, now, as a head reads them
    (`signals.labels.head.STORED_COLUMNS`); a run's own embeddings commit precedes its labels'."""
    root = settings.table_root(EMBEDDINGS.name)
    delta_io.ensure_table(root, EMBEDDINGS)
    rows = spark_io.read_spark(spark, root, partitions=[("signal", "=", signal), ("model_version", "=", model_version)])
    return rows.select("content_id", *[F.col(c).alias(n) for c, n in zip(("vector", "status", "error", "input_hash"), STORED_COLUMNS, strict=True)])


def signal_rows(corpus: DataFrame, signal: Signal, settings: Settings, run: Run, items: int, placed: Placement) -> spark_io.WriteSource:
    """The rows of the signal's output table for these corpus rows (`items` of them; lazy:
    nothing runs yet), computed where `placed` says, each task reporting its worker. A head
    (a derived signal) reads the item's stored embedding row instead of its corpus inputs. With
    `settings.compute_once`, items sharing an input are computed once (grouped_by_input; not a
    head's: udfs.rows.computes_once)."""
    signal = signal.on_device(placed.device)
    inputs = (derived_inputs(corpus, signal, [stored_embeddings(corpus.sparkSession, settings, *read) for read in signal.reads])
              if signal.stored_columns else signal_inputs(corpus, signal))
    spread = grouped_by_input if computes_once(signal, settings.compute_once) else evened
    return spark_io.WriteSource(
        spread(inputs, settings.spark.partitions_per_slot, items, signal.batch_size, placed.cpus),
        output_rows(signal, RowStamp.of(signal, run.run_id, run.started), settings.prefetch, settings.torch_threads, settings.compute_once,
                    settings.video.reading),
        placed.resources, worker_report,
    )


def of_versions(models: dict[str, str], live: delta_io.LiveFile) -> bool:
    """Whether a live file of a signal table is in a partition of one of these signals (name -> model version) at its version."""
    return models.get(live.partition_values["signal"]) == live.partition_values["model_version"]


def in_window_slice(models: dict[str, str], window: Window, live: delta_io.LiveFile) -> bool:
    """Whether a live file of a signal table holds these signals' rows (name -> model version) of
    days in the window only: part of the slice a backfill of the window replaces, removed whole."""
    return of_versions(models, live) and window.holds(live.days)


def write_and_commit(
    spark: SparkSession,
    settings: Settings,
    run: Run,
    contract: TableContract,
    sources: Sequence[spark_io.WriteSource],
    expected_items: dict[str, int],
    remove: Callable[[delta_io.LiveFile], bool],
    read_version: int,
    metadata: dict[str, str],
    written: Sequence[delta_io.DataFile] = (),
    before_commit: Callable[[], None] = lambda: None,
) -> Committed:
    """Write the sources' rows as files of one table (one Spark action per resource profile),
    check each signal wrote exactly its expected items (with the files `written` for it already,
    by the video pass), and `before_commit` (which raises to commit nothing), then commit them all
    with the removals in one transaction."""
    root = settings.table_root(contract.name)
    with spark_progress(spark.sparkContext, f"{run.job} {contract.name}: {len(expected_items)} signals"):
        files = [*written, *spark_io.write_files(sources, root, contract, f"part-{run.run_id}", file_summaries(settings, run))]
    items: dict[str, int] = defaultdict(int)
    for f in files:
        items[f.partition_values["signal"]] += f.num_items
    wrong = {s: (items[s], n) for s, n in expected_items.items() if items[s] != n}
    if wrong:
        raise RuntimeError(f"{contract.name}: items written differ from items expected (written, expected): {wrong}; nothing committed")
    before_commit()
    version, made = delta_io.commit_files_made(root, contract, files, run.app_id, {"job": run.job, "run_id": run.run_id, **metadata},
                                               remove=remove, read_version=read_version)
    return Committed(version, executor_uses(files), tuple(f.summary for f in files if f.summary is not None), made)


def file_summaries(settings: Settings, run: Run) -> FileSummaries:
    """What the run's writers summarise each signal table file with, for its statistics."""
    return FileSummaries(run.run_id, settings.monitor.sample_size, settings.monitor.seed)


def keep_stats(settings: Settings, run: Run, committed: Mapping[str, Committed]) -> None:
    """Keep the run's statistics, from the summaries of the files it committed (table -> its commit),
    for the monitor: computed as the rows were written, so monitoring a run reads them instead of its
    rows; then drop the statistics and verdicts of the runs whose rows it replaced or removed,
    monitored or not. None where a commit of the run id was another process's (two runs given one id
    at once, or a retry after a kill): its files are not these, and statistics of files no table holds
    were kept in place of the maker's; its maker keeps them, else the monitor makes them from the
    committed files."""
    if not all(c.made for c in committed.values()):
        return
    keep_run_stats(settings.lakehouse_root, run.run_id, run.job, [s for c in committed.values() for s in c.summaries], settings.monitor.sample_size)
    drop_superseded(settings.lakehouse_root, run.run_id, run.job, {name: c.version for name, c in committed.items()})


def already_committed(spark: SparkSession, settings: Settings, run: Run, tables: Iterable[TableContract]) -> RunResult | None:
    """The result of a run whose commits are all in their tables already (a repeated run id), once it has
    done what a run killed after its commits left undone: its ledger entries closed (reconciled, as a run
    that starts reconciles them), the statistics of a run that wrote signal rows kept (computed from its
    rows where it died before keeping them), and the statistics and verdicts of the runs whose rows it
    replaced dropped. A table whose commit of the run has no log entry any more (cleaned up behind a
    checkpoint) has its version None, and the result says so."""
    versions: dict[str, int | None] = {}
    for contract in tables:
        root = settings.table_root(contract.name)
        if not delta_io.committed(root, run.app_id):
            return None
        versions[contract.name] = delta_io.version_of_commit(root, run.app_id)
    close_dead_runs(settings)
    if {EMBEDDINGS.name, LABELS.name} & versions.keys():
        if read_stats(settings, pc.field("run_id") == run.run_id).num_rows:  # kept before the kill: what they supersede may remain
            drop_superseded(settings.lakehouse_root, run.run_id, run.job, versions)
        else:
            stats_of_run(spark, settings, run.run_id)  # computed from its rows, kept, and what they supersede dropped
    return RunResult(run.run_id, "skipped", versions, message=unknown_versions_said(versions))


def unknown_versions_said(versions: dict[str, int | None]) -> str | None:
    """What a result says of the tables whose commit of the run is no longer in their log (a retry long
    after it), so that a null version reads as a known gap; None where every version is known."""
    gone = sorted(name for name, version in versions.items() if version is None)
    if not gone:
        return None
    return (f"the version of this run's commit to {', '.join(gone)} is no longer known: its log entry was cleaned up behind a "
            "checkpoint (past the log's retention), which keeps only the run id")


@dataclass(frozen=True)
class Tracked:
    """What one ledger row of a run is about: a signal at its model version (or a job's own
    work, such as dedup's), and the table its rows go to."""

    name: str
    model: ModelRef
    table: str


def tracked(signals: dict[str, Signal]) -> list[Tracked]:
    """The ledger rows of a run of these signals: one per signal."""
    return [Tracked(name, s.config.model, output_of(s).name) for name, s in signals.items()]


LEDGER_TABLES = (EMBEDDINGS, LABELS, DUPLICATES)  # where the runs in the ledger commit
CORPUS_VERSION = "corpus_version"  # commit metadata of the jobs that write signal rows: the corpus version they read
CORPUS_MAPPING = "corpus_mapping"  # ... and the corpus they read, but for its version (lake.corpus.CorpusTable.mapping_id)


def close_dead_runs(settings: Settings) -> None:
    """Close the ledger entries of runs that died (`ledger.reconcile`), judged by their tables' logs."""
    ledger.reconcile(settings.table_root(RUNS.name), lambda record: committed_to(settings, record))


@contextmanager
def recorded(settings: Settings, run: Run, entries: Sequence[Tracked],
             window: tuple[str | None, str | None] = (None, None)) -> Iterator[Callable[[RunResult], None]]:
    """Ledger rows for the run: `started` now, then the outcome the block reports through the
    callable it is given (for the entries the result `closes`); if the block raises, for each entry
    not closed yet, `failed` with the reason where the run did not commit to its table (or its log cannot be read), and
    `succeeded` where it did (a run that died after its embeddings commit did compute its embeddings)."""
    root = settings.table_root(RUNS.name)
    close_dead_runs(settings)

    def record(entry: Tracked, status: str, message: str | None, outcome: SignalOutcome | None, version: int | None) -> ledger.RunRecord:
        counts = (outcome.rows_in, outcome.rows_ok, outcome.rows_error) if outcome else (None, None, None)
        return ledger.RunRecord(run.run_id, run.job, entry.name, entry.model.name, entry.model.version, window[0], window[1],
                                *counts, status, message, version, run.started, datetime.now(UTC))

    closed: set[str] = set()

    def finish(result: RunResult) -> None:
        outcomes, mine = {o.signal: o for o in result.outcomes}, [e for e in entries if result.closes is None or e.name in result.closes]
        ledger.record_runs(root, [record(e, result.status, result.message, outcomes.get(e.name), result.table_versions.get(e.table))
                                  for e in mine])
        closed.update(e.name for e in mine)

    with ledger.active(run.run_id):
        ledger.record_runs(root, [record(e, ledger.STARTED, ledger.driver_tag(), None, None) for e in entries])
        try:
            yield finish
        except BaseException as exc:
            reason = f"{type(exc).__name__}: {exc}"[:2000]
            rows = []
            for e in (e for e in entries if e.name not in closed):
                try:
                    found = ledger.committed_outcome(run.run_id, e.name, e.model, [settings.table_root(e.table)])
                except DeltaError:  # a table whose log cannot be read holds no commit anyone can see: the failure is recorded, and raised
                    found = None
                rows.append(record(e, ledger.SUCCEEDED, f"committed before the run failed ({reason})", *found) if found
                            else record(e, ledger.FAILED, reason, None, None))
            ledger.record_runs(root, rows)
            raise


def committed_to(settings: Settings, record: ledger.RunRecord) -> list[str]:
    """The roots of the tables a ledger row's run commits to, where reconciling looks for its commit:
    upkeep's commit to the table the row names is no commit of another table's row."""
    return [settings.table_root(record.signal)] if record.job == UPKEEP_JOB else [settings.table_root(c.name) for c in LEDGER_TABLES]


def run_outcomes(settings: Settings, run_id: str, signals: dict[str, Signal]) -> list[SignalOutcome]:
    """What a committed run computed, per signal, read back from its tables by run id (file
    statistics on run_id let delta-rs skip every other file)."""
    return [
        outcome
        for contract, mine in by_output(signals).items()
        for outcome in ledger.outcomes_of(settings.table_root(contract.name), run_id, {n: s.config.model for n, s in mine.items()})
    ]
