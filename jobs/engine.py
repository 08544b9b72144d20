"""What every signal-computing job shares (backfill, refresh): build the signals, turn corpus
rows into signal rows, write them with one Spark action, check that nothing was lost, commit
once, and record the run in the ledger from start to end."""
from __future__ import annotations

import functools
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs import delta_io, ledger
from jobs.ledger import SignalOutcome
from jobs.config import Settings
from jobs.progress import spark_progress
from signals.base import ModelRef, Signal, SignalConfig
from signals.catalog import build_signal
from signals.contracts import EMBEDDINGS, RUNS
from udfs.columns import input_hash_column, result_column


@dataclass(frozen=True)
class Run:
    """One execution of a job: its id names its files, its commit and its ledger rows."""

    job: str
    run_id: str
    started: datetime

    @classmethod
    def begin(cls, job: str, run_id: str | None = None) -> "Run":
        now = datetime.now(timezone.utc)
        return cls(job, run_id or f"{job}-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}", now)

    @property
    def app_id(self) -> str:
        """The Delta application transaction id of this run's commit."""
        return f"content-signals/{self.run_id}"


@dataclass(frozen=True)
class RunResult:
    run_id: str
    status: str  # succeeded | skipped (already committed) | nothing to do
    table_version: int | None = None
    outcomes: list[SignalOutcome] = field(default_factory=list)
    message: str | None = None


def build_signals(settings: Settings) -> dict[str, Signal]:
    """The enabled signals of the profile, configured (not loaded) on the driver."""
    enabled = {
        name: build_signal(s.kind, SignalConfig(name, ModelRef(s.model.name, s.model.version), s.batch_size, s.device, s.params))
        for name, s in settings.enabled_signals.items()
    }
    if not enabled:
        raise ValueError(f"profile {settings.profile!r} enables no signals")
    return enabled


def signal_rows(corpus: DataFrame, signal: Signal, settings: Settings, run: Run) -> DataFrame:
    """One EMBEDDINGS row per corpus row for this signal (lazy: nothing runs yet)."""
    result = result_column(signal, settings.prefetch, settings.torch_threads).alias("result")
    model = signal.config.model
    return corpus.select("content_id", "ds", input_hash_column(signal).alias("input_hash"), result).select(
        "content_id",
        F.lit(signal.signal).alias("signal"),
        F.lit(model.name).alias("model_name"),
        F.lit(model.version).alias("model_version"),
        "input_hash",
        F.col("result.vector").alias("vector"),
        F.col("result.dim").alias("dim"),
        F.col("result.status").alias("status"),
        F.col("result.error").alias("error"),
        F.lit(run.run_id).alias("run_id"),
        F.lit(run.started).alias("computed_at"),
        "ds",
    )


def write_and_commit(
    spark: SparkSession,
    settings: Settings,
    run: Run,
    frames: Sequence[DataFrame],
    expected_rows: dict[str, int],
    remove: Callable[[delta_io.LiveFile], bool],
    read_version: int,
    metadata: dict[str, str],
) -> int:
    """Write the frames' rows as files (one Spark action), check each signal wrote exactly its
    expected rows, then commit them with the removals in one transaction. Returns the version."""
    root = settings.table_root(EMBEDDINGS.name)
    with spark_progress(spark.sparkContext, f"{run.job} {len(expected_rows)} signals x {max(expected_rows.values())} items"):
        files = delta_io.write_files(functools.reduce(DataFrame.unionByName, frames), root, EMBEDDINGS, f"part-{run.run_id}")
    written: dict[str, int] = defaultdict(int)
    for f in files:
        written[f.partition_values["signal"]] += f.num_records
    wrong = {s: (written[s], n) for s, n in expected_rows.items() if written[s] != n}
    if wrong:
        raise RuntimeError(f"rows written differ from rows expected (written, expected): {wrong}; nothing committed")
    return delta_io.commit_files(root, EMBEDDINGS, files, run.app_id, {"job": run.job, "run_id": run.run_id, **metadata},
                                 remove=remove, read_version=read_version)


@contextmanager
def recorded(settings: Settings, run: Run, signals: dict[str, Signal], window: tuple[str | None, str | None] = (None, None)) -> Iterator[Callable[[RunResult], None]]:
    """Ledger rows for the run: `started` now, then `failed` with the reason if the block
    raises, or the outcome the block reports through the callable it is given."""
    root = settings.table_root(RUNS.name)
    ledger.reconcile(root, settings.table_root(EMBEDDINGS.name))

    def rows(status: str, message: str | None = None, result: RunResult | None = None) -> list[ledger.RunRecord]:
        outcomes = {o.signal: o for o in (result.outcomes if result else [])}
        now = datetime.now(timezone.utc)
        return [
            ledger.RunRecord(
                run.run_id, run.job, name, s.config.model.name, s.config.model.version, window[0], window[1],
                *((outcomes[name].rows_in, outcomes[name].rows_ok, outcomes[name].rows_error) if name in outcomes else (None, None, None)),
                status, message, result.table_version if result else None, run.started, now,
            )
            for name, s in signals.items()
        ]

    ledger.record_runs(root, rows(ledger.STARTED))
    try:
        yield lambda result: ledger.record_runs(root, rows(result.status, result.message, result))
    except BaseException as exc:
        ledger.record_runs(root, rows(ledger.FAILED, f"{type(exc).__name__}: {exc}"[:2000]))
        raise


def run_outcomes(settings: Settings, run_id: str, signals: dict[str, Signal]) -> list[SignalOutcome]:
    """What a committed run computed, per signal, read back from the table by its run id
    (file statistics on run_id let delta-rs skip every other file)."""
    return ledger.outcomes_of(settings.table_root(EMBEDDINGS.name), run_id, {n: s.config.model for n, s in signals.items()})
