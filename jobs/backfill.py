"""The backfill job: compute the configured signals for a window of the corpus and replace
that slice of the embeddings table in one Delta commit.

    content-signals backfill --profile local --start 2026-11-14 --end 2026-11-20
    spark-submit jobs/backfill.py --profile cluster --start ... --end ...

Re-running the same window replaces the same slice with the same vectors: never duplicates.
Re-running with the same --run-id after a commit does nothing (the commit is recognised by its
application transaction id).
"""
from __future__ import annotations

import functools
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone

import pyarrow as pa
from deltalake import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs import delta_io
from jobs.config import Settings
from jobs.ledger import RunRecord, record_runs
from jobs.progress import spark_progress
from signals.catalog import build_signal
from signals.contracts import EMBEDDINGS, RUNS
from signals.base import ModelRef, Signal, SignalConfig
from udfs.columns import input_hash_column, result_column

JOB = "backfill"


@dataclass(frozen=True)
class Window:
    """An inclusive range of corpus date partitions (`ds`); an open end means unbounded."""

    start: str | None = None
    end: str | None = None

    def partition_filters(self) -> list[tuple[str, str, str]] | None:
        filters = [("ds", ">=", self.start)] if self.start else []
        filters += [("ds", "<=", self.end)] if self.end else []
        return filters or None

    def contains(self, ds: str | None) -> bool:
        return ds is not None and (self.start is None or ds >= self.start) and (self.end is None or ds <= self.end)


@dataclass(frozen=True)
class SignalOutcome:
    signal: str
    model: ModelRef
    rows_in: int
    rows_ok: int
    rows_error: int


@dataclass(frozen=True)
class BackfillResult:
    run_id: str
    table_version: int | None
    outcomes: list[SignalOutcome]
    skipped: bool = False


def build_signals(settings: Settings) -> dict[str, Signal]:
    """The enabled signals of the profile, configured (not loaded) on the driver."""
    return {
        name: build_signal(
            s.kind,
            SignalConfig(name, ModelRef(s.model.name, s.model.version), s.batch_size, s.device, s.params),
        )
        for name, s in settings.enabled_signals.items()
    }


def signal_rows(corpus: DataFrame, signal: Signal, settings: Settings, run_id: str, computed_at: datetime) -> DataFrame:
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
        F.lit(run_id).alias("run_id"),
        F.lit(computed_at).alias("computed_at"),
        "ds",
    )


def corpus_row_count(corpus_root: str, window: Window) -> int:
    """Rows of the corpus in the window, from the Delta log's per-file statistics (no scan)."""
    actions = pa.table(delta_io.snapshot(corpus_root).get_add_actions(flatten=True))
    return sum(
        n for n, ds in zip(actions["num_records"].to_pylist(), actions["partition.ds"].to_pylist()) if window.contains(ds)
    )


def run_backfill(spark: SparkSession, settings: Settings, window: Window = Window(), run_id: str | None = None) -> BackfillResult:
    """Compute every enabled signal over the window and commit them as one table version.

    A run that fails is recorded in the ledger as failed (with the reason) and re-raised; its
    data files, if any were written, are never committed, so readers never see them.
    """
    run_id = run_id or f"{JOB}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    app_id = f"content-signals/{run_id}"
    embeddings_root = settings.table_root(EMBEDDINGS.name)
    corpus_root = settings.table_root("corpus")
    if not DeltaTable.is_deltatable(corpus_root):
        raise FileNotFoundError(f"no corpus Delta table at {corpus_root}; create one with `content-signals make-corpus`")
    if delta_io.committed(embeddings_root, app_id):
        return BackfillResult(run_id, delta_io.version_of_commit(embeddings_root, app_id), [], skipped=True)
    enabled = build_signals(settings)
    if not enabled:
        raise ValueError(f"profile {settings.profile!r} enables no signals")

    started = datetime.now(timezone.utc)
    ledger = settings.table_root(RUNS.name)
    try:
        version, outcomes = _compute_and_commit(spark, settings, enabled, window, run_id, app_id, started)
    except BaseException as exc:
        failed = datetime.now(timezone.utc)
        record_runs(ledger, [RunRecord(run_id, JOB, name, s.config.model.name, s.config.model.version, window.start,
                                       window.end, None, None, None, "failed", f"{type(exc).__name__}: {exc}"[:2000],
                                       None, started, failed) for name, s in enabled.items()])
        raise
    finished = datetime.now(timezone.utc)
    record_runs(ledger, [RunRecord(run_id, JOB, o.signal, o.model.name, o.model.version, window.start, window.end,
                                   o.rows_in, o.rows_ok, o.rows_error, "succeeded", None, version, started, finished)
                         for o in outcomes])
    return BackfillResult(run_id, version, outcomes)


def _compute_and_commit(
    spark: SparkSession, settings: Settings, enabled: dict[str, Signal], window: Window, run_id: str, app_id: str,
    started: datetime,
) -> tuple[int, list[SignalOutcome]]:
    """One Spark action writes every signal's files; one Delta commit publishes them."""
    embeddings_root = settings.table_root(EMBEDDINGS.name)
    corpus_root = settings.table_root("corpus")
    rows_in = corpus_row_count(corpus_root, window)
    corpus = delta_io.read_spark(spark, corpus_root, partitions=window.partition_filters())
    frames = [signal_rows(corpus, s, settings, run_id, started) for s in enabled.values()]
    with spark_progress(spark.sparkContext, f"{JOB} {len(enabled)} signals x {rows_in} items"):
        files = delta_io.write_files(functools.reduce(DataFrame.unionByName, frames), embeddings_root, EMBEDDINGS, f"part-{run_id}")

    written: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for f in files:
        written[f.partition_values["signal"]][0] += f.num_records
        written[f.partition_values["signal"]][1] += f.num_ok
    lost = {name: written[name][0] for name in enabled if written[name][0] != rows_in}
    if lost:
        raise RuntimeError(f"rows written differ from the {rows_in} corpus rows in the window: {lost}; nothing committed")

    versions = {name: s.config.model.version for name, s in enabled.items()}
    version = delta_io.commit_files(
        embeddings_root,
        EMBEDDINGS,
        files,
        app_id,
        metadata={"job": JOB, "run_id": run_id, "window": f"{window.start}..{window.end}", "model_versions": str(versions)},
        replace=lambda pv: versions.get(pv["signal"]) == pv["model_version"] and window.contains(pv["ds"]),
    )
    outcomes = [
        SignalOutcome(name, s.config.model, rows_in, written[name][1], written[name][0] - written[name][1])
        for name, s in enabled.items()
    ]
    return version, outcomes
